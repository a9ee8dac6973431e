/**
 * Kernels for transformer encoders (BERT/MiniLM-style), over f32 activations
 * stored row-major, one sequence after another: embedding lookups, LayerNorm,
 * a stable softmax with an additive mask, GELU (erf and tanh forms), erf and
 * tanh, batched per-head matrix products, bias and masked mean pooling.
 *
 * Everything here is f32 in and out. The transcendental functions are this
 * file's own vector code (`exp4`, `erfc4`, `erf4`, `tanh4`), never the scalar
 * `Mathf` ones, so every lane costs the same:
 *
 *   exp    Cephes' expf: n = round(x·log2 e) (half to even, by adding
 *          1.5·2^23), r = x − n·ln2 (two-part ln2), a degree-6 polynomial,
 *          times 2^n built in the exponent bits (in two halves, so n = 128
 *          does not overflow early); 0 below −87.33 (no denormals), +Inf
 *          above 88.72, NaN stays NaN. ≤ 2 ulp.
 *   erf    |z| < 1: z·P(z²), P of degree 6 (least squares on Chebyshev nodes,
 *          1.3e-9 relative in f64). |z| ≥ 1: erfc(z) = exp(−z²)·Q(t)/z with
 *          t affine in 1/z over z ∈ [1, 10] (Q of degree 11 in t, 8.7e-8
 *          relative when evaluated in f32) and exp(−z²) taken as
 *          exp(−s² + (s−z)(s+z)) with s = z to 12 significant bits, so the
 *          argument carries no rounding of z². Then erf = ±(1 − erfc).
 *   tanh   |x| < 0.625: x + x³·P(x²) (degree 5); else ±(1 − 2/(exp(2|x|)+1)).
 */

const LOG2E: f32 = 1.44269504088896341;
const LN2_HI: f32 = 0.693359375;
const LN2_LO: f32 = -2.12194440e-4;
const EXP_LO: f32 = -87.33654; // below: 0 (the smallest normal is e^-87.34)
const EXP_HI: f32 = 88.72283; // above: +Inf

// @ts-ignore: decorator
@inline
function splat(v: f32): v128 {
  return f32x4.splat(v);
}

// @ts-ignore: decorator
@inline
function madd(a: v128, b: v128, c: v128): v128 {
  return f32x4.add(f32x4.mul(a, b), c);
}

/** 1.5 · 2^23: x + MAGIC rounds x half to even and holds the integer in the low mantissa bits. */
const MAGIC: f32 = 12582912.0;

// Clamps use pmin/pmax (one minps/maxps on x64; f32x4.min/max lower to a NaN-
// and-zero-correct sequence of ~7 instructions), always as pmax(x, bound) so
// that a NaN x survives: pmax(a, b) = a < b ? b : a.

/** Cephes' polynomial: e^r for |r| ≤ ln2/2. */
// @ts-ignore: decorator
@inline
function expPoly4(r: v128): v128 {
  let p = madd(splat(1.9875691500e-4), r, splat(1.3981999507e-3));
  p = madd(p, r, splat(8.3334519073e-3));
  p = madd(p, r, splat(4.1665795894e-2));
  p = madd(p, r, splat(1.6666665459e-1));
  p = madd(p, r, splat(5.0000001201e-1));
  return f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), splat(1));
}

/**
 * e^x on four lanes, any x. n = round(x·log2 e) by the magic-number addition
 * (its bits minus the magic's are n: no float-to-int conversion, which V8
 * lowers to a long saturating sequence on x64); 2^n in two halves.
 */
// @ts-ignore: decorator
@inline
export function exp4(hi: v128): v128 {
  const x = f32x4.pmin(f32x4.pmax(hi, splat(EXP_LO)), splat(EXP_HI));
  const sum = madd(x, splat(LOG2E), splat(MAGIC));
  const nf = f32x4.sub(sum, splat(MAGIC));
  const r = f32x4.sub(f32x4.sub(x, f32x4.mul(nf, splat(LN2_HI))), f32x4.mul(nf, splat(LN2_LO)));
  const p = expPoly4(r);
  // 2^n as 2^(n>>1) · 2^(n - n>>1): both halves within the normal range for n in [-126, 128].
  const n = i32x4.sub(sum, f32x4.splat(MAGIC));
  const n1 = i32x4.shr_s(n, 1);
  const n2 = i32x4.sub(n, n1);
  const s1 = i32x4.shl(i32x4.add(n1, i32x4.splat(127)), 23);
  const s2 = i32x4.shl(i32x4.add(n2, i32x4.splat(127)), 23);
  let y = f32x4.mul(f32x4.mul(p, s1), s2);
  y = v128.bitselect(splat(0), y, f32x4.lt(hi, splat(EXP_LO)));
  return v128.bitselect(splat(Infinity), y, f32x4.gt(hi, splat(EXP_HI)));
}

/**
 * e^(x + lo) for x ≤ 0 (or NaN), `lo` a small correction to x (0 for plain
 * exp): softmax's t − max t and erfc's −z². n ≤ 0, so 2^n is one exponent
 * field: (bits of x·log2 e + magic) << 23 is n << 23.
 */
