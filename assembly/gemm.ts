/**
 * Int8 matrix multiplication with int32 accumulation.
 *
 * Both operands are widened to i16 with their zero points already subtracted
 * (values in [-255, 255]) and K padded with zeros to whole chunks of 8, so the
 * hot loop is nothing but loads, `i32x4.dot_i16x8_s` and adds. Operands are
 * laid out so that each micro-kernel walks one pointer per operand and reads
 * everything else at constant offsets (V8 folds those into the load):
 *
 *   A (activations) -> `widenRows`:   blocks of 4 rows; inside a block, chunk by
 *                      chunk, the 4 rows' 8 values side by side (a last block of
 *                      R < 4 rows interleaves R rows the same way)
 *   B (weights)     -> `packColumns`: pairs of columns; inside a pair, chunk by
 *                      chunk, the 2 columns' 8 values side by side (N padded with
 *                      zero columns to a multiple of 4)
 *
 * Weights are packed once, at load; activations are widened per call. Integer
 * sums are exact and associative modulo 2^32, so the blocking below gives the
 * same bits as any other summation order (ONNX MatMulInteger's contract).
 */

import { quantize4 } from "./quantize";

export const K_ALIGN: i32 = 8;
export const N_ALIGN: i32 = 4;

// @ts-ignore: decorator
@inline
export function paddedK(k: i32): i32 {
  return (k + K_ALIGN - 1) & ~(K_ALIGN - 1);
}

// @ts-ignore: decorator
@inline
export function paddedN(n: i32): i32 {
  return (n + N_ALIGN - 1) & ~(N_ALIGN - 1);
}

// @ts-ignore: decorator
@inline
function loadByte(p: usize, signed: bool): i32 {
  return signed ? <i32>load<i8>(p) : <i32>load<u8>(p);
}

/** Rows per block of widened A. */
const MR: i32 = 4;
/** Bytes of one chunk: 8 k values as i16. */
const CHUNK: usize = 16;

/**
 * Widens M×K bytes at `a` (row-major) to i16 at `out` in the block layout
 * above (M × Kp × 2 bytes), minus the zero point: one per tensor
 * (`zeroPointPerRow` false, value at `zeroPoints`) or one per row.
 */
export function widenRows(
  a: usize, m: i32, k: i32, signed: bool,
  zeroPoints: usize, zeroPointPerRow: bool, out: usize,
): void {
  const kp = paddedK(k);
  const chunks = kp >> 3;
  for (let r = 0; r < m; r++) {
    const block = r - r % MR;
    const rows = min(MR, m - block); // rows interleaved in this block
    const lane = <usize>(r - block);
    const zp = loadByte(zeroPoints + (zeroPointPerRow ? <usize>r : 0), signed);
    const zpv = i16x8.splat(<i16>zp);
    const src = a + <usize>r * <usize>k;
    const base = out + ((<usize>block * <usize>kp) << 1) + lane * CHUNK;
    const step = <usize>rows * CHUNK;
    let c = 0;
    // Whole chunks straight from the bytes: 16 bytes make two chunks.
    for (; (c + 2) * 8 <= k; c += 2) {
      const bytes = v128.load(src + (<usize>c << 3));
      const lo = signed ? i16x8.extend_low_i8x16_s(bytes) : i16x8.extend_low_i8x16_u(bytes);
      const hi = signed ? i16x8.extend_high_i8x16_s(bytes) : i16x8.extend_high_i8x16_u(bytes);
      v128.store(base + <usize>c * step, i16x8.sub(lo, zpv));
      v128.store(base + <usize>(c + 1) * step, i16x8.sub(hi, zpv));
    }
    // The rest element by element, zero beyond K.
    for (; c < chunks; c++) {
      const dst = base + <usize>c * step;
      for (let j = 0; j < 8; j++) {
        const i = (c << 3) + j;
        store<i16>(dst + (<usize>j << 1), i < k ? <i16>(loadByte(src + <usize>i, signed) - zp) : 0);
      }
    }
  }
}

