/**
 * @module
 * The one interface every runtime implements. A runtime turns a version's
 * artifacts into a loaded model; a loaded model runs batches and says how much
 * memory it holds, so the serving layer can keep the isolate within budget.
 */
import type { Tensor, TensorSpec } from "../protocol/datatypes";
import type { ArtifactRole, Manifest } from "../registry/manifest";

/**
 * What answered, as reported in `x-pinion-runtime`: onnxruntime-web or the int8
 * runtime at the edge, or onnxruntime-node on the companion origin server.
 */
export type RuntimeName = "ort" | "int8" | "origin";

/** Fetches one of the version's artifacts, digest already verified. */
export interface ArtifactSource {
  (role: ArtifactRole): Promise<Uint8Array>;
  /**
   * Where offered, streams the artifact into `sink` in order (each chunk is
   * reused after the call) and resolves once its size and digest are
   * verified; on a rejection whatever was built from it must be dropped. A
   * runtime that places bytes somewhere of its own (WASM memory) uses this to
   * never hold the artifact twice.
   */
  stream?(role: ArtifactRole, sink: (chunk: Uint8Array, offset: number) => void): Promise<void>;
  /**
   * The most memory a loaded model may hold (the model cache's budget). A
   * runtime that allocates while bytes stream in, before their digest is
   * known, refuses to allocate beyond it.
   */
  limitBytes?: number;
}

export interface LoadedModel {
  readonly runtime: RuntimeName;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** Bytes this model keeps alive while loaded (weights, runtime buffers). */
  readonly bytesHeld: number;
  /**
   * Runs one batch. `inputs` match `this.inputs` by name and have been checked
   * against their specs; the result holds exactly the `outputNames` asked for,
   * in that order. A runtime that computes synchronously (int8) returns the
   * tensors themselves, so its requests take no detour through the microtask
   * queue (a measurable share of a microsecond-scale run); callers `await` it.
   */
  run(inputs: readonly Tensor[], outputNames: readonly string[]): Tensor[] | Promise<Tensor[]>;
  /**
   * How many elements `run` will return, for a runtime whose output shapes
   * follow from the input shapes alone (int8): lets the server refuse an
   * oversized answer before computing it. Absent where only running tells.
   */
  outputElements?(inputs: readonly Tensor[], outputNames: readonly string[]): number;
  /** Frees what the model holds; called once, when it is evicted. */
  dispose(): Promise<void>;
}

export interface Runtime {
  readonly name: RuntimeName;
  load(manifest: Manifest, artifacts: ArtifactSource): Promise<LoadedModel>;
}