// @ts-ignore: decorator
@inline
function expNonPositive4(x: v128, lo: v128): v128 {
  const c = f32x4.pmax(x, splat(EXP_LO));
  const sum = madd(c, splat(LOG2E), splat(MAGIC));
  const nf = f32x4.sub(sum, splat(MAGIC));
  const r = f32x4.add(f32x4.sub(f32x4.sub(c, f32x4.mul(nf, splat(LN2_HI))), f32x4.mul(nf, splat(LN2_LO))), lo);
  const scale = i32x4.add(i32x4.shl(sum, 23), i32x4.splat(127 << 23));
  return v128.bitselect(splat(0), f32x4.mul(expPoly4(r), scale), f32x4.lt(x, splat(EXP_LO)));
}

/** erf(a)/a for a = |z| < 1, as P(a²). */
// @ts-ignore: decorator
@inline
function erfSmallRatio4(z2: v128): v128 {
  let p = madd(splat(7.89749061886752e-5), z2, splat(-8.024124849754094e-4));
  p = madd(p, z2, splat(5.190025535322287e-3));
  p = madd(p, z2, splat(-2.6854792130374866e-2));
  p = madd(p, z2, splat(1.1283611964733348e-1));
  p = madd(p, z2, splat(-3.761262878806917e-1));
  return madd(p, z2, splat(1.1283791664921254));
}

/** erfc(a) for a ≥ 1 (a is clamped to [1, 10]; erfc(10) is below f32's normals). */
// @ts-ignore: decorator
@inline
function erfcLarge4(a: v128): v128 {
  const z = f32x4.pmin(f32x4.pmax(a, splat(1)), splat(10));
  const u = f32x4.div(splat(1), z);
  const t = madd(u, splat(2.222222328186035), splat(-1.2222222089767456));
  let q = madd(splat(1.7674230548436753e-5), t, splat(-1.6496667740284465e-5));
  q = madd(q, t, splat(-7.102410745574161e-5));
  q = madd(q, t, splat(1.7798955377656966e-4));
  q = madd(q, t, splat(-2.273023856105283e-4));
  q = madd(q, t, splat(7.990071026142687e-5));
  q = madd(q, t, splat(9.205035748891532e-4));
  q = madd(q, t, splat(-3.974017687141895e-3));
  q = madd(q, t, splat(8.96277092397213e-3));
  q = madd(q, t, splat(-4.124047700315714e-3));
  q = madd(q, t, splat(-7.65158012509346e-2));
  q = madd(q, t, splat(5.023534297943115e-1));
  // z² = s² − (s−z)(s+z) with s = z cut to 12 significant bits: s² is exact in f32.
  const s = v128.and(z, i32x4.splat(<i32>0xfffff000));
  const e = expNonPositive4(f32x4.neg(f32x4.mul(s, s)), f32x4.mul(f32x4.sub(s, z), f32x4.add(s, z)));
  return f32x4.mul(f32x4.mul(e, q), u);
}

/** erf on four lanes. */
// @ts-ignore: decorator
@inline
export function erf4(z: v128): v128 {
  const a = f32x4.abs(z);
  const small = f32x4.lt(a, splat(1));
  let y = splat(0);
  if (v128.any_true(small)) y = f32x4.mul(z, erfSmallRatio4(f32x4.mul(z, z)));
  if (!i32x4.all_true(small)) {
    const sign = v128.and(z, i32x4.splat(<i32>0x80000000));
    const large = v128.or(f32x4.sub(splat(1), erfcLarge4(a)), sign);
    y = v128.bitselect(y, large, small);
  }
  return y;
}

/** 1 + erf(z) on four lanes, as erfc(−z) where z < −1 (no cancellation). */
// @ts-ignore: decorator
@inline
function onePlusErf4(z: v128): v128 {
  const a = f32x4.abs(z);
  const small = f32x4.lt(a, splat(1));
  let y = splat(0);
  if (v128.any_true(small)) y = f32x4.add(splat(1), f32x4.mul(z, erfSmallRatio4(f32x4.mul(z, z))));
  if (!i32x4.all_true(small)) {
    const c = erfcLarge4(a);
    const large = v128.bitselect(c, f32x4.sub(splat(2), c), f32x4.lt(z, splat(0)));
    y = v128.bitselect(y, large, small);
  }
  return y;
}

/** tanh on four lanes. */
// @ts-ignore: decorator
@inline
export function tanh4(x: v128): v128 {
  const a = f32x4.abs(x);
  const small = f32x4.lt(a, splat(0.625));
  let y = splat(0);
  if (v128.any_true(small)) {
    const x2 = f32x4.mul(x, x);
    let p = madd(splat(2.1489573760252074e-3), x2, splat(-8.184633579990767e-3));
    p = madd(p, x2, splat(2.1703989529601973e-2));
    p = madd(p, x2, splat(-5.394745228494216e-2));
    p = madd(p, x2, splat(1.3333212487727902e-1));
    p = madd(p, x2, splat(-3.333333101004882e-1));
    y = madd(f32x4.mul(x, x2), p, x);
  }
  if (!i32x4.all_true(small)) {
    const e = exp4(f32x4.add(a, a));
    const t = f32x4.sub(splat(1), f32x4.div(splat(2), f32x4.add(e, splat(1))));
    const large = v128.or(t, v128.and(x, i32x4.splat(<i32>0x80000000)));
    y = v128.bitselect(y, large, small);
  }
  return y;
}

