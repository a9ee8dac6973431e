/**
 * @module
 * The int8 runtime: serves a version's int8 plan on Pinion's WASM kernels.
 * Each loaded model gets its own small kernels instance (its own linear
 * memory, holding the packed weights), so nothing is shared between models and
 * dropping the model frees everything. Dense chains (plan versions 1 and 2)
 * run on the fused chain executor, graphs (version 3: convolutional networks)
 * on the graph executor, text encoders (version 4: token-id inputs, a
 * sequence length per request) on the text executor. It never touches
 * onnxruntime.
 */
import { invalid, unavailable } from "../../errors";
import type { Tensor, TensorSpec } from "../../protocol/datatypes";
import type { Manifest } from "../../registry/manifest";
import type { ArtifactSource, LoadedModel, Runtime } from "../runtime";
import { PlanExecutor } from "./executor";
import { GraphExecutor } from "./graph-executor";
import { Int8Kernels } from "./kernels";
import {
  GRAPH_PLAN_VERSION,
  metadataEnd,
  PLAN_HEADER_BYTES,
  planFormatVersion,
  TEXT_PLAN_VERSION,
} from "./plan";
import { TextExecutor, textAbi, TextPlanPlacement } from "./text-executor";

export class Int8Runtime implements Runtime {
  readonly name = "int8";

  /** `kernels` is the compiled kernels module (imported as a module in workerd). */
  constructor(private readonly kernels: WebAssembly.Module) {}

  async load(manifest: Manifest, artifacts: ArtifactSource): Promise<LoadedModel> {
    const label = `${manifest.name}@${manifest.version}`;
    const artifact = manifest.artifacts.int8;
    if (!artifact) throw unavailable(`${label} has no int8 plan`);
    // The registry's own errors (a missing object, a failed digest) pass as they are; anything
    // the plan itself gets wrong is this version being unloadable.
    let sourceError: unknown;
    const feed = (sink: (chunk: Uint8Array, offset: number) => void) =>
      artifacts.stream!("int8", sink).catch((error: unknown) => {
        sourceError = error;
        throw error;
      });
    const bytes = artifacts.stream ? undefined : await artifacts("int8");
    let program: Int8Program;
    try {
      program = bytes
        ? await loadProgram(this.kernels, bytes)
        : await streamProgram(this.kernels, artifact.bytes, feed, artifacts.limitBytes);
    } catch (cause) {
      if (cause === sourceError) throw cause;
      throw unavailable(
        `the int8 plan of ${label} cannot be loaded: ${(cause as Error).message}`,
        cause,
      );
    }
    const names = manifest.inputs.map((i) => i.name);
    if (
      names.length !== program.inputNames.length ||
      names.some((name, i) => name !== program.inputNames[i]) ||
      manifest.outputs.length !== 1 ||
      manifest.outputs[0]!.name !== program.outputName
    ) {
      throw unavailable(`the int8 plan of ${label} does not match its manifest's inputs/outputs`);
    }
    return new Int8Model(program, manifest.inputs, manifest.outputs);
  }
}

/** A loaded int8 plan, whichever its format: a dense chain, a graph or a text encoder. */
export interface Int8Program {
  /** The plan's inputs, in the order `runInputs` takes them (one, except text models). */
  readonly inputNames: readonly string[];
  readonly outputName: string;
  /** Everything the program's kernels instance will hold, its largest block of samples included. */
  readonly bytesHeld: number;
  /** The output's shape for these inputs (checked against the plan: a bad shape throws). */
  outputShapeOf(inputs: readonly Tensor[]): number[];
  /** Runs a request's inputs (in `inputNames` order, checked against their specs). */
  runInputs(inputs: readonly Tensor[]): Float32Array;
  /**
   * One tensor given as floats, [batch, values per sample] (a text model's
   * token ids as numbers): for publish's accuracy report and tests.
   */
  run(x: Float32Array, batch: number): Float32Array;
}

/**
 * Loads a plan as its bytes stream in (`feed` calls the sink in order, then
 * resolves once the bytes are verified), never allocating more than
 * `limitBytes` of kernel memory before they are. A text plan is placed in its kernels
 * instance chunk by chunk and never held whole; other formats are collected
 * and loaded as a whole (they are small).
 */
