/**
 * ONNX quantisation operators with exact ONNX Runtime semantics:
 *
 *   QuantizeLinear         y = saturate(nearest(x / scale) + zero_point)
 *   DequantizeLinear       y = f32(x - zero_point) * scale
 *   DynamicQuantizeLinear  scale = (max(0, max x) - min(0, min x)) / 255, or 1 when x is all zero
 *                          zero_point = nearest(clamp(0 - min(0, min x) / scale, 0, 255))
 *
 * All arithmetic is f32; `nearest` rounds half to even (f32.nearest); division
 * is a true f32 division, never a multiplication by a reciprocal. Scalar tails
 * go through the same vector code one lane at a time, so every element gets
 * bit-identical treatment.
 */

/** Quantises four floats to saturated i32 lanes ready for narrowing. */
// @ts-ignore: decorator
@inline
export function quantize4(x: v128, scale: v128): v128 {
  return i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(x, scale)));
}

/**
 * Narrows 16 quantised i32 lanes to bytes: first to i16 (saturating, which
 * keeps out-of-range values out of range), then adds the zero point with i16
 * saturation, then narrows to u8 or i8 with saturation.
 */
// @ts-ignore: decorator
@inline
function narrow16(q0: v128, q1: v128, q2: v128, q3: v128, zp: v128, signed: bool): v128 {
  const lo = i16x8.add_sat_s(i16x8.narrow_i32x4_s(q0, q1), zp);
  const hi = i16x8.add_sat_s(i16x8.narrow_i32x4_s(q2, q3), zp);
  return signed ? i8x16.narrow_i16x8_s(lo, hi) : i8x16.narrow_i16x8_u(lo, hi);
}

/** QuantizeLinear, per tensor: `n` floats at `x` to bytes at `y`. */
export function quantizeLinear(x: usize, n: i32, scale: f32, zeroPoint: i32, y: usize, signed: bool): void {
  const s = f32x4.splat(scale);
  const zp = i16x8.splat(<i16>zeroPoint);
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const p = x + (<usize>i << 2);
    const q = narrow16(
      quantize4(v128.load(p), s),
      quantize4(v128.load(p, 16), s),
      quantize4(v128.load(p, 32), s),
      quantize4(v128.load(p, 48), s),
      zp,
      signed,
    );
    v128.store(y + <usize>i, q);
  }
  for (; i < n; i++) {
    const q = quantize4(f32x4.splat(load<f32>(x + (<usize>i << 2))), s);
    const b = narrow16(q, q, q, q, zp, signed);
    store<u8>(y + <usize>i, i8x16.extract_lane_u(b, 0));
  }
}

/**
 * QuantizeLinear along an axis: `x` viewed as [outer, channels, inner], each
 * channel with its own scale (f32) and zero point (u8 or i8, per `signed`).
 */
export function quantizeLinearAxis(
  x: usize, outer: i32, channels: i32, inner: i32,
  scales: usize, zeroPoints: usize, y: usize, signed: bool,
): void {
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const offset = <usize>(o * channels + c) * <usize>inner;
      const zp = signed ? <i32>load<i8>(zeroPoints + <usize>c) : <i32>load<u8>(zeroPoints + <usize>c);
      quantizeLinear(x + (offset << 2), inner, load<f32>(scales + (<usize>c << 2)), zp, y + offset, signed);
    }
  }
}

/** Widens 4 bytes (already extended to i32 lanes) minus the zero point to floats times scale. */
// @ts-ignore: decorator
@inline
function dequantize4(q: v128, zp: v128, scale: v128): v128 {
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(q, zp)), scale);
}

/** DequantizeLinear, per tensor: `n` bytes at `x` to floats at `y`. */
export function dequantizeLinear(x: usize, n: i32, scale: f32, zeroPoint: i32, y: usize, signed: bool): void {
  const s = f32x4.splat(scale);
  const zp = i32x4.splat(zeroPoint);
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const bytes = v128.load(x + <usize>i);
    const lo = signed ? i16x8.extend_low_i8x16_s(bytes) : i16x8.extend_low_i8x16_u(bytes);
    const hi = signed ? i16x8.extend_high_i8x16_s(bytes) : i16x8.extend_high_i8x16_u(bytes);
    const p = y + (<usize>i << 2);
    v128.store(p, dequantize4(i32x4.extend_low_i16x8_s(lo), zp, s));
    v128.store(p, dequantize4(i32x4.extend_high_i16x8_s(lo), zp, s), 16);
    v128.store(p, dequantize4(i32x4.extend_low_i16x8_s(hi), zp, s), 32);
    v128.store(p, dequantize4(i32x4.extend_high_i16x8_s(hi), zp, s), 48);
  }
  for (; i < n; i++) {
    const q = signed ? <i32>load<i8>(x + <usize>i) : <i32>load<u8>(x + <usize>i);
    store<f32>(y + (<usize>i << 2), f32x4.extract_lane(dequantize4(i32x4.splat(q), zp, s), 0));
  }
}