const SQRT1_2: f32 = 0.70710678118654752;
/** √(2/π), ONNX Gelu approximate="tanh". */
const GELU_TANH_C: f32 = 0.79788456080286536;
const GELU_TANH_K: f32 = 0.044715;

/**
 * GELU's tanh approximation on four lanes: 0.5·x·(1 + tanh(u)), u = √(2/π)·(x +
 * 0.044715·x³), computed as x / (1 + e^(−2u)) (the same value, no cancellation).
 * (The erf form, 0.5·x·(1 + erf(x·(1/√2))), is written out in `gelu`.)
 */
// @ts-ignore: decorator
@inline
function geluTanh4(x: v128): v128 {
  const x3 = f32x4.mul(f32x4.mul(x, x), x);
  const u = f32x4.mul(splat(GELU_TANH_C), madd(x3, splat(GELU_TANH_K), x));
  return f32x4.div(x, f32x4.add(splat(1), exp4(f32x4.mul(u, splat(-2)))));
}

/** Loads `count` < 4 floats into the low lanes (zeros above). */
// @ts-ignore: decorator
@inline
function loadPartial(p: usize, count: i32): v128 {
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (count > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (count > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

// @ts-ignore: decorator
@inline
function storePartial(p: usize, v: v128, count: i32): void {
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (count > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (count > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

// @ts-ignore: decorator
@inline
function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

// @ts-ignore: decorator
@inline
function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

// The elementwise exports: two independent vectors per step (each is a long
// Horner dependency chain, so two overlap), then the last < 8 floats vector by
// vector, the final one partial. Written out per function so each inlines one
// transcendental (a shared helper with an op code left every branch in).

/** y[i] = gelu(x[i]) (mode 0 erf, 1 tanh) for `count` floats; `y` may be `x`. */
export function gelu(x: usize, count: i32, mode: i32, y: usize): void {
  if (mode != 0) {
    geluTanh(x, count, y);
    return;
  }
  let i = 0;
  for (; i + 8 <= count; i += 8) {
    const at = <usize>i << 2;
    const a = onePlusErf4(f32x4.mul(v128.load(x + at), splat(SQRT1_2)));
    const b = onePlusErf4(f32x4.mul(v128.load(x + at, 16), splat(SQRT1_2)));
    v128.store(y + at, f32x4.mul(f32x4.mul(v128.load(x + at), splat(0.5)), a));
    v128.store(y + at, f32x4.mul(f32x4.mul(v128.load(x + at, 16), splat(0.5)), b), 16);
  }
  for (; i < count; i += 4) {
    const at = <usize>i << 2;
    const left = count - i;
    const v = left >= 4 ? v128.load(x + at) : loadPartial(x + at, left);
    const r = f32x4.mul(f32x4.mul(v, splat(0.5)), onePlusErf4(f32x4.mul(v, splat(SQRT1_2))));
    if (left >= 4) v128.store(y + at, r);
    else storePartial(y + at, r, left);
  }
}

function geluTanh(x: usize, count: i32, y: usize): void {
  let i = 0;
  for (; i + 8 <= count; i += 8) {
    const at = <usize>i << 2;
    const a = geluTanh4(v128.load(x + at));
    const b = geluTanh4(v128.load(x + at, 16));
    v128.store(y + at, a);
    v128.store(y + at, b, 16);
  }
  for (; i < count; i += 4) {
    const at = <usize>i << 2;
    const left = count - i;
    const r = geluTanh4(left >= 4 ? v128.load(x + at) : loadPartial(x + at, left));
    if (left >= 4) v128.store(y + at, r);
    else storePartial(y + at, r, left);
  }
}

/** y[i] = erf(x[i]); `y` may be `x`. */
export function erf(x: usize, count: i32, y: usize): void {
  let i = 0;
  for (; i + 8 <= count; i += 8) {
    const at = <usize>i << 2;
    const a = erf4(v128.load(x + at));
    const b = erf4(v128.load(x + at, 16));
    v128.store(y + at, a);
    v128.store(y + at, b, 16);
  }
  for (; i < count; i += 4) {
    const at = <usize>i << 2;
    const left = count - i;
    const r = erf4(left >= 4 ? v128.load(x + at) : loadPartial(x + at, left));
    if (left >= 4) v128.store(y + at, r);
    else storePartial(y + at, r, left);
  }
}

/** y[i] = tanh(x[i]); `y` may be `x`. */
export function tanhRows(x: usize, count: i32, y: usize): void {
  let i = 0;
  for (; i + 8 <= count; i += 8) {
    const at = <usize>i << 2;
    const a = tanh4(v128.load(x + at));
    const b = tanh4(v128.load(x + at, 16));
    v128.store(y + at, a);
    v128.store(y + at, b, 16);
  }
  for (; i < count; i += 4) {
    const at = <usize>i << 2;
    const left = count - i;
    const r = tanh4(left >= 4 ? v128.load(x + at) : loadPartial(x + at, left));
    if (left >= 4) v128.store(y + at, r);
    else storePartial(y + at, r, left);
  }
}

/**
 * Embedding lookup: y[c, :] = table[ids[c], :] for c < count, the table
 * `rows` × `width` f32. Every id is checked before anything is read or
 * written: returns 0, or 1 + the index of the first id outside [0, rows).
 */
export function gatherRows(table: usize, rows: i32, width: i32, ids: usize, count: i32, y: usize): i32 {
  for (let c = 0; c < count; c++) {
    const id = load<i32>(ids + (<usize>c << 2));
    if (id < 0 || id >= rows) return c + 1;
  }
  const bytes = <usize>width << 2;
  for (let c = 0; c < count; c++) {
    const id = load<i32>(ids + (<usize>c << 2));
    memory.copy(y + <usize>c * bytes, table + <usize>id * bytes, bytes);
  }
  return 0;
}

/**
 * Embedding lookup from an int8 table with one f32 scale per row:
 * y[c, j] = f32(table[ids[c], j]) · scales[ids[c]] (exact but for the one
 * rounding of the product). Ids checked as `gatherRows` does.
 */
export function gatherRowsI8(
  table: usize, scales: usize, rows: i32, width: i32, ids: usize, count: i32, y: usize,
): i32 {
  for (let c = 0; c < count; c++) {
    const id = load<i32>(ids + (<usize>c << 2));
    if (id < 0 || id >= rows) return c + 1;
  }
  for (let c = 0; c < count; c++) {
    const id = load<i32>(ids + (<usize>c << 2));
    const src = table + <usize>id * <usize>width;
    const dst = y + ((<usize>c * <usize>width) << 2);
    const scale = load<f32>(scales + (<usize>id << 2));
    const s = splat(scale);
    let j = 0;
    for (; j + 8 <= width; j += 8) {
      const w = v128.load8x8_s(src + <usize>j);
      const at = dst + (<usize>j << 2);
      v128.store(at, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(w)), s));
      v128.store(at, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(w)), s), 16);
    }
    for (; j < width; j++) store<f32>(dst + (<usize>j << 2), <f32>load<i8>(src + <usize>j) * scale);
  }
  return 0;
}

/**
 * LayerNormalization (opset 17, axis −1) over `rows` rows of `width`:
 * mean (of x − x[0], so a common offset never enters the sums), then the
 * variance as the mean of squared deviations from it (two passes: no
 * cancellation), y = (x − mean) · (1/√(var + ε)) · gamma + beta.
 * Sums run in f32 over four lanes. `beta` may be 0 (no bias); `y` may be `x`.
 */
export function layerNorm(x: usize, rows: i32, width: i32, gamma: usize, beta: usize, epsilon: f32, y: usize): void {
  const rowBytes = <usize>width << 2;
  const tail = width & 3;
  const body = width - tail;
  for (let r = 0; r < rows; r++) {
    const xs = x + <usize>r * rowBytes;
    const ys = y + <usize>r * rowBytes;
    // The mean of x − x[0] (shifted data): a common offset never enters the sums.
    const shift = load<f32>(xs);
    const sv = splat(shift);
    let acc = splat(0);
    for (let j = 0; j < body; j += 4) acc = f32x4.add(acc, f32x4.sub(v128.load(xs + (<usize>j << 2)), sv));
    for (let j = body; j < width; j++) acc = f32x4.replace_lane(acc, 0, f32x4.extract_lane(acc, 0) + (load<f32>(xs + (<usize>j << 2)) - shift));
    const mean = shift + hsum(acc) / <f32>width;
    const m = splat(mean);
    acc = splat(0);
    for (let j = 0; j < body; j += 4) {
      const d = f32x4.sub(v128.load(xs + (<usize>j << 2)), m);
      acc = madd(d, d, acc);
    }
    if (tail) {
      // Lanes above the tail hold 0 − mean: mask them out.
      const d = f32x4.sub(loadPartial(xs + (<usize>body << 2), tail), m);
      const keep = i32x4.lt_s(i32x4(0, 1, 2, 3), i32x4.splat(tail));
      acc = madd(v128.and(d, keep), v128.and(d, keep), acc);
    }
    const inv = <f32>1 / Mathf.sqrt(hsum(acc) / <f32>width + epsilon);
    const iv = splat(inv);
    let j = 0;
    for (; j < body; j += 4) {
      const at = <usize>j << 2;
      let v = f32x4.mul(f32x4.mul(f32x4.sub(v128.load(xs + at), m), iv), v128.load(gamma + at));
      if (beta) v = f32x4.add(v, v128.load(beta + at));
      v128.store(ys + at, v);
    }
    for (; j < width; j++) {
      const at = <usize>j << 2;
      let v = (load<f32>(xs + at) - mean) * inv * load<f32>(gamma + at);
      if (beta) v += load<f32>(beta + at);
      store<f32>(ys + at, v);
    }
  }
}

/**
 * Softmax over the last axis of `rows` × `width`, after adding the mask row
 * `mask + r·maskStride` (f32 additive bias, `maskStride` in floats: 0 = one
 * row shared by all rows, `width` = one per row) when `mask` is not 0.
 * Stable: e^(t − max t) with max over the masked row, then · (1/Σ). A row
 * whose every position is −Inf gives zeros (ONNX would give NaN); a NaN in a
 * row gives NaNs. `y` may be `x`.
 */
export function softmaxRows(x: usize, rows: i32, width: i32, mask: usize, maskStride: i32, y: usize): void {
  const rowBytes = <usize>width << 2;
  const tail = width & 3;
  const body = width - tail;
  for (let r = 0; r < rows; r++) {
    const xs = x + <usize>r * rowBytes;
    const ys = y + <usize>r * rowBytes;
    const ms = mask + ((<usize>r * <usize>maskStride) << 2);
    let mx = splat(-Infinity);
    for (let j = 0; j < body; j += 4) {
      const at = <usize>j << 2;
      let t = v128.load(xs + at);
      if (mask) t = f32x4.add(t, v128.load(ms + at));
      mx = f32x4.pmax(mx, t);
    }
    let top = hmax(mx);
    for (let j = body; j < width; j++) {
      const at = <usize>j << 2;
      let t = load<f32>(xs + at);
      if (mask) t += load<f32>(ms + at);
      top = max(top, t);
    }
    if (top == -Infinity) {
      memory.fill(ys, 0, rowBytes);
      continue;
    }
    const tv = splat(top);
    let sum = splat(0);
    let sum2 = splat(0);
    let j = 0;
    for (; j + 8 <= body; j += 8) {
      const at = <usize>j << 2;
      let t = v128.load(xs + at);
      let t2 = v128.load(xs + at, 16);
      if (mask) {
        t = f32x4.add(t, v128.load(ms + at));
        t2 = f32x4.add(t2, v128.load(ms + at, 16));
      }
      const e = expNonPositive4(f32x4.sub(t, tv), splat(0));
      const e2 = expNonPositive4(f32x4.sub(t2, tv), splat(0));
      sum = f32x4.add(sum, e);
      sum2 = f32x4.add(sum2, e2);
      v128.store(ys + at, e);
      v128.store(ys + at, e2, 16);
    }
    sum = f32x4.add(sum, sum2);
    for (; j < body; j += 4) {
      const at = <usize>j << 2;
      let t = v128.load(xs + at);
      if (mask) t = f32x4.add(t, v128.load(ms + at));
      const e = expNonPositive4(f32x4.sub(t, tv), splat(0));
      sum = f32x4.add(sum, e);
      v128.store(ys + at, e);
    }
    if (tail) {
      const at = <usize>body << 2;
      let t = loadPartial(xs + at, tail);
      if (mask) t = f32x4.add(t, loadPartial(ms + at, tail));
      const keep = i32x4.lt_s(i32x4(0, 1, 2, 3), i32x4.splat(tail));
      const e = v128.and(expNonPositive4(f32x4.sub(t, tv), splat(0)), keep);
      sum = f32x4.add(sum, e);
      storePartial(ys + at, e, tail);
    }
    const inv = splat(<f32>1 / hsum(sum));
    for (j = 0; j < body; j += 4) {
      const at = <usize>j << 2;
      v128.store(ys + at, f32x4.mul(v128.load(ys + at), inv));
    }
    if (tail) {
      const at = <usize>body << 2;
      storePartial(ys + at, f32x4.mul(loadPartial(ys + at, tail), inv), tail);
    }
  }
}

/** y[r, :] = x[r, :] + bias for `rows` rows of `width`; `y` may be `x`. */
export function addBias(x: usize, rows: i32, width: i32, bias: usize, y: usize): void {
  const rowBytes = <usize>width << 2;
  for (let r = 0; r < rows; r++) {
    const xs = x + <usize>r * rowBytes;
    const ys = y + <usize>r * rowBytes;
    let j = 0;
    for (; j + 4 <= width; j += 4) {
      const at = <usize>j << 2;
      v128.store(ys + at, f32x4.add(v128.load(xs + at), v128.load(bias + at)));
    }
    for (; j < width; j++) {
      const at = <usize>j << 2;
      store<f32>(ys + at, load<f32>(xs + at) + load<f32>(bias + at));
    }
  }
}

/**
 * Masked mean over the sequence: y[b, :] = Σ_s mask[b, s]·x[b, s, :] /
 * max(Σ_s mask[b, s], 1e-9) (sentence-transformers' pooling), or the plain
 * mean over `seq` when `mask` is 0. Sums in f32, position by position.
 */
export function meanPoolMasked(x: usize, batch: i32, seq: i32, width: i32, mask: usize, y: usize): void {
  const rowBytes = <usize>width << 2;
  for (let b = 0; b < batch; b++) {
    const ys = y + <usize>b * rowBytes;
    memory.fill(ys, 0, rowBytes);
    let count: f32 = 0;
    for (let s = 0; s < seq; s++) {
      const w: f32 = mask ? load<f32>(mask + ((<usize>b * <usize>seq + <usize>s) << 2)) : 1;
      if (w == 0) continue;
      count += w;
      const xs = x + (<usize>b * <usize>seq + <usize>s) * rowBytes;
      const wv = splat(w);
      let j = 0;
      for (; j + 4 <= width; j += 4) {
        const at = <usize>j << 2;
        v128.store(ys + at, madd(v128.load(xs + at), wv, v128.load(ys + at)));
      }
      for (; j < width; j++) {
        const at = <usize>j << 2;
        store<f32>(ys + at, load<f32>(xs + at) * w + load<f32>(ys + at));
      }
    }
    const d = max(count, <f32>1e-9);
    const dv = splat(d);
    let j = 0;
    for (; j + 4 <= width; j += 4) {
      const at = <usize>j << 2;
      v128.store(ys + at, f32x4.div(v128.load(ys + at), dv));
    }
    for (; j < width; j++) {
      const at = <usize>j << 2;
      store<f32>(ys + at, load<f32>(ys + at) / d);
    }
  }
}

// ---- batched matrix products ----

/**
 * C (m×n, row stride ldc floats) = scale · A (m×k, row stride lda) · B (k×n,
 * row stride ldb). Register blocks of 4 rows × 8 columns (8 accumulators, 2
 * B vectors and 4 A splats per k step), then 4 and single columns, then the
 * last rows one by one. Each output is Σ_p a·b in increasing p, in f32.
 */
function matMulNN(a: usize, lda: i32, b: usize, ldb: i32, m: i32, k: i32, n: i32, scale: f32, c: usize, ldc: i32): void {
  const sa = <usize>lda << 2;
  const sb = <usize>ldb << 2;
  const sc = <usize>ldc << 2;
  const sv = splat(scale);
  let i = 0;
  for (; i + 4 <= m; i += 4) {
    const a0 = a + <usize>i * sa;
    const c0 = c + <usize>i * sc;
    let j = 0;
    for (; j + 8 <= n; j += 8) {
      let c00 = splat(0), c01 = splat(0), c10 = splat(0), c11 = splat(0);
      let c20 = splat(0), c21 = splat(0), c30 = splat(0), c31 = splat(0);
      let bp = b + (<usize>j << 2);
      let ap = a0;
      for (let p = 0; p < k; p++) {
        const b0 = v128.load(bp);
        const b1 = v128.load(bp, 16);
        let s = v128.load32_splat(ap);
        c00 = madd(s, b0, c00);
        c01 = madd(s, b1, c01);
        s = v128.load32_splat(ap + sa);
        c10 = madd(s, b0, c10);
        c11 = madd(s, b1, c11);
        s = v128.load32_splat(ap + 2 * sa);
        c20 = madd(s, b0, c20);
        c21 = madd(s, b1, c21);
        s = v128.load32_splat(ap + 3 * sa);
        c30 = madd(s, b0, c30);
        c31 = madd(s, b1, c31);
        bp += sb;
        ap += 4;
      }
      const at = c0 + (<usize>j << 2);
      v128.store(at, f32x4.mul(c00, sv));
      v128.store(at, f32x4.mul(c01, sv), 16);
      v128.store(at + sc, f32x4.mul(c10, sv));
      v128.store(at + sc, f32x4.mul(c11, sv), 16);
      v128.store(at + 2 * sc, f32x4.mul(c20, sv));
      v128.store(at + 2 * sc, f32x4.mul(c21, sv), 16);
      v128.store(at + 3 * sc, f32x4.mul(c30, sv));
      v128.store(at + 3 * sc, f32x4.mul(c31, sv), 16);
    }
    for (; j + 4 <= n; j += 4) {
      let c00 = splat(0), c10 = splat(0), c20 = splat(0), c30 = splat(0);
      let bp = b + (<usize>j << 2);
      let ap = a0;
      for (let p = 0; p < k; p++) {
        const b0 = v128.load(bp);
        c00 = madd(v128.load32_splat(ap), b0, c00);
        c10 = madd(v128.load32_splat(ap + sa), b0, c10);
        c20 = madd(v128.load32_splat(ap + 2 * sa), b0, c20);
        c30 = madd(v128.load32_splat(ap + 3 * sa), b0, c30);
        bp += sb;
        ap += 4;
      }
      const at = c0 + (<usize>j << 2);
      v128.store(at, f32x4.mul(c00, sv));
      v128.store(at + sc, f32x4.mul(c10, sv));
      v128.store(at + 2 * sc, f32x4.mul(c20, sv));
      v128.store(at + 3 * sc, f32x4.mul(c30, sv));
    }
    for (; j < n; j++) {
      // One column: four rows' sums in the lanes of one vector.
      let acc = splat(0);
      let bp = b + (<usize>j << 2);
      let ap = a0;
      for (let p = 0; p < k; p++) {
        const av = f32x4(load<f32>(ap), load<f32>(ap + sa), load<f32>(ap + 2 * sa), load<f32>(ap + 3 * sa));
        acc = madd(av, v128.load32_splat(bp), acc);
        bp += sb;
        ap += 4;
      }
      acc = f32x4.mul(acc, sv);
      const at = c0 + (<usize>j << 2);
      store<f32>(at, f32x4.extract_lane(acc, 0));
      store<f32>(at + sc, f32x4.extract_lane(acc, 1));
      store<f32>(at + 2 * sc, f32x4.extract_lane(acc, 2));
      store<f32>(at + 3 * sc, f32x4.extract_lane(acc, 3));
    }
  }
  for (; i < m; i++) {
    const ar = a + <usize>i * sa;
    const cr = c + <usize>i * sc;
    let j = 0;
    for (; j + 8 <= n; j += 8) {
      let c0 = splat(0), c1 = splat(0);
      let bp = b + (<usize>j << 2);
      for (let p = 0; p < k; p++) {
        const s = v128.load32_splat(ar + (<usize>p << 2));
        c0 = madd(s, v128.load(bp), c0);
        c1 = madd(s, v128.load(bp, 16), c1);
        bp += sb;
      }
      v128.store(cr + (<usize>j << 2), f32x4.mul(c0, sv));
      v128.store(cr + (<usize>j << 2), f32x4.mul(c1, sv), 16);
    }
    for (; j + 4 <= n; j += 4) {
      let c0 = splat(0);
      let bp = b + (<usize>j << 2);
      for (let p = 0; p < k; p++) {
        c0 = madd(v128.load32_splat(ar + (<usize>p << 2)), v128.load(bp), c0);
        bp += sb;
      }
      v128.store(cr + (<usize>j << 2), f32x4.mul(c0, sv));
    }
    for (; j < n; j++) {
      let acc: f32 = 0;
      let bp = b + (<usize>j << 2);
      for (let p = 0; p < k; p++) {
        acc += load<f32>(ar + (<usize>p << 2)) * load<f32>(bp);
        bp += sb;
      }
      store<f32>(cr + (<usize>j << 2), acc * scale);
    }
  }
}

/** [Σ a, Σ b, Σ c, Σ d] of four vectors' lanes. */
// @ts-ignore: decorator
@inline
function reduce4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 4, 2, 6), v128.shuffle<f32>(a, b, 1, 5, 3, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 4, 2, 6), v128.shuffle<f32>(c, d, 1, 5, 3, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 1, 4, 5), v128.shuffle<f32>(ab, cd, 2, 3, 6, 7));
}

