import kernelsWasm from "../../../build/kernels.wasm";
import { Int8Runtime } from "../../../core/runtimes/int8/int8-runtime";
import { runtimeCases } from "./runtime.case";

// One batch of 100 shares one activation range, so the worst case is looser
// than per-request serving (checked at ≥ 0.999 in the HTTP tests).
runtimeCases("int8", () => new Int8Runtime(kernelsWasm), {
  int8: true,
  seed: { minCosine: 0.995 },
});