/** 1.5 · 2^23: adding it leaves a float's value rounded to an integer in the low mantissa bits. */
const ROUNDING_MAGIC: f32 = 12582912.0;
const ROUNDING_MAGIC_BITS: i32 = 0x4b400000;

/**
 * `quantize4` for quotients below 2^22 in magnitude: the f32 addition of the
 * magic constant rounds half to even exactly as `f32.nearest` does, and the
 * integer sits in the mantissa, so two instructions replace nearest +
 * saturating truncation (several on x86). Dynamic quantisation divides by a
 * scale that spans the values (|x / scale| ≤ 255), so it always qualifies.
 */
// @ts-ignore: decorator
@inline
function quantizeSmall4(x: v128, scale: v128): v128 {
  return i32x4.sub(f32x4.add(f32x4.div(x, scale), f32x4.splat(ROUNDING_MAGIC)), i32x4.splat(ROUNDING_MAGIC_BITS));
}

/**
 * The fused path's shortcut through `quantizeLinear` + `widenRows`: quantises
 * M×K floats (u8, `scale`, `zeroPoint`: exactly QuantizeLinear's values) and
 * writes them minus the zero point straight into the widened block layout.
 * `scale` must span the values (|x / scale| < 2^22), as a dynamic range does.
 */
export function quantizeRowsI16(x: usize, m: i32, k: i32, scale: f32, zeroPoint: i32, out: usize): void {
  const kp = paddedK(k);
  const chunks = kp >> 3;
  const s = f32x4.splat(scale);
  const zp = i16x8.splat(<i16>zeroPoint);
  const lo = i16x8.splat(0);
  const hi = i16x8.splat(255);
  for (let r = 0; r < m; r++) {
    const block = r - r % MR;
    const rows = min(MR, m - block);
    const base = out + ((<usize>block * <usize>kp) << 1) + <usize>(r - block) * CHUNK;
    const step = <usize>rows * CHUNK;
    const src = x + ((<usize>r * <usize>k) << 2);
    let c = 0;
    for (; (c + 1) * 8 <= k; c++) {
      const p = src + (<usize>c << 5);
      // Same steps as QuantizeLinear to u8 (saturate, add zero point, clamp), then minus the zero point.
      const q = i16x8.narrow_i32x4_s(quantizeSmall4(v128.load(p), s), quantizeSmall4(v128.load(p, 16), s));
      const u8 = i16x8.min_s(i16x8.max_s(i16x8.add_sat_s(q, zp), lo), hi);
      v128.store(base + <usize>c * step, i16x8.sub(u8, zp));
    }
    for (; c < chunks; c++) {
      const dst = base + <usize>c * step;
      for (let j = 0; j < 8; j++) {
        const i = (c << 3) + j;
        let v: i32 = 0;
        if (i < k) {
          const q = quantize4(f32x4.splat(load<f32>(src + (<usize>i << 2))), s);
          const u8 = i16x8.min_s(i16x8.max_s(i16x8.add_sat_s(i16x8.narrow_i32x4_s(q, q), zp), lo), hi);
          v = <i32>i16x8.extract_lane_s(u8, 0) - zeroPoint;
        }
        store<i16>(dst + (<usize>j << 1), <i16>v);
      }
    }
  }
}

/**
 * Packs the K×N byte matrix at `b` (row-major, as MatMul's B) into column
 * pairs of i16 at `out` (layout above), minus the zero point: one per tensor
 * or one per column. `out` must hold `packedBytes(k, n)` bytes.
 */