/** k-tail terms Σ_{p ≥ k4} a[p]·b_q[p] for four B rows q, as one vector. */
// @ts-ignore: decorator
@inline
function tailDots(ar: usize, b0: usize, sb: usize, k4: i32, k: i32): v128 {
  let acc = splat(0);
  for (let p = k4; p < k; p++) {
    const at = <usize>p << 2;
    const bv = f32x4(load<f32>(b0 + at), load<f32>(b0 + sb + at), load<f32>(b0 + 2 * sb + at), load<f32>(b0 + 3 * sb + at));
    acc = madd(v128.load32_splat(ar + at), bv, acc);
  }
  return acc;
}

/**
 * C (m×n) = scale · A (m×k) · Bᵀ with B stored n×k (row stride ldb): every
 * output a dot product of two contiguous rows. Register blocks of 2 A rows ×
 * 4 B rows over 4 k at a time (8 accumulators, 6 loads), reduced across lanes
 * at the end; k's last k mod 4 terms are added after that reduction.
 */
function matMulNT(a: usize, lda: i32, b: usize, ldb: i32, m: i32, k: i32, n: i32, scale: f32, c: usize, ldc: i32): void {
  const sa = <usize>lda << 2;
  const sb = <usize>ldb << 2;
  const sc = <usize>ldc << 2;
  const sv = splat(scale);
  const k4 = k & ~3;
  let i = 0;
  for (; i + 2 <= m; i += 2) {
    const a0 = a + <usize>i * sa;
    const a1 = a0 + sa;
    const c0 = c + <usize>i * sc;
    let j = 0;
    for (; j + 4 <= n; j += 4) {
      const b0 = b + <usize>j * sb;
      let x0 = splat(0), x1 = splat(0), x2 = splat(0), x3 = splat(0);
      let y0 = splat(0), y1 = splat(0), y2 = splat(0), y3 = splat(0);
      for (let p = 0; p < k4; p += 4) {
        const at = <usize>p << 2;
        const u = v128.load(a0 + at);
        const v = v128.load(a1 + at);
        const w0 = v128.load(b0 + at);
        const w1 = v128.load(b0 + sb + at);
        const w2 = v128.load(b0 + 2 * sb + at);
        const w3 = v128.load(b0 + 3 * sb + at);
        x0 = madd(u, w0, x0);
        x1 = madd(u, w1, x1);
        x2 = madd(u, w2, x2);
        x3 = madd(u, w3, x3);
        y0 = madd(v, w0, y0);
        y1 = madd(v, w1, y1);
        y2 = madd(v, w2, y2);
        y3 = madd(v, w3, y3);
      }
      let r0 = reduce4(x0, x1, x2, x3);
      let r1 = reduce4(y0, y1, y2, y3);
      if (k4 < k) {
        r0 = f32x4.add(r0, tailDots(a0, b0, sb, k4, k));
        r1 = f32x4.add(r1, tailDots(a1, b0, sb, k4, k));
      }
      v128.store(c0 + (<usize>j << 2), f32x4.mul(r0, sv));
      v128.store(c0 + sc + (<usize>j << 2), f32x4.mul(r1, sv));
    }
    for (; j < n; j++) {
      const br = b + <usize>j * sb;
      let x = splat(0), y = splat(0);
      for (let p = 0; p < k4; p += 4) {
        const at = <usize>p << 2;
        const w = v128.load(br + at);
        x = madd(v128.load(a0 + at), w, x);
        y = madd(v128.load(a1 + at), w, y);
      }
      let s0 = hsum(x), s1 = hsum(y);
      for (let p = k4; p < k; p++) {
        const at = <usize>p << 2;
        s0 += load<f32>(a0 + at) * load<f32>(br + at);
        s1 += load<f32>(a1 + at) * load<f32>(br + at);
      }
      store<f32>(c0 + (<usize>j << 2), s0 * scale);
      store<f32>(c0 + sc + (<usize>j << 2), s1 * scale);
    }
  }
  if (i < m) {
    const a0 = a + <usize>i * sa;
    const c0 = c + <usize>i * sc;
    let j = 0;
    for (; j + 4 <= n; j += 4) {
      const b0 = b + <usize>j * sb;
      let x0 = splat(0), x1 = splat(0), x2 = splat(0), x3 = splat(0);
      for (let p = 0; p < k4; p += 4) {
        const at = <usize>p << 2;
        const u = v128.load(a0 + at);
        x0 = madd(u, v128.load(b0 + at), x0);
        x1 = madd(u, v128.load(b0 + sb + at), x1);
        x2 = madd(u, v128.load(b0 + 2 * sb + at), x2);
        x3 = madd(u, v128.load(b0 + 3 * sb + at), x3);
      }
      let r0 = reduce4(x0, x1, x2, x3);
      if (k4 < k) r0 = f32x4.add(r0, tailDots(a0, b0, sb, k4, k));
      v128.store(c0 + (<usize>j << 2), f32x4.mul(r0, sv));
    }
    for (; j < n; j++) {
      const br = b + <usize>j * sb;
      let x = splat(0);
      for (let p = 0; p < k4; p += 4) {
        const at = <usize>p << 2;
        x = madd(v128.load(a0 + at), v128.load(br + at), x);
      }
      let s0 = hsum(x);
      for (let p = k4; p < k; p++) s0 += load<f32>(a0 + (<usize>p << 2)) * load<f32>(br + (<usize>p << 2));
      store<f32>(c0 + (<usize>j << 2), s0 * scale);
    }
  }
}

