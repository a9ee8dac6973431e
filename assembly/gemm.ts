/**
 * Int8 matrix multiplication with int32 accumulation.
 *
 * Both operands are widened to i16 with their zero points already subtracted
 * (values in [-255, 255]) and K padded with zeros to a multiple of 8. The hot
 * loops are nothing but loads, `i32x4.dot_i16x8_s` and adds, in broadcast
 * form: one 32-bit load splats a row's two consecutive k values (a "k-pair")
 * across the vector, a weight vector holds that k-pair for four columns, and
 * the dot product is then those four columns' partial sums, so no horizontal
 * sums are ever needed. Layouts (each micro-kernel walks one pointer per
 * operand and reads everything else at constant offsets, which V8 folds into
 * the load):
 *
 *   A (activations) -> `widenRows` / `quantizeRowsI16`: rows in pairs; inside
 *                      a pair, k-pair by k-pair, the two rows' 4 bytes side by
 *                      side (a last odd row is plain: its k-pairs in order)
 *   B (weights)     -> `packColumns`: panels of 16 columns (N padded with zero
 *                      columns to a multiple of 8, so a last panel may hold 8);
 *                      inside a panel, k-pair by k-pair, its columns' 4 bytes
 *                      side by side (64 bytes per k-pair in a full panel)
 *
 * Why this shape: at batch 1 the kernel is bound by vector loads (each weight
 * vector feeds one dot product), and V8 issues a block's loads ahead of the
 * arithmetic, so a micro-kernel whose loads and accumulators exceed the 15
 * usable xmm registers spills on every step. The micro-kernels below stay
 * within them: 1 row × 16 columns over two k-pairs per step (4 accumulators,
 * 8 weight vectors, 2 splats) and 2 rows × 16 columns over one (8
 * accumulators, 4 weight vectors, 2 splats).
 *
 * Weights are packed once, at load; activations are laid out per call.
 * Integer sums are exact and associative modulo 2^32, so the blocking gives
 * the same bits as any other summation order (ONNX MatMulInteger's contract).
 */

import { quantize4 } from "./quantize";

export const K_ALIGN: i32 = 8;
export const N_ALIGN: i32 = 8;
/** Columns per weight panel. */
const PANEL: i32 = 16;

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

/**
 * Where value `i` of a row goes in the A layout, relative to its row pair's
 * start: `rows` (1 or 2) rows share the pair, the row is at `lane`.
 */
// @ts-ignore: decorator
@inline
function aOffset(i: i32, rows: i32, lane: i32): usize {
  return (<usize>(i >> 1) * (<usize>rows << 2)) + (<usize>lane << 2) + (<usize>(i & 1) << 1);
}

/**
 * Stores 8 i16 values of one row (k = 8c … 8c+7) at chunk `c` of its row
 * pair: as they are for a lone row; interleaved k-pair by k-pair with the
 * other row's 8 (`other`) for a pair.
 */
// @ts-ignore: decorator
@inline
function storeChunk(base: usize, c: i32, first: v128, other: v128, paired: bool): void {
  if (paired) {
    const at = base + (<usize>c << 5);
    v128.store(at, i32x4.shuffle(first, other, 0, 4, 1, 5));
    v128.store(at, i32x4.shuffle(first, other, 2, 6, 3, 7), 16);
  } else {
    v128.store(base + (<usize>c << 4), first);
  }
}

/**
 * Widens M×K bytes at `a` (row-major) to i16 at `out` in the A layout above
 * (M × Kp × 2 bytes), minus the zero point: one per tensor
 * (`zeroPointPerRow` false, value at `zeroPoints`) or one per row.
 */
