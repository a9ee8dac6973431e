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
import { unavailable } from "../../errors";
import type { Tensor, TensorSpec } from "../../protocol/datatypes";
import type { Manifest } from "../../registry/manifest";
import type { ArtifactSource, LoadedModel, Runtime } from "../runtime";
import { PlanExecutor } from "./executor";
import { GraphExecutor } from "./graph-executor";
import { Int8Kernels } from "./kernels";
import { GRAPH_PLAN_VERSION, planFormatVersion, TEXT_PLAN_VERSION } from "./plan";
import { TextExecutor } from "./text-executor";

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

/** Loads a plan of any readable format on its own kernels instance. */
export async function loadProgram(
  module: WebAssembly.Module,
  plan: Uint8Array,
): Promise<Int8Program> {
  const version = planFormatVersion(plan);
  if (version === TEXT_PLAN_VERSION) {
    const text = await TextExecutor.instantiate(module, plan);
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
