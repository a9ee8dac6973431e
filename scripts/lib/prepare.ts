/**
 * @module
 * Turns a file a user brings (a PyTorch state_dict `.pth` or an ONNX export)
 * into what a new version is made of: the ONNX artifact, its signature and the
 * optional golden cases — all checked here, before anything is uploaded.
 */
import { readFile, stat } from "node:fs/promises";
import { basename, extname } from "node:path";
import * as ort from "onnxruntime-web";
import { parseGolden } from "../../convert/golden";
import { linearLayers, linearStackToOnnx, type Activation } from "../../convert/linear-stack";
import { inspectOnnx } from "../../convert/onnx";
import { readStateDict } from "../../convert/torch-checkpoint";
import { invalid } from "../../worker/errors";
import type { TensorSpec } from "../../worker/protocol/datatypes";
import type { ArtifactRole } from "../../worker/registry/manifest";
import type { VersionFields } from "../../worker/registry/registry";
import { readOnnxSignature } from "../../worker/runtimes/ort/tensor-types";

ort.env.wasm.numThreads = 1;
ort.env.logLevel = "error";

export const ONNX_MEDIA_TYPE = "application/x-onnx";
export const GOLDEN_MEDIA_TYPE = "application/json";

/** Files larger than this are refused before being read (Node buffers top out near 4 GiB). */
export const MAX_MODEL_FILE_BYTES = 2 * 1024 ** 3;

export interface PrepareOptions {
  activation?: Activation;
  golden?: string;
}

export interface PreparedVersion {
  fields: VersionFields;
  artifacts: Partial<Record<ArtifactRole, { bytes: Uint8Array; mediaType: string }>> & {
    onnx: { bytes: Uint8Array; mediaType: string };
  };
  /** How the ONNX artifact came to be, for the CLI to report. */
  origin: { kind: "onnx" } | { kind: "pth"; layers: string[]; activation: Activation };
}

async function readBounded(file: string, what: string): Promise<Uint8Array> {
  const info = await stat(file).catch(() => {
    throw invalid(`cannot read ${what} ${file}: no such file`);
  });
  if (!info.isFile()) throw invalid(`${what} ${file} is not a file`);
  if (info.size > MAX_MODEL_FILE_BYTES) {
    throw invalid(
      `${what} ${file} is ${info.size} bytes; at most ${MAX_MODEL_FILE_BYTES} are supported`,
    );
  }
  return new Uint8Array(await readFile(file));
}

/** PyTorch files are zips ("PK") or legacy pickles (0x80 PROTO); anything else is treated as ONNX. */
function looksLikePyTorch(file: string, bytes: Uint8Array): boolean {
  const ext = extname(file).toLowerCase();
  if (ext === ".pth" || ext === ".pt") return true;
  if (ext === ".onnx") return false;
  return (bytes[0] === 0x50 && bytes[1] === 0x4b) || bytes[0] === 0x80;
}

export async function prepareVersion(
  file: string,
  options: PrepareOptions = {},
): Promise<PreparedVersion> {
  const bytes = await readBounded(file, "model file");
  let onnx: Uint8Array;
  let origin: PreparedVersion["origin"];
  if (looksLikePyTorch(file, bytes)) {
    const activation = options.activation ?? "relu";
    const layers = linearLayers(readStateDict(bytes));
    onnx = linearStackToOnnx(layers, { activation });
    origin = {
      kind: "pth",
      layers: layers.map((l) => `${l.name} ${l.inFeatures}→${l.outFeatures}`),
      activation,
    };
  } else {
    if (options.activation) {
      throw invalid(
        "--activation applies to .pth files only; an ONNX file already says what it computes",
      );
    }
    onnx = bytes;
    origin = { kind: "onnx" };
  }

  // Structure first (clear messages for broken files), then onnxruntime itself must load it.
  const summary = inspectOnnx(onnx);
  const signature: { inputs: TensorSpec[]; outputs: TensorSpec[] } = await readOnnxSignature(
    ort,
    onnx,
  );
  const names = (specs: TensorSpec[]) => specs.map((s) => s.name).join(",");
  if (
    names(signature.inputs) !== names(summary.inputs) ||
    names(signature.outputs) !== names(summary.outputs)
  ) {
    throw invalid("the ONNX graph's declared inputs/outputs differ from what onnxruntime loads");
  }

  const artifacts: PreparedVersion["artifacts"] = {
    onnx: { bytes: onnx, mediaType: ONNX_MEDIA_TYPE },
  };
  if (options.golden) {
    const text = new TextDecoder().decode(await readBounded(options.golden, "golden file"));
    const golden = parseGolden(text, signature.inputs, signature.outputs);
    artifacts.golden = {
      bytes: new TextEncoder().encode(JSON.stringify(golden)),
      mediaType: GOLDEN_MEDIA_TYPE,
    };
  }
  return {
    fields: {
      platform: "onnx_onnxv1",
      inputs: signature.inputs,
      outputs: signature.outputs,
      runtime: "ort",
      source: basename(file),
    },
    artifacts,
    origin,
  };
}