/**
 * The general form: `batch` products, operand i at a + i·strideA (floats),
 * b + i·strideB, y + i·strideY, rows lda / ldb / ldy floats apart. With
 * lda = d_model and strideA = head_dim, per-head Q·Kᵀ reads Q and K straight
 * from a [seq × d_model] projection, no head split copy. strideB 0 shares B.
 */
export function batchedMatMulStrided(
  a: usize, lda: i32, strideA: i32,
  b: usize, ldb: i32, strideB: i32,
  batch: i32, m: i32, k: i32, n: i32, transB: bool, scale: f32,
  y: usize, ldy: i32, strideY: i32,
): void {
  for (let i = 0; i < batch; i++) {
    const ai = a + ((<usize>i * <usize>strideA) << 2);
    const bi = b + ((<usize>i * <usize>strideB) << 2);
    const yi = y + ((<usize>i * <usize>strideY) << 2);
    if (transB) matMulNT(ai, lda, bi, ldb, m, k, n, scale, yi, ldy);
    else matMulNN(ai, lda, bi, ldb, m, k, n, scale, yi, ldy);
  }
}

/**
 * y[i] = scale · a[i] · b[i] for i < batch, fp32: a[i] m×k, b[i] k×n (or n×k
 * when `transB`), y[i] m×n, each contiguous and one after another.
 */
export function batchedMatMul(
  a: usize, b: usize, batch: i32, m: i32, k: i32, n: i32, transB: bool, scale: f32, y: usize,
): void {
  batchedMatMulStrided(a, k, m * k, b, transB ? k : n, k * n, batch, m, k, n, transB, scale, y, n, m * n);
}
