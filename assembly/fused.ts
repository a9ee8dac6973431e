/**
 * The fused inference layer: dynamic u8 quantisation of the activations, each
 * row (sample) with its own scale and zero point → int8 GEMM against
 * pre-packed symmetric weights → dequantisation with the row's activation
 * scale and per-output-channel weight scales → bias → activation, writing f32.
 *
 * Row r of its result equals, bit for bit, the ONNX graph
 *   DynamicQuantizeLinear(x[r]) → MatMulInteger(·, W, a_zp, 0) → Cast(f32)
 *   → Mul(a_scale · w_scale) → Add(bias) → Relu
 * evaluated in f32 on that row alone (a batch of one), so a row's answer never
 * depends on the other rows of the call.
 */
import { rowRanges } from "./quantize";
import { gemmI16, paddedK, quantizeRowsI16 } from "./gemm";
import { dequantizeAccumulators } from "./epilogue";

// @ts-ignore: decorator
@inline
function align16(bytes: usize): usize {
  return (bytes + 15) & ~15;
}

/** Scratch bytes `fusedLinear` needs for an M×K input and N outputs. */
export function fusedScratchBytes(m: i32, k: i32, n: i32): usize {
  return (
    align16((<usize>m * <usize>paddedK(k)) << 1) +
    align16((<usize>m * <usize>n) << 2) +
    (align16(<usize>m << 2) << 1)
  );
}

/**
 * y[M×N] = act(dequant(quant(x[M×K]) · W) + bias), quantising each row of `x`
 * on its own. `packedW` comes from `packColumns` over the K×N int8 weights
 * with zero point 0. Returns 0, or 1 when `x` holds NaN or ±Inf (then `y` is
 * untouched).
 */
export function fusedLinear(
  x: usize, m: i32, k: i32, packedW: usize, n: i32,
  wScales: usize, bias: usize, activation: i32, y: usize, scratch: usize,
): i32 {
  const a16 = scratch;
  const acc = a16 + align16((<usize>m * <usize>paddedK(k)) << 1);
  const rowScales = acc + align16((<usize>m * <usize>n) << 2);
  const rowZeroPoints = rowScales + align16(<usize>m << 2);
  // Each row's DynamicQuantizeLinear range; all rows are checked before anything is written.
  if (rowRanges(x, m, k, rowScales, rowZeroPoints) != 0) return 1;
  quantizeRowsI16(x, m, k, rowScales, rowZeroPoints, a16);
  gemmI16(a16, m, k, packedW, n, acc);
  dequantizeAccumulators(acc, m, n, rowScales, wScales, bias, activation, y);
  return 0;
}

/** Bytes per layer record in a `denseChain` table: k, n, weights, scales, bias, activation. */
export const LAYER_RECORD_BYTES: usize = 24;

/**
 * Runs a chain of fused layers in one call, ping-ponging activations between
 * two buffers in `scratch`, so a whole dense network costs one crossing from
 * the host. `table` holds `count` 24-byte records (i32 k, i32 n, ptr packed
 * weights, ptr scales, ptr bias or 0, i32 activation); `scratch` must hold
 * `denseChainScratchBytes`. Returns 0, or 1 for NaN/±Inf activations.
 */
export function denseChain(table: usize, count: i32, x: usize, m: i32, y: usize, scratch: usize): i32 {
  let widest = 0;
  for (let i = 0; i < count; i++) widest = max(widest, load<i32>(table + <usize>i * LAYER_RECORD_BYTES, 4));
  const ping = scratch;
  const pong = ping + align16((<usize>m * <usize>widest) << 2);
  const work = pong + align16((<usize>m * <usize>widest) << 2);
  let input = x;
  for (let i = 0; i < count; i++) {
    const record = table + <usize>i * LAYER_RECORD_BYTES;
    const k = load<i32>(record);
    const n = load<i32>(record, 4);
    const output = i == count - 1 ? y : i & 1 ? pong : ping;
    const status = fusedLinear(
      input, m, k, load<usize>(record, 8), n,
      load<usize>(record, 12), load<usize>(record, 16), load<i32>(record, 20), output, work,
    );
    if (status != 0) return status;
    input = output;
  }
  return 0;
}

/** Scratch `denseChain` needs for batch `m`, the widest layer output `widest`, and the largest fused scratch. */
export function denseChainScratchBytes(m: i32, widest: i32, largestFused: usize): usize {
  return (align16((<usize>m * <usize>widest) << 2) << 1) + largestFused;
}