export function packColumns(
  b: usize, k: i32, n: i32, signed: bool,
  zeroPoints: usize, zeroPointPerColumn: bool, out: usize,
): void {
  const kp = paddedK(k);
  const np = paddedN(n);
  for (let col = 0; col < np; col++) {
    const pair = col & ~1;
    const base = out + ((<usize>pair * <usize>kp) << 1) + <usize>(col & 1) * CHUNK;
    const zp = col < n ? loadByte(zeroPoints + (zeroPointPerColumn ? <usize>col : 0), signed) : 0;
    for (let i = 0; i < kp; i++) {
      const dst = base + <usize>(i >> 3) * (CHUNK << 1) + (<usize>(i & 7) << 1);
      const v = col < n && i < k ? loadByte(b + <usize>i * <usize>n + <usize>col, signed) - zp : 0;
      store<i16>(dst, <i16>v);
    }
  }
}

export function packedBytes(k: i32, n: i32): usize {
  return (<usize>paddedN(n) * <usize>paddedK(k)) << 1;
}

// @ts-ignore: decorator
@inline
function hsum(v: v128): i32 {
  const pairs = i32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return i32x4.extract_lane(i32x4.add(pairs, i32x4.shuffle(pairs, pairs, 1, 0, 3, 2)), 0);
}

/** The four horizontal sums of four accumulators, as one vector [Σa, Σb, Σc, Σd]. */
// @ts-ignore: decorator
@inline
function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
}

/**
 * C[M×N] (i32, row-major, row stride `n`) = A16 · B16ᵀ over the layouts above.
 * Blocks of four rows take two columns per step (8 accumulators; per chunk 6
 * loads, 8 dot products, 8 adds); a last block of
 * fewer rows goes one row × four columns at a time. (Unrolling the chunk loop
 * made V8 spill accumulators and ran at half the speed.)
 */
