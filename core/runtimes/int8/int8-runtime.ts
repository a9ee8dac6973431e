/**
 * @module
 * The int8 runtime: serves a version's int8 plan on Pinion's WASM kernels.
 * Each loaded model gets its own small kernels instance (its own linear
 * memory, holding the packed weights), so nothing is shared between models and
 * dropping the model frees everything. It never touches onnxruntime.
 */
import { unavailable } from "../../errors";
import type { Tensor, TensorSpec } from "../../protocol/datatypes";
import type { Manifest } from "../../registry/manifest";
import type { ArtifactSource, LoadedModel, Runtime } from "../runtime";
import { PlanExecutor } from "./executor";
import { Int8Kernels } from "./kernels";

export class Int8Runtime implements Runtime {
  readonly name = "int8";

  /** `kernels` is the compiled kernels module (imported as a module in workerd). */
  constructor(private readonly kernels: WebAssembly.Module) {}

  async load(manifest: Manifest, artifacts: ArtifactSource): Promise<LoadedModel> {
    const label = `${manifest.name}@${manifest.version}`;
    if (!manifest.artifacts.int8) throw unavailable(`${label} has no int8 plan`);
    const plan = await artifacts("int8");
    const kernels = await Int8Kernels.instantiate(this.kernels);
    let executor: PlanExecutor;
    try {
      executor = new PlanExecutor(kernels, plan);
    } catch (cause) {
      throw unavailable(
        `the int8 plan of ${label} cannot be loaded: ${(cause as Error).message}`,
        cause,
      );
    }
    const { input, output } = executor.metadata;
    if (
      manifest.inputs.length !== 1 ||
      manifest.outputs.length !== 1 ||
      manifest.inputs[0]!.name !== input.name ||
      manifest.outputs[0]!.name !== output.name
    ) {
      throw unavailable(`the int8 plan of ${label} does not match its manifest's inputs/outputs`);
    }
    return new Int8Model(executor, kernels, manifest.inputs, manifest.outputs);
  }
}

class Int8Model implements LoadedModel {
  readonly runtime = "int8";
  readonly bytesHeld: number;

  constructor(
    private readonly executor: PlanExecutor,
    kernels: Int8Kernels,
    readonly inputs: readonly TensorSpec[],
    readonly outputs: readonly TensorSpec[],
  ) {
    // What the instance holds now (weights) plus what its largest block of rows
    // will make it grow to: WASM memory never shrinks, so count it up front.
    this.bytesHeld = kernels.memoryBytes + executor.blockScratchBytes();
  }

  /** Static shapes: [batch, output width] per output. */
  outputElements(inputs: readonly Tensor[], outputNames: readonly string[]): number {
    return inputs[0]!.shape[0]! * this.executor.outputWidth * outputNames.length;
  }

  /** Synchronous: the kernels never wait on anything. */
  run(inputs: readonly Tensor[], outputNames: readonly string[]): Tensor[] {
    const x = inputs[0]!;
    const batch = x.shape[0]!;
    const y = this.executor.run(x.data as Float32Array, batch);
    return outputNames.map((name) => ({
      name,
      datatype: "FP32" as const,
      shape: [batch, this.executor.outputWidth],
      data: y,
    }));
  }

  async dispose(): Promise<void> {
    // Nothing to release explicitly: the instance and its memory go with this object.
  }
}
