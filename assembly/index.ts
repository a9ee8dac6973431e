/**
 * The kernels' ABI: flat functions over sizes and pointers into this module's
 * memory. Nothing else lives here. Booleans are passed as i32 (0 or 1).
 */
export { allocate, mark, release } from "./memory";
export {
  quantizeLinear,
  quantizeLinearAxis,
  dequantizeLinear,
  dequantizeLinearAxis,
  dynamicQuantizeLinear,
  dynamicScale,
  dynamicZeroPoint,
} from "./quantize";
export { widenRows, packColumns, packedBytes, gemmI16 } from "./gemm";
export { requantize, dequantizeAccumulators } from "./epilogue";
export { fusedLinear, fusedScratchBytes, denseChain, denseChainScratchBytes } from "./fused";
export { convInt8, convInt8ScratchBytes, depthwiseConv } from "./conv";
export { maxPool, averagePool, globalAveragePool } from "./pool";
export {
  activate,
  add,
  mul,
  mulChannels,
  concatChannels,
  nchwToNhwc,
  nhwcToNchw,
} from "./elementwise";
export {
  gatherRows,
  gatherRowsI8,
  layerNorm,
  softmaxRows,
  gelu,
  erf,
  tanhRows,
  batchedMatMul,
  batchedMatMulStrided,
  addBias,
  meanPoolMasked,
} from "./transformer";
