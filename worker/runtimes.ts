/**
 * @module
 * The edge's runtimes: int8 on the kernels, and onnxruntime-web unless the
 * build leaves it out. Shared by the worker's data plane and the model
 * monitor's (which runs a rollout's gates).
 */
import kernelsWasm from "../build/kernels.wasm";
import { Int8Runtime } from "../core/runtimes/int8/int8-runtime";
import { OrtRuntime } from "../core/runtimes/ort/ort-runtime";
import type { Runtime } from "../core/runtimes/runtime";

/** Build-time switch (`wrangler deploy --define PINION_WITH_ORT:false`); on unless defined false. */
declare const PINION_WITH_ORT: boolean | undefined;

export function edgeRuntimes(): Runtime[] {
  return [
    new Int8Runtime(kernelsWasm),
    // Imported on first use: an isolate serving only int8 versions never
    // evaluates onnxruntime-web or pays its initialisation. A build with
    // `--define PINION_WITH_ORT:false` leaves ORT out of the bundle entirely.
    // (Written inline so the bundler can fold the condition and drop the import.)
    ...(typeof PINION_WITH_ORT === "undefined" || PINION_WITH_ORT
      ? [new OrtRuntime(async () => (await import("./ort-workerd")).loadOrt())]
      : []),
  ];
}