export function widenRows(
  a: usize, m: i32, k: i32, signed: bool,
  zeroPoints: usize, zeroPointPerRow: bool, out: usize,
): void {
  const kp = paddedK(k);
  for (let r = 0; r < m; r += 2) {
    const paired = r + 1 < m;
    const rows = paired ? 2 : 1;
    const zp0 = loadByte(zeroPoints + (zeroPointPerRow ? <usize>r : 0), signed);
    const zp1 = paired ? loadByte(zeroPoints + (zeroPointPerRow ? <usize>(r + 1) : 0), signed) : 0;
    const zpv0 = i16x8.splat(<i16>zp0);
    const zpv1 = i16x8.splat(<i16>zp1);
    const src0 = a + <usize>r * <usize>k;
    const src1 = src0 + <usize>k;
    const base = out + ((<usize>r * <usize>kp) << 1);
    let c = 0;
    for (; (c + 1) * 8 <= k; c++) {
      const at = <usize>c << 3;
      const v0 = i16x8.sub(signed ? v128.load8x8_s(src0 + at) : v128.load8x8_u(src0 + at), zpv0);
      const v1 = paired
        ? i16x8.sub(signed ? v128.load8x8_s(src1 + at) : v128.load8x8_u(src1 + at), zpv1)
        : v0;
      storeChunk(base, c, v0, v1, paired);
    }
    // The rest value by value, zero beyond K.
    for (let i = c << 3; i < kp; i++) {
      store<i16>(base + aOffset(i, rows, 0), i < k ? <i16>(loadByte(src0 + <usize>i, signed) - zp0) : 0);
      if (paired) {
        store<i16>(base + aOffset(i, rows, 1), i < k ? <i16>(loadByte(src1 + <usize>i, signed) - zp1) : 0);
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

/** Quantises 8 floats of a row to u8 (QuantizeLinear's steps: saturate, add the zero point, clamp) minus the zero point, as i16. */
// @ts-ignore: decorator
@inline
function quantize8(p: usize, s: v128, zp: v128): v128 {
  const q = i16x8.narrow_i32x4_s(quantizeSmall4(v128.load(p), s), quantizeSmall4(v128.load(p, 16), s));
  return i16x8.sub(i16x8.min_s(i16x8.max_s(i16x8.add_sat_s(q, zp), i16x8.splat(0)), i16x8.splat(255)), zp);
}

/** One value of a row, quantised as `quantize8` does (through the same vector steps), minus the zero point. */
// @ts-ignore: decorator
@inline
function quantize1(v: f32, scale: f32, zeroPoint: i32): i32 {
  const q = quantize4(f32x4.splat(v), f32x4.splat(scale));
  const zp = i16x8.splat(<i16>zeroPoint);
  const u8 = i16x8.min_s(i16x8.max_s(i16x8.add_sat_s(i16x8.narrow_i32x4_s(q, q), zp), i16x8.splat(0)), i16x8.splat(255));
  return <i32>i16x8.extract_lane_s(u8, 0) - zeroPoint;
}

/**
 * The fused path's shortcut through `quantizeLinear` + `widenRows`: quantises
 * M×K floats to u8 and writes them minus the zero point straight into the A
 * layout. Each row has its own scale and zero point (f32 at `scales`, i32 at
 * `zeroPoints`, one per row: exactly QuantizeLinear's values for that row).
 * A scale must span its row's values (|x / scale| < 2^22), as a dynamic range
 * does. Row pairs and a last odd row have loops of their own, so neither
 * carries the other's registers.
 */
export function quantizeRowsI16(x: usize, m: i32, k: i32, scales: usize, zeroPoints: usize, out: usize): void {
  const kp = paddedK(k);
  let r = 0;
  for (; r + 2 <= m; r += 2) {
    const scale0 = load<f32>(scales + (<usize>r << 2));
    const scale1 = load<f32>(scales + (<usize>r << 2), 4);
    const zero0 = load<i32>(zeroPoints + (<usize>r << 2));
    const zero1 = load<i32>(zeroPoints + (<usize>r << 2), 4);
    const s0 = f32x4.splat(scale0);
    const s1 = f32x4.splat(scale1);
    const zp0 = i16x8.splat(<i16>zero0);
    const zp1 = i16x8.splat(<i16>zero1);
    const src0 = x + ((<usize>r * <usize>k) << 2);
    const src1 = src0 + (<usize>k << 2);
    const base = out + ((<usize>r * <usize>kp) << 1);
    let c = 0;
    for (; (c + 1) * 8 <= k; c++) {
      const at = <usize>c << 5;
      storeChunk(base, c, quantize8(src0 + at, s0, zp0), quantize8(src1 + at, s1, zp1), true);
    }
    for (let i = c << 3; i < kp; i++) {
      const inside = i < k;
      const at = <usize>i << 2;
      store<i16>(base + aOffset(i, 2, 0), inside ? <i16>quantize1(load<f32>(src0 + at), scale0, zero0) : 0);
      store<i16>(base + aOffset(i, 2, 1), inside ? <i16>quantize1(load<f32>(src1 + at), scale1, zero1) : 0);
    }
  }
  if (r == m) return;
  // A last odd row (the whole of a batch of 1): its k-pairs in order.
  const scale = load<f32>(scales + (<usize>r << 2));
  const zero = load<i32>(zeroPoints + (<usize>r << 2));
  const s = f32x4.splat(scale);
  const zp = i16x8.splat(<i16>zero);
  const src = x + ((<usize>r * <usize>k) << 2);
  const base = out + ((<usize>r * <usize>kp) << 1);
  let c = 0;
  for (; (c + 1) * 8 <= k; c++) {
    v128.store(base + (<usize>c << 4), quantize8(src + (<usize>c << 5), s, zp));
  }
  for (let i = c << 3; i < kp; i++) {
    store<i16>(base + aOffset(i, 1, 0), i < k ? <i16>quantize1(load<f32>(src + (<usize>i << 2)), scale, zero) : 0);
  }
}

/**
 * Packs the K×N byte matrix at `b` (row-major, as MatMul's B) into the panel
 * layout above as i16 at `out`, minus the zero point: one per tensor or one
 * per column. `out` must hold `packedBytes(k, n)` bytes.
 *
 * Runs at every cold load (megabytes of weights), so full panels go 16 columns
 * by two rows at a time in SIMD, reading both operands' rows in order; only
 * a last odd row, K's padding and the columns past the last full panel take
 * the scalar path.
 */
export function packColumns(
  b: usize, k: i32, n: i32, signed: bool,
  zeroPoints: usize, zeroPointPerColumn: bool, out: usize,
): void {
  const kp = paddedK(k);
  const np = paddedN(n);
  const pairs = k >> 1; // k-pairs whose two rows are both real
  let panel = 0;
  for (; panel + PANEL <= n; panel += PANEL) {
    const base = out + ((<usize>panel * <usize>kp) << 1);
    let zlo = i16x8.splat(0);
    let zhi = zlo;
    if (zeroPointPerColumn) {
      const z = v128.load(zeroPoints + <usize>panel);
      zlo = signed ? i16x8.extend_low_i8x16_s(z) : i16x8.extend_low_i8x16_u(z);
      zhi = signed ? i16x8.extend_high_i8x16_s(z) : i16x8.extend_high_i8x16_u(z);
    } else {
      zlo = i16x8.splat(<i16>loadByte(zeroPoints, signed));
      zhi = zlo;
    }
    for (let p = 0; p < pairs; p++) {
      const row = b + <usize>(p << 1) * <usize>n + <usize>panel;
      const r0 = v128.load(row);
      const r1 = v128.load(row + <usize>n);
      const a0 = i16x8.sub(signed ? i16x8.extend_low_i8x16_s(r0) : i16x8.extend_low_i8x16_u(r0), zlo);
      const a1 = i16x8.sub(signed ? i16x8.extend_high_i8x16_s(r0) : i16x8.extend_high_i8x16_u(r0), zhi);
      const b0 = i16x8.sub(signed ? i16x8.extend_low_i8x16_s(r1) : i16x8.extend_low_i8x16_u(r1), zlo);
      const b1 = i16x8.sub(signed ? i16x8.extend_high_i8x16_s(r1) : i16x8.extend_high_i8x16_u(r1), zhi);
      // Column by column, the pair's two values side by side: 16 columns × 4 bytes.
      const dst = base + (<usize>p << 6);
      v128.store(dst, v128.shuffle<i16>(a0, b0, 0, 8, 1, 9, 2, 10, 3, 11));
      v128.store(dst, v128.shuffle<i16>(a0, b0, 4, 12, 5, 13, 6, 14, 7, 15), 16);
      v128.store(dst, v128.shuffle<i16>(a1, b1, 0, 8, 1, 9, 2, 10, 3, 11), 32);
      v128.store(dst, v128.shuffle<i16>(a1, b1, 4, 12, 5, 13, 6, 14, 7, 15), 48);
    }
    for (let col = panel; col < panel + PANEL; col++) {
      packColumnRows(b, k, n, kp, np, signed, zeroPoints, zeroPointPerColumn, out, col, pairs << 1);
    }
  }
  for (let col = panel; col < np; col++) {
    packColumnRows(b, k, n, kp, np, signed, zeroPoints, zeroPointPerColumn, out, col, 0);
  }
}

/** Packs rows `from`..K's padding of one column, one value at a time. */
function packColumnRows(
  b: usize, k: i32, n: i32, kp: i32, np: i32, signed: bool,
  zeroPoints: usize, zeroPointPerColumn: bool, out: usize, col: i32, from: i32,
): void {
  const panel = col & ~(PANEL - 1);
  const pairBytes = <usize>min(PANEL, np - panel) << 2; // one k-pair across the panel
  const base = out + ((<usize>panel * <usize>kp) << 1) + (<usize>(col - panel) << 2);
  const zp = col < n ? loadByte(zeroPoints + (zeroPointPerColumn ? <usize>col : 0), signed) : 0;
  for (let i = from; i < kp; i++) {
    const dst = base + <usize>(i >> 1) * pairBytes + (<usize>(i & 1) << 1);
    const v = col < n && i < k ? loadByte(b + <usize>i * <usize>n + <usize>col, signed) - zp : 0;
    store<i16>(dst, <i16>v);
  }
}

export function packedBytes(k: i32, n: i32): usize {
  return (<usize>paddedN(n) * <usize>paddedK(k)) << 1;
}

// @ts-ignore: decorator
@inline
function dot(acc: v128, x: v128, w: v128): v128 {
  return i32x4.add(acc, i32x4.dot_i16x8_s(x, w));
}

/** Stores the first `lanes` (any count; 4 or more is all) of four i32 columns. */
// @ts-ignore: decorator
@inline
function store4(out: usize, v: v128, lanes: i32): void {
  if (lanes >= 4) {
    v128.store(out, v);
  } else if (lanes > 0) {
    store<i32>(out, i32x4.extract_lane(v, 0));
    if (lanes > 1) store<i32>(out, i32x4.extract_lane(v, 1), 4);
    if (lanes > 2) store<i32>(out, i32x4.extract_lane(v, 2), 8);
  }
}

/** Stores up to 16 columns of one row from four vectors; `cols` are the columns left in the row. */
// @ts-ignore: decorator
@inline
function store16(out: usize, s0: v128, s1: v128, s2: v128, s3: v128, cols: i32): void {
  if (cols >= 16) {
    v128.store(out, s0);
    v128.store(out, s1, 16);
    v128.store(out, s2, 32);
    v128.store(out, s3, 48);
  } else {
    store4(out, s0, cols);
    store4(out + 16, s1, cols - 4);
    store4(out + 32, s2, cols - 8);
    store4(out + 48, s3, cols - 12);
  }
}

/**
 * C[M×N] (i32, row-major, row stride `n`) = A16 · B16 over the layouts above.
 * Row pairs take 2 × 16 (or 2 × 8 in a last narrow panel) columns per pass; a
 * last odd row 1 × 16 (or 1 × 8).
 */
export function gemmI16(a16: usize, m: i32, k: i32, b16: usize, n: i32, c: usize): void {
  if (m <= 0 || n <= 0) return;
  const kp = paddedK(k);
  const np = paddedN(n);
  const stride = <usize>n << 2;
  let r = 0;
  for (; r + 2 <= m; r += 2) {
    const pair = a16 + ((<usize>r * <usize>kp) << 1);
    const pairEnd = pair + (<usize>kp << 2);
    const row = c + ((<usize>r * <usize>n) << 2);
    for (let col = 0; col < np; col += PANEL) {
      let pw = b16 + ((<usize>col * <usize>kp) << 1);
      const out = row + (<usize>col << 2);
      if (col + PANEL <= np) {
        let c00 = i32x4.splat(0), c01 = i32x4.splat(0), c02 = i32x4.splat(0), c03 = i32x4.splat(0);
        let c10 = i32x4.splat(0), c11 = i32x4.splat(0), c12 = i32x4.splat(0), c13 = i32x4.splat(0);
        for (let pa = pair; pa < pairEnd; pa += 8, pw += 64) {
          const w0 = v128.load(pw);
          const w1 = v128.load(pw, 16);
          const w2 = v128.load(pw, 32);
          const w3 = v128.load(pw, 48);
          let x = v128.load32_splat(pa);
          c00 = dot(c00, x, w0);
          c01 = dot(c01, x, w1);
          c02 = dot(c02, x, w2);
          c03 = dot(c03, x, w3);
          x = v128.load32_splat(pa, 4);
          c10 = dot(c10, x, w0);
          c11 = dot(c11, x, w1);
          c12 = dot(c12, x, w2);
          c13 = dot(c13, x, w3);
        }
        store16(out, c00, c01, c02, c03, n - col);
        store16(out + stride, c10, c11, c12, c13, n - col);
      } else {
        // A last panel of 8 columns: two k-pairs per step.
        let c00 = i32x4.splat(0), c01 = i32x4.splat(0), c10 = i32x4.splat(0), c11 = i32x4.splat(0);
        for (let pa = pair; pa < pairEnd; pa += 16, pw += 64) {
          const w0 = v128.load(pw);
          const w1 = v128.load(pw, 16);
          const w2 = v128.load(pw, 32);
          const w3 = v128.load(pw, 48);
          let x = v128.load32_splat(pa);
          c00 = dot(c00, x, w0);
          c01 = dot(c01, x, w1);
          x = v128.load32_splat(pa, 4);
          c10 = dot(c10, x, w0);
          c11 = dot(c11, x, w1);
          x = v128.load32_splat(pa, 8);
          c00 = dot(c00, x, w2);
          c01 = dot(c01, x, w3);
          x = v128.load32_splat(pa, 12);
          c10 = dot(c10, x, w2);
          c11 = dot(c11, x, w3);
        }
        store4(out, c00, n - col);
        store4(out + 16, c01, n - col - 4);
        store4(out + stride, c10, n - col);
        store4(out + stride + 16, c11, n - col - 4);
      }
    }
  }
  if (r == m) return;
  // A last odd row (the whole of a batch of 1): plain k-pairs, two per step.
  const a = a16 + ((<usize>r * <usize>kp) << 1);
  const aEnd = a + (<usize>kp << 1);
  const row = c + ((<usize>r * <usize>n) << 2);
  for (let col = 0; col < np; col += PANEL) {
    let pw = b16 + ((<usize>col * <usize>kp) << 1);
    const out = row + (<usize>col << 2);
    if (col + PANEL <= np) {
      let s0 = i32x4.splat(0), s1 = i32x4.splat(0), s2 = i32x4.splat(0), s3 = i32x4.splat(0);
      for (let pa = a; pa < aEnd; pa += 8, pw += 128) {
        let x = v128.load32_splat(pa);
        s0 = dot(s0, x, v128.load(pw));
        s1 = dot(s1, x, v128.load(pw, 16));
        s2 = dot(s2, x, v128.load(pw, 32));
        s3 = dot(s3, x, v128.load(pw, 48));
        x = v128.load32_splat(pa, 4);
        s0 = dot(s0, x, v128.load(pw, 64));
        s1 = dot(s1, x, v128.load(pw, 80));
        s2 = dot(s2, x, v128.load(pw, 96));
        s3 = dot(s3, x, v128.load(pw, 112));
      }
      store16(out, s0, s1, s2, s3, n - col);
    } else {
      let s0 = i32x4.splat(0), s1 = i32x4.splat(0);
      for (let pa = a; pa < aEnd; pa += 8, pw += 64) {
        let x = v128.load32_splat(pa);
        s0 = dot(s0, x, v128.load(pw));
        s1 = dot(s1, x, v128.load(pw, 16));
        x = v128.load32_splat(pa, 4);
        s0 = dot(s0, x, v128.load(pw, 32));
        s1 = dot(s1, x, v128.load(pw, 48));
      }
      store4(out, s0, n - col);
      store4(out + 16, s1, n - col - 4);
    }
  }
}
