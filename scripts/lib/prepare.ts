/**
 * @module
 * Turns a file a user brings (a PyTorch state_dict `.pth` or an ONNX export)
 * into what a new version is made of: the ONNX artifact, its signature and the
 * optional golden cases — all checked here, before anything is uploaded.
 */
import { readFile, stat } from "node:fs/promises";
import { basename, extname } from "node:path";
import * as ort from "onnxruntime-web";
import { assertFiniteWeights } from "../../convert/finite";
import { parseGolden, type Golden } from "../../convert/golden";
import { compileInt8, measureAccuracy, type CompileOptions } from "../../convert/int8-compiler";
import { linearLayers, linearStackToOnnx, type Activation } from "../../convert/linear-stack";
import { inspectOnnx } from "../../convert/onnx";
import type { PruneOutcome } from "../../convert/prune";
import { readStateDict } from "../../convert/torch-checkpoint";
import { valueShapedOutputs, type ValueShapedOutput } from "../../convert/value-shapes";
import { invalid } from "../../core/errors";
import type { TensorSpec } from "../../core/protocol/datatypes";
import type { ArtifactRole, Placement, Quantization } from "../../core/registry/manifest";
import { loadProgram } from "../../core/runtimes/int8/int8-runtime";
import type { VersionFields } from "../../core/registry/registry";
import { checkVersionArtifacts } from "../../core/registry/version-check";
import { encodeLabels, LABELS_MEDIA_TYPE, parseLabels } from "../../core/registry/labels";
import {
  BACKGROUND_MEDIA_TYPE,
  encodeBackground,
  parseBackgroundFile,
} from "../../core/registry/background";
import { readOnnxSignature } from "../../core/runtimes/ort/tensor-types";
import { loadKernels, loadKernelsModule } from "./kernels-node";

ort.env.wasm.numThreads = 1;
ort.env.logLevel = "error";

export const ONNX_MEDIA_TYPE = "application/x-onnx";
export const GOLDEN_MEDIA_TYPE = "application/json";
export const INT8_PLAN_MEDIA_TYPE = "application/x-pinion-int8-plan";

/** Files larger than this are refused before being read (Node buffers top out near 4 GiB). */
export const MAX_MODEL_FILE_BYTES = 2 * 1024 ** 3;

/**
 * Versions whose model is larger than this are served by the GPU origin unless
 * told otherwise: a Worker isolate has 128 MB in all, and onnxruntime-web needs
 * about twice the model file (PINION_EDGE_BUDGET_BYTES overrides it).
 */
export const DEFAULT_EDGE_BUDGET_BYTES = 32 * 1024 ** 2;

export interface PrepareOptions {
  activation?: Activation;
  golden?: string;
  /** Also compile an int8 plan and prefer the int8 runtime (when the graph compiles). */
  quantize?: "int8";
  /** `auto` (default): the origin when the model exceeds `edgeBudgetBytes`, else the edge. */
  placement?: Placement | "auto";
  edgeBudgetBytes?: number;
  /** Most bytes a `.pth`'s compressed zip entries may inflate to (default 256 MiB). */
  maxInflatedBytes?: number;
  /** Publish weights holding NaN or ±Infinity (refused otherwise). */
  allowNonFinite?: boolean;
  /** A labels file (one class label per line) stored with the version. */
  labels?: string;
  /** A text model's longest sequence, when its sequence axis is dynamic (int8 text plans). */
  maxSequence?: number;
  /** Structured pruning of hidden units: a fraction of each hidden layer, or `auto` (needs `golden`). */
  prune?: number | "auto";
  /** Golden-set points pruning may lose (default 0.5). */
  maxAccuracyDrop?: number;
  /** A background file (reference input rows for explanations) stored with the version. */
  background?: string;
}

export interface PreparedVersion {
  fields: VersionFields;
  artifacts: Partial<Record<ArtifactRole, { bytes: Uint8Array; mediaType: string }>> & {
    onnx: { bytes: Uint8Array; mediaType: string };
  };
  /** How the ONNX artifact came to be, for the CLI to report. */
  conversion: { kind: "onnx" } | { kind: "pth"; layers: string[]; activation: Activation };
  /** Why no int8 plan was made although one was asked for. */
  int8NotCompiled?: string;
  /** Outputs whose shape follows input values: a request can ask for an answer of any size. */
  valueShaped: ValueShapedOutput[];
  /** What `--prune` measured: each model's score, size and batch-1 time, and `auto`'s search. */
  pruning?: Pick<PruneOutcome, "variants" | "search">;
}