export async function streamProgram(
  module: WebAssembly.Module,
  totalBytes: number,
  feed: (sink: (chunk: Uint8Array, offset: number) => void) => Promise<void>,
  limitBytes = Infinity,
): Promise<Int8Program> {
  let text: TextPlanPlacement | undefined;
  let whole: Uint8Array | undefined;
  // The file's start, kept until its metadata is complete (usually all in the first chunk).
  let pending: Uint8Array | undefined;
  const place = (chunk: Uint8Array, offset: number): void => {
    if (text) return text.place(chunk, offset);
    if (whole) return void whole.set(chunk, offset);
    let head = chunk;
    if (pending) {
      head = new Uint8Array(offset + chunk.byteLength);
      head.set(pending);
      head.set(chunk, offset);
    }
    if (head.byteLength >= PLAN_HEADER_BYTES && planFormatVersion(head) !== TEXT_PLAN_VERSION) {
      whole = new Uint8Array(totalBytes);
      whole.set(head);
    } else if (head.byteLength < metadataEnd(head)) {
      pending = head === chunk ? chunk.slice() : head;
    } else {
      text = new TextPlanPlacement(textAbi(module), head, totalBytes, limitBytes);
      text.place(head, 0);
    }
  };
  // Bytes are placed before the digest is known: a plan that fails to parse is reported only
  // once the digest matched (a corrupted artifact is an integrity failure, logged as such).
  let fault: unknown;
  await feed((chunk, offset) => {
    if (fault !== undefined) return;
    try {
      place(chunk, offset);
    } catch (error) {
      fault = error;
    }
  });
  if (fault !== undefined) throw fault;
  if (text) return textProgram(text.finish());
  if (!whole) throw invalid("int8 plan is truncated (header)");
  return loadProgram(module, whole);
}

/** Loads a plan of any readable format on its own kernels instance. */
export async function loadProgram(
  module: WebAssembly.Module,
  plan: Uint8Array,
): Promise<Int8Program> {
  const version = planFormatVersion(plan);
  if (version === TEXT_PLAN_VERSION) {
    return textProgram(await TextExecutor.instantiate(module, plan));
  }
  const floats = (inputs: readonly Tensor[]) => inputs[0]!.data as Float32Array;
  if (version === GRAPH_PLAN_VERSION) {
    const graph = await GraphExecutor.instantiate(module, plan);
    return {
      inputNames: [graph.plan.input.name],
      outputName: graph.plan.output.name,
      outputShapeOf: (inputs) => [inputs[0]!.shape[0]!, ...graph.plan.output.shape.slice(1)],
      // Weights, arena and scratch were all allocated at load.
      bytesHeld: graph.memoryBytes,
      runInputs: (inputs) => graph.run(floats(inputs), inputs[0]!.shape[0]!),
      run: (x, batch) => graph.run(x, batch),
    };
  }
  const kernels = await Int8Kernels.instantiate(module);
  const chain = new PlanExecutor(kernels, plan);
  return {
    inputNames: [chain.metadata.input.name],
    outputName: chain.metadata.output.name,
    outputShapeOf: (inputs) => [inputs[0]!.shape[0]!, chain.outputWidth],
    runInputs: (inputs) => chain.run(floats(inputs), inputs[0]!.shape[0]!),
    // What the instance holds now (weights) plus what its largest block of rows
    // will make it grow to: WASM memory never shrinks, so count it up front.
    bytesHeld: kernels.memoryBytes + chain.blockScratchBytes(),
    run: (x, batch) => chain.run(x, batch),
  };
}

function textProgram(text: TextExecutor): Int8Program {
  const first = text.plan.inputs[0]!;
  return {
    inputNames: text.plan.inputs.map((i) => i.name),
    outputName: text.plan.output.name,
    bytesHeld: text.memoryBytes,
    outputShapeOf: (inputs) => text.outputShape(inputs[0]!.shape[0]!, text.sequenceOf(inputs)),
    runInputs: (inputs) => text.run(inputs),
    run: (x, batch) =>
      text.run([
        {
          name: first.name,
          datatype: "INT32",
          shape: [batch, x.length / batch],
          data: x, // the executor narrows each value, refusing non-integers
        },
      ]),
  };
}

class Int8Model implements LoadedModel {
  readonly runtime = "int8";
  readonly bytesHeld: number;

  constructor(
    private readonly program: Int8Program,
    readonly inputs: readonly TensorSpec[],
    readonly outputs: readonly TensorSpec[],
  ) {
    this.bytesHeld = program.bytesHeld;
  }

  /** Output shapes follow from the input shapes (and the sequence length for text plans). */
  outputElements(inputs: readonly Tensor[], outputNames: readonly string[]): number {
    const shape = this.program.outputShapeOf(inputs);
    return shape.reduce((a, b) => a * b, 1) * outputNames.length;
  }

  /** Synchronous: the kernels never wait on anything. */
  run(inputs: readonly Tensor[], outputNames: readonly string[]): Tensor[] {
    const shape = this.program.outputShapeOf(inputs);
    const y = this.program.runInputs(inputs);
    return outputNames.map((name) => ({ name, datatype: "FP32" as const, shape, data: y }));
  }

  async dispose(): Promise<void> {
    // Nothing to release explicitly: the instance and its memory go with this object.
  }
}