/** DequantizeLinear along an axis; see `quantizeLinearAxis` for the layout. */
export function dequantizeLinearAxis(
  x: usize, outer: i32, channels: i32, inner: i32,
  scales: usize, zeroPoints: usize, y: usize, signed: bool,
): void {
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const offset = <usize>(o * channels + c) * <usize>inner;
      const zp = signed ? <i32>load<i8>(zeroPoints + <usize>c) : <i32>load<u8>(zeroPoints + <usize>c);
      dequantizeLinear(x + offset, inner, load<f32>(scales + (<usize>c << 2)), zp, y + (offset << 2), signed);
    }
  }
}

/** Result of the last `dynamicQuantizeLinear`; read through `dynamicScale()`/`dynamicZeroPoint()`. */
let lastScale: f32 = 0;
let lastZeroPoint: i32 = 0;

/** An f32's exponent field: all ones exactly for NaN and ±Inf. */
const EXPONENT_BITS: i32 = 0x7f800000;

export function dynamicScale(): f32 {
  return lastScale;
}

export function dynamicZeroPoint(): i32 {
  return lastZeroPoint;
}

/**
 * DynamicQuantizeLinear (uint8): `n` floats at `x` to bytes at `y`. Returns 0,
 * or 1 without writing anything when an input is NaN or ±Inf (those have no
 * quantised value; callers reject them before they get here).
 */
export function dynamicQuantizeLinear(x: usize, n: i32, y: usize): i32 {
  if (dynamicRange(x, n) != 0) return 1;
  quantizeLinear(x, n, lastScale, lastZeroPoint, y, false);
  return 0;
}

/**
 * The scale and zero point DynamicQuantizeLinear would use for `n` floats at
 * `x` (read them with `dynamicScale()`/`dynamicZeroPoint()`), without
 * quantising. Returns 1 for NaN or ±Inf.
 */
export function dynamicRange(x: usize, n: i32): i32 {
  // pmin/pmax are single instructions (min/max's NaN rules cost several), so
  // non-finite values are caught apart, by their exponent bits (all ones for
  // NaN and ±Inf) under an integer max. Two sets of running values halve the
  // dependency chains, which are what bound this loop.
  let lo0 = f32x4.splat(0), lo1 = f32x4.splat(0);
  let hi0 = f32x4.splat(0), hi1 = f32x4.splat(0);
  let exp0 = i32x4.splat(0), exp1 = i32x4.splat(0);
  const expMask = i32x4.splat(EXPONENT_BITS);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const p = x + (<usize>i << 2);
    const a = v128.load(p);
    const b = v128.load(p, 16);
    lo0 = f32x4.pmin(lo0, a);
    hi0 = f32x4.pmax(hi0, a);
    exp0 = i32x4.max_u(exp0, v128.and(a, expMask));
    lo1 = f32x4.pmin(lo1, b);
    hi1 = f32x4.pmax(hi1, b);
    exp1 = i32x4.max_u(exp1, v128.and(b, expMask));
  }
  if (i + 4 <= n) {
    const a = v128.load(x + (<usize>i << 2));
    lo0 = f32x4.pmin(lo0, a);
    hi0 = f32x4.pmax(hi0, a);
    exp0 = i32x4.max_u(exp0, v128.and(a, expMask));
    i += 4;
  }
  const lo = f32x4.pmin(lo0, lo1);
  const hi = f32x4.pmax(hi0, hi1);
  let rmin = min(min(f32x4.extract_lane(lo, 0), f32x4.extract_lane(lo, 1)), min(f32x4.extract_lane(lo, 2), f32x4.extract_lane(lo, 3)));
  let rmax = max(max(f32x4.extract_lane(hi, 0), f32x4.extract_lane(hi, 1)), max(f32x4.extract_lane(hi, 2), f32x4.extract_lane(hi, 3)));
  let nonFinite = v128.any_true(i32x4.eq(i32x4.max_u(exp0, exp1), expMask));
  for (; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    rmin = min(rmin, v);
    rmax = max(rmax, v);
    nonFinite = nonFinite || (reinterpret<i32>(v) & EXPONENT_BITS) == EXPONENT_BITS;
  }
  if (nonFinite) return 1;
  // rmin <= 0 <= rmax here: the range always includes zero. An all-zero input
  // has no range; ONNX Runtime then uses scale 1 (zero point 0, all outputs 0).
  const scale: f32 = rmax == rmin ? <f32>1 : (rmax - rmin) / <f32>255;
  let zp: f32 = <f32>0 - rmin / scale;
  zp = min(max(zp, <f32>0), <f32>255);
  const zeroPoint = <i32>nearest(zp);
  lastScale = scale;
  lastZeroPoint = zeroPoint;
  return 0;
}

