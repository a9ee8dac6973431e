/**
 * @module
 * Class labels: the optional `labels` artifact of a version, one label per
 * line (what `pinion publish --labels labels.txt` stores). They name the
 * classes of every output whose class dimension equals their count, and the
 * classification extension appends them to its "score:index:label" strings.
 * Pure functions on bytes: no I/O.
 */
import { invalid } from "../errors";
import type { TensorSpec } from "../protocol/datatypes";

/** Labels files above this are refused (ImageNet-21k's ~22k labels take ~650 KB). */
export const MAX_LABELS_BYTES = 1024 * 1024;
/** Longest label, in characters. */
export const MAX_LABEL_CHARS = 256;
export const LABELS_MEDIA_TYPE = "text/plain; charset=utf-8";

/**
 * Parses a labels file: UTF-8, one label per line (LF or CRLF), a final
 * newline optional. Every label must be non-empty, at most
 * `MAX_LABEL_CHARS` long, and free of control characters.
 */
export function parseLabels(bytes: Uint8Array): string[] {
  if (bytes.byteLength > MAX_LABELS_BYTES) {
    throw invalid(`labels file is ${bytes.byteLength} bytes; at most ${MAX_LABELS_BYTES}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw invalid("labels file is not valid UTF-8");
  }
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (lines.length === 0) throw invalid("labels file has no labels");
  return lines.map((line, i) => {
    const label = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (label.length === 0) throw invalid(`labels file line ${i + 1} is empty`);
    if (label.length > MAX_LABEL_CHARS) {
      throw invalid(
        `labels file line ${i + 1} is ${label.length} characters; at most ${MAX_LABEL_CHARS}`,
      );
    }
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(label)) {
      throw invalid(`labels file line ${i + 1} holds a control character`);
    }
    return label;
  });
}

/** The stored form: one label per line, LF, with a final newline. */
export function encodeLabels(labels: readonly string[]): Uint8Array {
  return new TextEncoder().encode(labels.map((l) => `${l}\n`).join(""));
}

/**
 * An output's class dimension: the last of a numeric rank-1 ([classes]) or
 * rank-2 ([batch, classes]) output; undefined for any other output (and -1
 * when it is dynamic).
 */
export function classDimension(spec: TensorSpec): number | undefined {
  if (spec.datatype === "BOOL") return undefined;
  if (spec.shape.length !== 1 && spec.shape.length !== 2) return undefined;
  return spec.shape.at(-1)!;
}

/** The outputs `count` labels name: those whose class dimension is exactly `count`. */
export function labeledOutputs(outputs: readonly TensorSpec[], count: number): string[] {
  return outputs.filter((o) => classDimension(o) === count).map((o) => o.name);
}

/**
 * Checks labels against the version's outputs: at least one output must have
 * exactly as many classes as there are labels.
 */
export function checkLabels(labels: readonly string[], outputs: readonly TensorSpec[]): void {
  if (labeledOutputs(outputs, labels.length).length > 0) return;
  const dims = outputs.map((o) => {
    const dim = classDimension(o);
    return `'${o.name}' ${dim === undefined ? `(${o.datatype} [${o.shape.join(", ")}], no class axis)` : dim === -1 ? "(a dynamic number of classes)" : `(${dim} classes)`}`;
  });
  throw invalid(
    `labels file has ${labels.length} labels but no output has ${labels.length} classes: ${dims.join(", ")}`,
  );
}