export function gemmI16(a16: usize, m: i32, k: i32, b16: usize, n: i32, c: usize): void {
  if (m <= 0 || n <= 0) return;
  const kp = paddedK(k);
  const chunks = kp >> 3;
  const pairBytes = <usize>kp << 2; // two columns
  const stride = <usize>n << 2;
  let r = 0;
  for (; r + MR <= m; r += MR) {
    const block = a16 + ((<usize>r * <usize>kp) << 1);
    const blockEnd = block + <usize>chunks * (CHUNK << 2);
    for (let col = 0; col < n; col += 2) {
      let pb = b16 + <usize>(col >> 1) * pairBytes;
      let c00 = i32x4.splat(0), c01 = i32x4.splat(0);
      let c10 = i32x4.splat(0), c11 = i32x4.splat(0);
      let c20 = i32x4.splat(0), c21 = i32x4.splat(0);
      let c30 = i32x4.splat(0), c31 = i32x4.splat(0);
      let pa = block;
      for (; pa < blockEnd; pa += 64, pb += 32) {
        const w0 = v128.load(pb);
        const w1 = v128.load(pb, 16);
        let x = v128.load(pa);
        c00 = i32x4.add(c00, i32x4.dot_i16x8_s(x, w0));
        c01 = i32x4.add(c01, i32x4.dot_i16x8_s(x, w1));
        x = v128.load(pa, 16);
        c10 = i32x4.add(c10, i32x4.dot_i16x8_s(x, w0));
        c11 = i32x4.add(c11, i32x4.dot_i16x8_s(x, w1));
        x = v128.load(pa, 32);
        c20 = i32x4.add(c20, i32x4.dot_i16x8_s(x, w0));
        c21 = i32x4.add(c21, i32x4.dot_i16x8_s(x, w1));
        x = v128.load(pa, 48);
        c30 = i32x4.add(c30, i32x4.dot_i16x8_s(x, w0));
        c31 = i32x4.add(c31, i32x4.dot_i16x8_s(x, w1));
      }
      const out = c + ((<usize>r * <usize>n + <usize>col) << 2);
      store<i32>(out, hsum(c00));
      store<i32>(out + stride, hsum(c10));
      store<i32>(out + 2 * stride, hsum(c20));
      store<i32>(out + 3 * stride, hsum(c30));
      if (col + 1 < n) {
        store<i32>(out, hsum(c01), 4);
        store<i32>(out + stride, hsum(c11), 4);
        store<i32>(out + 2 * stride, hsum(c21), 4);
        store<i32>(out + 3 * stride, hsum(c31), 4);
      }
    }
  }
  if (r == m) return;
  // The last block holds `rows` < 4 rows, interleaved chunk by chunk.
  const rows = m - r;
  const block = a16 + ((<usize>r * <usize>kp) << 1);
  const step = <usize>rows * CHUNK;
  for (let i = 0; i < rows; i++, r++) {
    let col = 0;
    // Eight columns per step while they last: one activation load feeds eight
    // dot products, and the loop overhead is shared by twice the work.
    for (; col + 8 <= n; col += 8) {
      let pa = block + <usize>i * CHUNK;
      let pb0 = b16 + <usize>(col >> 1) * pairBytes;
      let pb1 = pb0 + pairBytes;
      let pb2 = pb1 + pairBytes;
      let pb3 = pb2 + pairBytes;
      let s0 = i32x4.splat(0), s1 = i32x4.splat(0), s2 = i32x4.splat(0), s3 = i32x4.splat(0);
      let s4 = i32x4.splat(0), s5 = i32x4.splat(0), s6 = i32x4.splat(0), s7 = i32x4.splat(0);
      const end = pa + <usize>chunks * step;
      for (; pa < end; pa += step, pb0 += 32, pb1 += 32, pb2 += 32, pb3 += 32) {
        const x = v128.load(pa);
        s0 = i32x4.add(s0, i32x4.dot_i16x8_s(x, v128.load(pb0)));
        s1 = i32x4.add(s1, i32x4.dot_i16x8_s(x, v128.load(pb0, 16)));
        s2 = i32x4.add(s2, i32x4.dot_i16x8_s(x, v128.load(pb1)));
        s3 = i32x4.add(s3, i32x4.dot_i16x8_s(x, v128.load(pb1, 16)));
        s4 = i32x4.add(s4, i32x4.dot_i16x8_s(x, v128.load(pb2)));
        s5 = i32x4.add(s5, i32x4.dot_i16x8_s(x, v128.load(pb2, 16)));
        s6 = i32x4.add(s6, i32x4.dot_i16x8_s(x, v128.load(pb3)));
        s7 = i32x4.add(s7, i32x4.dot_i16x8_s(x, v128.load(pb3, 16)));
      }
      const out = c + ((<usize>r * <usize>n + <usize>col) << 2);
      v128.store(out, hsum4(s0, s1, s2, s3));
      v128.store(out, hsum4(s4, s5, s6, s7), 16);
    }
    for (; col < n; col += 4) {
      let pa = block + <usize>i * CHUNK;
      let pb0 = b16 + <usize>(col >> 1) * pairBytes;
      let pb1 = pb0 + pairBytes;
      let s0 = i32x4.splat(0), s1 = i32x4.splat(0), s2 = i32x4.splat(0), s3 = i32x4.splat(0);
      for (let chunk = 0; chunk < chunks; chunk++, pa += step, pb0 += 32, pb1 += 32) {
        const x = v128.load(pa);
        s0 = i32x4.add(s0, i32x4.dot_i16x8_s(x, v128.load(pb0)));
        s1 = i32x4.add(s1, i32x4.dot_i16x8_s(x, v128.load(pb0, 16)));
        s2 = i32x4.add(s2, i32x4.dot_i16x8_s(x, v128.load(pb1)));
        s3 = i32x4.add(s3, i32x4.dot_i16x8_s(x, v128.load(pb1, 16)));
      }
      const out = c + ((<usize>r * <usize>n + <usize>col) << 2);
      const sums = hsum4(s0, s1, s2, s3);
      if (col + 4 <= n) {
        v128.store(out, sums);
      } else {
        store<i32>(out, i32x4.extract_lane(sums, 0));
        if (col + 1 < n) store<i32>(out, i32x4.extract_lane(sums, 1), 4);
        if (col + 2 < n) store<i32>(out, i32x4.extract_lane(sums, 2), 8);
      }
    }
  }
}
