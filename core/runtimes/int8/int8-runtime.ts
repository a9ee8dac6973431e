/**
 * @module
 * The int8 runtime: serves a version's int8 plan on Pinion's WASM kernels.
 * Each loaded model gets its own small kernels instance (its own linear
 * memory, holding the packed weights), so nothing is shared between models and
 * dropping the model frees everything. Dense chains (plan versions 1 and 2)
 * run on the fused chain executor, graphs (version 3: convolutional networks)
 * on the graph executor. It never touches onnxruntime.
 */
import { unavailable } from "../../errors";
import type { Tensor, TensorSpec } from "../../protocol/datatypes";
import type { Manifest } from "../../registry/manifest";
import type { ArtifactSource, LoadedModel, Runtime } from "../runtime";
import { PlanExecutor } from "./executor";
import { GraphExecutor } from "./graph-executor";
import { Int8Kernels } from "./kernels";
import { GRAPH_PLAN_VERSION, planFormatVersion } from "./plan";

export class Int8Runtime implements Runtime {
  readonly name = "int8";

  /** `kernels` is the compiled kernels module (imported as a module in workerd). */
  constructor(private readonly kernels: WebAssembly.Module) {}

  async load(manifest: Manifest, artifacts: ArtifactSource): Promise<LoadedModel> {
    const label = `${manifest.name}@${manifest.version}`;
    if (!manifest.artifacts.int8) throw unavailable(`${label} has no int8 plan`);
    const plan = await artifacts("int8");
    let program: Int8Program;
    try {
      program = await loadProgram(this.kernels, plan);
    } catch (cause) {
      throw unavailable(
        `the int8 plan of ${label} cannot be loaded: ${(cause as Error).message}`,
        cause,
      );
    }
    if (
      manifest.inputs.length !== 1 ||
      manifest.outputs.length !== 1 ||
      manifest.inputs[0]!.name !== program.inputName ||
      manifest.outputs[0]!.name !== program.outputName
    ) {
      throw unavailable(`the int8 plan of ${label} does not match its manifest's inputs/outputs`);
    }
    return new Int8Model(program, manifest.inputs, manifest.outputs);
  }
}

/** A loaded int8 plan, whichever its format: a dense chain or a graph. */
export interface Int8Program {
  readonly inputName: string;
  readonly outputName: string;
  /** Output values per sample. */
  readonly outputWidth: number;
  /** The output's shape for `batch` samples. */
  outputShape(batch: number): number[];
  /** Everything the program's kernels instance will hold, its largest block of samples included. */
  readonly bytesHeld: number;
  /** `x`: [batch, input values per sample], row-major as the request sent it. */
  run(x: Float32Array, batch: number): Float32Array;
}

/** Loads a plan of any readable format on its own kernels instance. */
export async function loadProgram(
  module: WebAssembly.Module,
  plan: Uint8Array,
): Promise<Int8Program> {
  if (planFormatVersion(plan) === GRAPH_PLAN_VERSION) {
    const graph = await GraphExecutor.instantiate(module, plan);
    return {
      inputName: graph.plan.input.name,
      outputName: graph.plan.output.name,
      outputWidth: graph.outputWidth,
      outputShape: (batch) => [batch, ...graph.plan.output.shape.slice(1)],
      // Weights, arena and scratch were all allocated at load.
      bytesHeld: graph.memoryBytes,
      run: (x, batch) => graph.run(x, batch),
    };
  }
  const kernels = await Int8Kernels.instantiate(module);
  const chain = new PlanExecutor(kernels, plan);
  return {
    inputName: chain.metadata.input.name,
    outputName: chain.metadata.output.name,
    outputWidth: chain.outputWidth,
    outputShape: (batch) => [batch, chain.outputWidth],
    // What the instance holds now (weights) plus what its largest block of rows
    // will make it grow to: WASM memory never shrinks, so count it up front.
    bytesHeld: kernels.memoryBytes + chain.blockScratchBytes(),
    run: (x, batch) => chain.run(x, batch),
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

  /** Static shapes: [batch, output values per sample] per output. */
  outputElements(inputs: readonly Tensor[], outputNames: readonly string[]): number {
    return inputs[0]!.shape[0]! * this.program.outputWidth * outputNames.length;
  }

  /** Synchronous: the kernels never wait on anything. */
  run(inputs: readonly Tensor[], outputNames: readonly string[]): Tensor[] {
    const x = inputs[0]!;
    const batch = x.shape[0]!;
    const y = this.program.run(x.data as Float32Array, batch);
    return outputNames.map((name) => ({
      name,
      datatype: "FP32" as const,
      shape: this.program.outputShape(batch),
      data: y,
    }));
  }

  async dispose(): Promise<void> {
    // Nothing to release explicitly: the instance and its memory go with this object.
  }
}
