/**
 * The fused inference layer: dynamic u8 quantisation of the activations →
 * int8 GEMM against pre-packed symmetric weights → dequantisation with
 * per-output-channel weight scales → bias → activation, writing f32.
 *
 * Its result equals, bit for bit, the ONNX graph
 *   DynamicQuantizeLinear(x) → MatMulInteger(·, W, a_zp, 0) → Cast(f32)
 *   → Mul(a_scale · w_scale) → Add(bias) → Relu
 * evaluated in f32.
 */
import { dynamicQuantizeLinear, dynamicScale, dynamicZeroPoint } from "./quantize";
import { gemmI16, paddedK, widenRows } from "./gemm";
import { dequantizeAccumulators } from "./epilogue";

// @ts-ignore: decorator
@inline
function align16(bytes: usize): usize {
  return (bytes + 15) & ~15;
}

/** Scratch bytes `fusedLinear` needs for an M×K input and N outputs. */
export function fusedScratchBytes(m: i32, k: i32, n: i32): usize {
  const mk = <usize>m * <usize>k;
  return 16 + align16(mk) + align16((<usize>m * <usize>paddedK(k)) << 1) + align16((<usize>m * <usize>n) << 2);
}

/**
 * y[M×N] = act(dequant(quant(x[M×K]) · W) + bias). `packedW` comes from
 * `packColumns` over the K×N int8 weights with zero point 0. Returns 0, or 1
 * when `x` holds NaN or ±Inf (then `y` is untouched).
 */
export function fusedLinear(
  x: usize, m: i32, k: i32, packedW: usize, n: i32,
  wScales: usize, bias: usize, activation: i32, y: usize, scratch: usize,
): i32 {
  const zpSlot = scratch;
  const q = scratch + 16;
  const a16 = q + align16(<usize>m * <usize>k);
  const acc = a16 + align16((<usize>m * <usize>paddedK(k)) << 1);
  if (dynamicQuantizeLinear(x, m * k, q) != 0) return 1;
  store<u8>(zpSlot, <u8>dynamicZeroPoint());
  widenRows(q, m, k, false, zpSlot, false, a16);
  gemmI16(a16, m, k, packedW, n, acc);
  dequantizeAccumulators(acc, m, n, dynamicScale(), wScales, bias, activation, y);
  return 0;
}