/** Lane-wise minimum (`pmin`) or maximum of four vectors, reduced: lane j holds vector j's extreme. */
// @ts-ignore: decorator
@inline
function reduceAcross(a: v128, b: v128, c: v128, d: v128, lowest: bool): v128 {
  const ab0 = i32x4.shuffle(a, b, 0, 1, 4, 5);
  const ab1 = i32x4.shuffle(a, b, 2, 3, 6, 7);
  const cd0 = i32x4.shuffle(c, d, 0, 1, 4, 5);
  const cd1 = i32x4.shuffle(c, d, 2, 3, 6, 7);
  const ab = lowest ? f32x4.pmin(ab0, ab1) : f32x4.pmax(ab0, ab1); // a01 a23 b01 b23
  const cd = lowest ? f32x4.pmin(cd0, cd1) : f32x4.pmax(cd0, cd1);
  const x = i32x4.shuffle(ab, cd, 0, 2, 4, 6);
  const y = i32x4.shuffle(ab, cd, 1, 3, 5, 7);
  return lowest ? f32x4.pmin(x, y) : f32x4.pmax(x, y);
}

/** Each row's running min (lanes 0–15 bytes per row) and max (from byte 64) for `rowRanges`. */
const STAGE: usize = memory.data(128, 16);

/**
 * DynamicQuantizeLinear's scale and zero point for each of the M rows of the
 * M×K floats at `x`, each row on its own: f32 per row at `scales`, i32 per row
 * at `zeroPoints`. Returns 1 (with what it wrote meaningless) when any value
 * is NaN or ±Inf.
 *
 * Four rows at a time: each row is scanned as `dynamicRange` scans (two sets
 * of running min/max, non-finite values caught by their exponent bits), its
 * lane-wise extremes are staged, the four rows' are reduced together by
 * shuffles, and the four scales and zero points come out of one vector
 * division each, with exactly `dynamicRange`'s f32 operations lane by lane
 * (min and max are exact in any order, and the sign of a zero extreme changes
 * neither the scale nor the zero point). Rows left over (fewer than four, a
 * lone row included) go through `dynamicRange` itself.
 */
export function rowRanges(x: usize, m: i32, k: i32, scales: usize, zeroPoints: usize): i32 {
  const expMask = i32x4.splat(EXPONENT_BITS);
  const rowBytes = <usize>k << 2;
  const end8 = <usize>(k & ~7) << 2;
  let exp = i32x4.splat(0);
  let r = 0;
  for (; r + 4 <= m; r += 4) {
    for (let j = 0; j < 4; j++) {
      const p = x + <usize>(r + j) * rowBytes;
      let lo0 = f32x4.splat(0), lo1 = f32x4.splat(0);
      let hi0 = f32x4.splat(0), hi1 = f32x4.splat(0);
      let exp0 = i32x4.splat(0), exp1 = i32x4.splat(0);
      let at: usize = 0;
      for (; at < end8; at += 32) {
        const a = v128.load(p + at);
        const b = v128.load(p + at, 16);
        lo0 = f32x4.pmin(lo0, a);
        hi0 = f32x4.pmax(hi0, a);
        exp0 = i32x4.max_u(exp0, v128.and(a, expMask));
        lo1 = f32x4.pmin(lo1, b);
        hi1 = f32x4.pmax(hi1, b);
        exp1 = i32x4.max_u(exp1, v128.and(b, expMask));
      }
      for (; at < rowBytes; at += 4) {
        const a = v128.load32_splat(p + at);
        lo0 = f32x4.pmin(lo0, a);
        hi0 = f32x4.pmax(hi0, a);
        exp0 = i32x4.max_u(exp0, v128.and(a, expMask));
      }
      const stage = STAGE + (<usize>j << 4);
      v128.store(stage, f32x4.pmin(lo0, lo1));
      v128.store(stage, f32x4.pmax(hi0, hi1), 64);
      exp = i32x4.max_u(exp, i32x4.max_u(exp0, exp1));
    }
    if (v128.any_true(i32x4.eq(exp, expMask))) return 1;
    const lo = reduceAcross(v128.load(STAGE), v128.load(STAGE, 16), v128.load(STAGE, 32), v128.load(STAGE, 48), true);
    const hi = reduceAcross(v128.load(STAGE, 64), v128.load(STAGE, 80), v128.load(STAGE, 96), v128.load(STAGE, 112), false);
    // As dynamicRange, lane by lane: scale 1 for an all-zero row, else (max - min) / 255.
    const scale = v128.bitselect(f32x4.splat(1), f32x4.div(f32x4.sub(hi, lo), f32x4.splat(255)), f32x4.eq(hi, lo));
    const zp = f32x4.pmin(f32x4.pmax(f32x4.sub(f32x4.splat(0), f32x4.div(lo, scale)), f32x4.splat(0)), f32x4.splat(255));
    v128.store(scales + (<usize>r << 2), scale);
    v128.store(zeroPoints + (<usize>r << 2), i32x4.trunc_sat_f32x4_s(f32x4.nearest(zp)));
  }
  for (; r < m; r++) {
    if (dynamicRange(x + <usize>r * rowBytes, k) != 0) return 1;
    store<f32>(scales + (<usize>r << 2), lastScale);
    store<i32>(zeroPoints + (<usize>r << 2), lastZeroPoint);
  }
  return 0;
}
