/**
 * @module
 * Runs small ONNX graphs (built with `convert/onnx.ts`) in onnxruntime-web in
 * Node: the reference the kernels are tested against and the peer they are
 * benchmarked against.
 */
import * as ort from "onnxruntime-web";

ort.env.wasm.numThreads = 1;
ort.env.logLevel = "error";

export { ort };
export { ElemType, buildModel } from "../../convert/onnx";

/**
 * Creates a session. Tests turn graph optimisations off, so every node runs as
 * written; benchmarks leave them on, ORT at its best.
 */
export function session(model: Uint8Array, optimize = false): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, {
    graphOptimizationLevel: optimize ? "all" : "disabled",
  });
}