function tensorNames(goldenText: string): { inputName?: string; outputName?: string } {
  try {
    const { input_name, output_name } = JSON.parse(goldenText) as Record<string, unknown>;
    return {
      ...(typeof input_name === "string" ? { inputName: input_name } : {}),
      ...(typeof output_name === "string" ? { outputName: output_name } : {}),
    };
  } catch {
    return {}; // parseGolden reports the problem
  }
}

function flattenRows(rows: unknown[]): Float32Array[] {
  return rows.map((row) => Float32Array.from((row as unknown[]).flat(16) as number[]));
}

/** `values` nested like `template` (a golden row), leaf by leaf in order. */
function nestLike(template: unknown, values: Float32Array): unknown {
  let next = 0;
  const fill = (node: unknown): unknown => (Array.isArray(node) ? node.map(fill) : values[next++]!);
  return fill(template);
}

/** Compiles the int8 plan and, with golden cases, measures it against fp32. */
async function quantize(
  onnx: Uint8Array,
  golden: Golden | undefined,
  options: CompileOptions = {},
): Promise<{ plan: Uint8Array; quantization: Quantization } | { reason: string }> {
  const kernels = await loadKernels();
  const outcome = compileInt8(onnx, kernels, options);
  if (!outcome.ok) return { reason: outcome.reason };
  // The int8 runtime's loader must take the plan, as the admin API checks before committing.
  const program = await loadProgram(await loadKernelsModule(), outcome.plan);
  const quantization: Quantization = {
    scheme: "int8-per-channel-symmetric-weights-dynamic-u8-activations",
    layers: outcome.layers,
    ...(outcome.maxSequence !== undefined ? { maxSequence: outcome.maxSequence } : {}),
  };
  if (golden) {
    const inputs = flattenRows(golden.inputs);
    const width = inputs[0]!.length;
    const session = await ort.InferenceSession.create(onnx);
    try {
      const input = session.inputMetadata[0]!;
      const shape = [inputs.length, ...(input.isTensor ? input.shape.slice(1) : [width])].map(
        (d) => (typeof d === "number" ? d : width),
      );
      // Token ids (text models) go to onnxruntime as the integers the model declares.
      const flat = inputs.flatMap((x) => Array.from(x));
      const type = input.isTensor ? input.type : "float32";
      const tensor =
        type === "int64"
          ? new ort.Tensor(
              "int64",
              BigInt64Array.from(flat, (v) => BigInt(v)),
              shape,
            )
          : type === "int32"
            ? new ort.Tensor("int32", Int32Array.from(flat), shape)
            : new ort.Tensor("float32", Float32Array.from(flat), shape);
      const out = await session.run({ [golden.inputName]: tensor });
      const all = out[golden.outputName]!.data as Float32Array;
      const n = all.length / inputs.length;
      const fp32 = inputs.map((_, i) => all.slice(i * n, (i + 1) * n));
      quantization.accuracy = measureAccuracy((x) => program.run(x, 1), {
        inputs,
        fp32,
        ...(golden.labels ? { labels: golden.labels } : {}),
      });
    } finally {
      await session.release();
    }
  }
  return { plan: outcome.plan, quantization };
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
  const goldenText = options.golden
    ? new TextDecoder().decode(await readBounded(options.golden, "golden file"))
    : undefined;
  let onnx: Uint8Array;
  let conversion: PreparedVersion["conversion"];
  if (looksLikePyTorch(file, bytes)) {
    const activation = options.activation ?? "relu";
    const layers = linearLayers(
      readStateDict(
        bytes,
        options.maxInflatedBytes !== undefined
          ? { maxInflatedBytes: options.maxInflatedBytes }
          : {},
      ),
    );
    // A .pth has no tensor names: take them from the golden file when it names them.
    const names = goldenText ? tensorNames(goldenText) : {};
    onnx = linearStackToOnnx(layers, { activation, ...names });
    conversion = {
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
    conversion = { kind: "onnx" };
  }

  // Structure first (clear messages for broken files), then onnxruntime itself must load it.
  const summary = inspectOnnx(onnx);
  if (!options.allowNonFinite) {
    assertFiniteWeights(onnx, "--allow-non-finite publishes it anyway");
  }
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
  let golden: Golden | undefined;
  if (goldenText !== undefined) {
    golden = parseGolden(goldenText, signature.inputs, signature.outputs);
  }
  let pruned: PruneOutcome | undefined;
  if (options.maxAccuracyDrop !== undefined && options.prune === undefined) {
    throw invalid("--max-accuracy-drop bounds what --prune may lose; give --prune too");
  }
  if (options.prune !== undefined) {
    // Loaded only here: it brings onnxruntime-node's native binding, which plain publishes never need.
    const { pruneDenseModel } = await import("../../convert/prune");
    pruned = await pruneDenseModel(onnx, {
      fraction: options.prune,
      ...(golden
        ? {
            cases: {
              inputs: flattenRows(golden.inputs),
              ...(golden.labels ? { labels: golden.labels } : {}),
            },
          }
        : {}),
      ...(options.maxAccuracyDrop !== undefined
        ? { maxAccuracyDrop: options.maxAccuracyDrop }
        : {}),
      ...(options.quantize === "int8"
        ? { int8: { kernels: await loadKernels(), module: await loadKernelsModule() } }
        : {}),
    });
    onnx = pruned.onnx;
    artifacts.onnx.bytes = onnx;
    // The golden outputs are the unpruned model's: the version must reproduce its own (the
    // pruned ONNX under onnxruntime), and the labels still say how accurate it is.
    if (golden && pruned.outputs) {
      const outputs = pruned.outputs;
      golden = { ...golden, expected: golden.expected.map((row, i) => nestLike(row, outputs[i]!)) };
    }
  }
  if (golden) {
    artifacts.golden = {
      bytes: new TextEncoder().encode(JSON.stringify(golden)),
      mediaType: GOLDEN_MEDIA_TYPE,
    };
  }
  if (options.labels !== undefined) {
    const labels = parseLabels(await readBounded(options.labels, "labels file"));
    artifacts.labels = { bytes: encodeLabels(labels), mediaType: LABELS_MEDIA_TYPE };
  }
  if (options.background !== undefined) {
    const background = parseBackgroundFile(
      await readBounded(options.background, "background file"),
      signature.inputs,
    );
    artifacts.background = {
      bytes: encodeBackground(background),
      mediaType: BACKGROUND_MEDIA_TYPE,
    };
  }
  const fields: VersionFields = {
    platform: "onnx_onnxv1",
    inputs: signature.inputs,
    outputs: signature.outputs,
    runtime: "ort",
    source: basename(file),
    ...(pruned ? { pruning: pruned.record } : {}),
  };
  let int8NotCompiled: string | undefined;
  if (options.quantize === "int8") {
    const result = await quantize(
      onnx,
      golden,
      options.maxSequence !== undefined ? { maxSequence: options.maxSequence } : {},
    );
    if ("reason" in result) {
      int8NotCompiled = result.reason;
    } else {
      artifacts.int8 = { bytes: result.plan, mediaType: INT8_PLAN_MEDIA_TYPE };
      fields.runtime = "int8";
      fields.quantization = result.quantization;
    }
  }
  // What the edge would have to hold: the int8 plan when it serves the version, else the ONNX model.
  const servedBytes = (artifacts.int8 ?? artifacts.onnx).bytes.byteLength;
  const budget = options.edgeBudgetBytes ?? DEFAULT_EDGE_BUDGET_BYTES;
  const placement =
    options.placement === undefined || options.placement === "auto"
      ? servedBytes > budget
        ? "origin"
        : "edge"
      : options.placement;
  fields.placement = placement;
  // The checks the admin API runs before it commits (the same code), so both targets refuse alike.
  checkVersionArtifacts(fields, {
    onnx: artifacts.onnx.bytes,
    ...(artifacts.int8 ? { int8: artifacts.int8.bytes } : {}),
    ...(artifacts.golden ? { golden: artifacts.golden.bytes } : {}),
    ...(artifacts.labels ? { labels: artifacts.labels.bytes } : {}),
    ...(artifacts.background ? { background: artifacts.background.bytes } : {}),
  });
  return {
    fields,
    artifacts,
    conversion,
    ...(int8NotCompiled ? { int8NotCompiled } : {}),
    valueShaped: valueShapedOutputs(onnx),
    ...(pruned ? { pruning: { variants: pruned.variants, search: pruned.search } } : {}),
  };
}
