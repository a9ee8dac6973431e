/**
 * @module
 * The classification extension (Triton's `extension_classification.md`): an
 * output requested with `"parameters": {"classification": k}` is answered as a
 * BYTES tensor of shape [batch, k] (or [k] for a rank-1 output) whose strings
 * are `"score:index"` — `"score:index:label"` when the version has labels —
 * the k highest-valued classes of each row, highest first. Done after the
 * run, whatever the runtime, before encoding.
 *
 * As Triton writes them (`std::to_string`): a float score with six decimals
 * (`printf("%f")`, correctly rounded, ties to even), an integer score in
 * full. Ties keep the lower index first; NaN ranks below every number.
 */
import { echo, echoJson, invalid } from "../errors";
import type { BytesTensor, Tensor, TensorSpec } from "../protocol/datatypes";
import type { Parameters, RequestOutput } from "../protocol/types";
import { classDimension, MAX_LABELS_BYTES, parseLabels } from "../registry/labels";
import type { Manifest } from "../registry/manifest";
import type { ModelRegistry } from "../registry/registry";

export const CLASSIFICATION_PARAMETER = "classification";

/** The `classification` count an output asks for, checked: undefined when it asks for none. */
export function classificationCount(output: RequestOutput): number | undefined {
  const value = output.parameters?.[CLASSIFICATION_PARAMETER];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw invalid(
      `output '${echo(output.name)}' parameter classification is ${echoJson(value)}; it must be an integer >= 1 (how many classes to return)`,
    );
  }
  return value;
}

/** Refuses, before the run, a classification the output's declared signature cannot give. */
export function checkClassifiable(spec: TensorSpec, count: number): void {
  const classes = classDimension(spec);
  if (classes === undefined) {
    throw invalid(
      `output '${spec.name}' is ${spec.datatype} [${spec.shape.join(", ")}]; classification needs a numeric output of shape [classes] or [batch, classes]`,
    );
  }
  if (classes !== -1 && count > classes) {
    throw invalid(
      `output '${spec.name}' has ${classes} classes; classification asked for ${count}`,
    );
  }
}

/** The request's output parameters as echoed for a classified output (without `classification`). */
export function echoedParameters(parameters: Parameters | undefined): Parameters | undefined {
  if (!parameters) return undefined;
  const { [CLASSIFICATION_PARAMETER]: _, ...rest } = parameters;
  return Object.keys(rest).length > 0 ? rest : undefined;
}

/**
 * The top `count` classes of each row of `tensor`, as Triton's strings;
 * `labels` are appended when there is one per class.
 */
export function classify(tensor: Tensor, count: number, labels?: readonly string[]): BytesTensor {
  if (tensor.datatype === "BOOL" || (tensor.shape.length !== 1 && tensor.shape.length !== 2)) {
    throw invalid(
      `output '${tensor.name}' is ${tensor.datatype} [${tensor.shape.join(", ")}]; classification needs a numeric output of shape [classes] or [batch, classes]`,
    );
  }
  const classes = tensor.shape.at(-1)!;
  if (count > classes) {
    throw invalid(
      `output '${tensor.name}' has ${classes} classes; classification asked for ${count}`,
    );
  }
  const rows = tensor.shape.length === 2 ? tensor.shape[0]! : 1;
  const named = labels !== undefined && labels.length === classes ? labels : undefined;
  const data = tensor.data;
  const float = tensor.datatype === "FP32" || tensor.datatype === "FP64";
  const out: string[] = [];
  for (let row = 0; row < rows; row++) {
    const base = row * classes;
    const value = (i: number) => data[base + i]!;
    const order = Array.from({ length: classes }, (_, i) => i);
    order.sort((a, b) => {
      const [x, y] = [value(a), value(b)];
      if (x !== x) return y !== y ? a - b : 1; // NaN last
      if (y !== y) return -1;
      return x > y ? -1 : x < y ? 1 : a - b;
    });
    for (let j = 0; j < count; j++) {
      const index = order[j]!;
      const v = value(index);
      const score = float ? formatFixed6(v as number) : String(v);
      out.push(named ? `${score}:${index}:${named[index]}` : `${score}:${index}`);
    }
  }
  return {
    name: tensor.name,
    datatype: "BYTES",
    shape: tensor.shape.length === 2 ? [rows, count] : [count],
    data: out,
  };
}

const SCALE = 1_000_000n;

/**
 * A double as C's `printf("%f")` writes it: six decimals of its exact value,
 * rounded half to even, the sign kept on a negative zero; "nan", "inf", "-inf".
 */
export function formatFixed6(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  const sign = x < 0 || Object.is(x, -0) ? "-" : "";
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  // |x| = mantissa × 2^exponent, exactly.
  const mantissa = biased === 0 ? fraction : fraction | (1n << 52n);
  const exponent = biased === 0 ? -1074 : biased - 1075;
  let scaled: bigint;
  if (exponent >= 0) {
    scaled = (mantissa << BigInt(exponent)) * SCALE;
  } else {
    const numerator = mantissa * SCALE;
    const denominator = 1n << BigInt(-exponent);
    scaled = numerator / denominator;
    const twice = (numerator % denominator) * 2n;
    if (twice > denominator || (twice === denominator && (scaled & 1n) === 1n)) scaled += 1n;
  }
  const digits = scaled.toString().padStart(7, "0");
  return `${sign}${digits.slice(0, -6)}.${digits.slice(-6)}`;
}

/** Labels files cached in all, in bytes: they are small and a version's never change. */
const LABEL_CACHE_BYTES = 4 * 1024 * 1024;

/**
 * Versions' labels, read once (size bounded, sha256 verified) and kept while
 * they fit `LABEL_CACHE_BYTES`, least recently used first out.
 */
export class LabelCache {
  private readonly entries = new Map<string, { labels: Promise<string[]>; bytes: number }>();
  private bytes = 0;

  constructor(private readonly registry: ModelRegistry) {}

  /** The version's labels, or undefined when it has none. */
  async labelsOf(manifest: Manifest): Promise<string[] | undefined> {
    const artifact = manifest.artifacts.labels;
    if (!artifact) return undefined;
    const key = `${manifest.name}@${manifest.version}`;
    let entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key);
      this.entries.set(key, entry);
      return entry.labels;
    }
    const labels = this.registry
      .readArtifact(manifest, "labels", MAX_LABELS_BYTES)
      .then((bytes) => parseLabels(bytes));
    entry = { labels, bytes: artifact.bytes };
    this.entries.set(key, entry);
    this.bytes += entry.bytes;
    labels.catch(() => this.forget(key));
    for (const old of this.entries.keys()) {
      if (this.bytes <= LABEL_CACHE_BYTES || old === key) break;
      this.forget(old);
    }
    return labels;
  }

  private forget(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.bytes -= entry.bytes;
  }
}
