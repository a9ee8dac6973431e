/**
 * Convolutions over f32 NHWC activations (one sample after another).
 *
 * `convInt8` (group 1) runs through the int8 GEMM, per sample:
 *   DynamicQuantizeLinear over the sample's h·w·c values (so a sample's answer
 *   never depends on the other samples of a batch) → im2col straight into
 *   `gemmI16`'s A layout as i16 (x_q − zero_point; padding taps are 0, the
 *   real zero) → `gemmI16` against weights packed by `packColumns` → y =
 *   act(f32(acc) · (x_scale · w_scale[co]) + bias[co]), the f32 ops in
 *   `dequantizeAccumulators`' order, then the activation.
 * Weights are K×N int8, symmetric per output channel, K index
 * (ky·kw + kx)·c + ci, N = cout. Output pixels go through the GEMM in tiles
 * of TILE rows, so the scratch (and the working set) stays small whatever
 * the image size; a 1×1, stride-1, unpadded conv is a plain GEMM over the
 * NHWC pixels and skips im2col (its rows are quantised straight into A).
 *
 * `depthwiseConv` (group = c, multiplier 1) is f32 with SIMD over channels:
 * y = act(Σ_taps x·w + bias), taps in (ky, kx) order, padded taps skipped;
 * the activation runs over each finished output row.
 */
import { dynamicRange, dynamicScale, dynamicZeroPoint } from "./quantize";
import { gemmI16, paddedK, quantizeRowsI16 } from "./gemm";
import { activate, activate1, activate4 } from "./elementwise";

/** Output pixels per GEMM call (even, so row pairs never straddle tiles). */
const TILE: i32 = 64;

// @ts-ignore: decorator
@inline
function align16(bytes: usize): usize {
  return (bytes + 15) & ~15;
}

// @ts-ignore: decorator
@inline
function tileRows(outH: i32, outW: i32): i32 {
  return min(TILE, outH * outW);
}

/** Scratch bytes `convInt8` needs (for one sample; reused sample after sample). */
export function convInt8ScratchBytes(h: i32, w: i32, c: i32, kh: i32, kw: i32, outH: i32, outW: i32, cout: i32): usize {
  const kp = <usize>paddedK(kh * kw * c);
  const t = <usize>tileRows(outH, outW);
  let sample = align16(<usize>paddedK(h * w * c) << 1);
  let table: usize = 0;
  if (kp <= <usize>GATHER_MAX_KP) {
    // The zero-padded quantised image (pads of at most k − 1 on each side) and the gather table.
    sample = max(sample, align16(<usize>(h + 2 * (kh - 1)) * <usize>(w + 2 * (kw - 1)) * <usize>c << 1));
    table = gatherTableBytes(<i32>kp, kh);
  }
  return sample + SLACK // the quantised sample (copies read past it)
    + table
    + align16(kp << 2) + SLACK // two im2col rows before interleaving
    + align16((t * kp) << 1) + SLACK // A tile
    + align16((t * <usize>cout) << 2) // accumulators
    + align16(<usize>cout << 2) // x_scale · w_scale per output channel
    + (align16(t << 2) << 1); // the sample's scale and zero point, once per row of a tile
}

/**
 * Bytes a row write may run past its end: `copyRun`/`zeroRun` move 16 bytes
 * at a time, and im2col writes each row front to back, so a run's overhang is
 * overwritten by the next run; only a row's last run leaves it behind.
 */
const SLACK: usize = 16;

/**
 * Copies `bytes` (even) from `src` to `dst` 16 at a time, writing (and
 * reading) up to 14 bytes past the end. Tiny runs (c·2 bytes per tap) are
 * what im2col moves, where `memory.copy`'s call costs more than the copy.
 */
// @ts-ignore: decorator
@inline
function copyRun(dst: usize, src: usize, bytes: usize): void {
  for (let i: usize = 0; i < bytes; i += 16) v128.store(dst + i, v128.load(src + i));
}

/** Zeroes `bytes` at `dst` 16 at a time, with the same overhang. */
// @ts-ignore: decorator
@inline
function zeroRun(dst: usize, bytes: usize): void {
  const zero = i32x4.splat(0);
  for (let i: usize = 0; i < bytes; i += 16) v128.store(dst + i, zero);
}

/**
 * Writes output pixel (oy, ox)'s receptive field (K = kh·kw·c values of `xq`,
 * zeros for padding taps and up to Kp) as plain i16 at `dst`, front to back
 * (up to SLACK bytes past Kp are clobbered).
 */
// @ts-ignore: decorator
@inline
function im2colRow(
  xq: usize, h: i32, w: i32, c: i32, kh: i32, kw: i32,
  strideH: i32, strideW: i32, padTop: i32, padLeft: i32, oy: i32, ox: i32, dst: usize,
): void {
  const iy0 = oy * strideH - padTop;
  const ix0 = ox * strideW - padLeft;
  const kx0 = max(0, -ix0);
  const kx1 = min(kw, w - ix0);
  const tap = <usize>c << 1;
  const rowBytes = <usize>kw * tap;
  for (let ky = 0; ky < kh; ky++) {
    const d = dst + <usize>ky * rowBytes;
    const iy = iy0 + ky;
    if (iy < 0 || iy >= h || kx1 <= kx0) {
      zeroRun(d, rowBytes);
      continue;
    }
    if (kx0 > 0) zeroRun(d, <usize>kx0 * tap);
    copyRun(d + <usize>kx0 * tap, xq + <usize>(iy * w + ix0 + kx0) * tap, <usize>(kx1 - kx0) * tap);
    if (kx1 < kw) zeroRun(d + <usize>kx1 * tap, <usize>(kw - kx1) * tap);
  }
  const k = kh * kw * c;
  const kp = paddedK(k);
  if (kp > k) zeroRun(dst + (<usize>k << 1), <usize>(kp - k) << 1);
}

/**
 * The gather path (small images, thin K: the RGB or grey stem, small-c
 * layers): the sample is quantised into a zero-padded NHWC image, so every
 * output pixel's receptive field is kh runs of kw·c contiguous values at a
 * fixed offset from the window's top-left corner, whatever the pixel. A
 * table made once per call lists, for each 8-value vector of the im2col row
 * (k = 8v … 8v+7), the runs that feed it: a byte offset from the window
 * corner, chosen so that an unaligned load puts the run's values on their
 * own lanes, and a mask of those lanes. A pixel's row is then a few loads,
 * ANDs and ORs in registers (loads may read up to 14 bytes before the image
 * or 16 past it; what they read there is masked off), and a pixel pair is interleaved k-pair by
 * k-pair as it is stored: no per-tap bounds, no 16-byte run copies, no
 * separate interleave pass. The values are the same i16 as the copy path's
 * (padding taps are the real zero), so the accumulators are the same.
 */
const GATHER_MAX_KP: i32 = 128;
/** Bytes per table entry: the mask (16), the offset (i32), padding. */
const ENTRY: usize = 32;

// @ts-ignore: decorator
@inline
function gatherTableBytes(kp: i32, kh: i32): usize {
  // Each row vector has one entry per kernel row it touches: at most kp/8 + kh − 1 in all.
  return align16(<usize>((kp >> 3) + kh) * ENTRY + (<usize>(kp >> 3) << 2)) + SLACK;
}

/** Padding past the input a conv's windows reach on the far side (bottom or right). */
// @ts-ignore: decorator
@inline
function farPad(size: i32, k: i32, stride: i32, pad: i32, out: i32): i32 {
  return max(0, (out - 1) * stride + k - pad - size);
}

/** 1.5 · 2^23: adding it rounds a float below 2^22 in magnitude half to even into the low mantissa bits. */
const ROUNDING_MAGIC: f32 = 12582912.0;
const ROUNDING_MAGIC_BITS: i32 = 0x4b400000;

/**
 * x_q − zero_point as i16 for 8 floats: QuantizeLinear to u8 (x / scale
 * rounded half to even, which for |x / scale| ≤ 255 is what
 * `f32.nearest` + saturating truncation give, then + zero point with i16
 * saturation, clamped to [0, 255]), minus the zero point: the steps and bits
 * of `quantizeRowsI16`.
 */
// @ts-ignore: decorator
@inline
function quantize8(x: usize, s: v128, zp: v128): v128 {
  const magic = f32x4.splat(ROUNDING_MAGIC);
  const bits = i32x4.splat(ROUNDING_MAGIC_BITS);
  const q0 = i32x4.sub(f32x4.add(f32x4.div(v128.load(x), s), magic), bits);
  const q1 = i32x4.sub(f32x4.add(f32x4.div(v128.load(x, 16), s), magic), bits);
  const u = i16x8.min_s(i16x8.max_s(i16x8.add_sat_s(i16x8.narrow_i32x4_s(q0, q1), zp), i16x8.splat(0)), i16x8.splat(255));
  return i16x8.sub(u, zp);
}

/**
 * Quantises sample `xs` (h×w×c) into the zero-padded image at `img`
 * (hp×wp×c i16, the input at row padTop, column padLeft).
 */
function quantizePadded(
  xs: usize, h: i32, w: i32, c: i32, padTop: i32, padLeft: i32, hp: i32, wp: i32,
  scale: f32, zeroPoint: i32, img: usize,
): void {
  const zero = i32x4.splat(0);
  const bytes = (<usize>hp * <usize>wp * <usize>c) << 1;
  for (let i: usize = 0; i < bytes; i += 16) v128.store(img + i, zero);
  const s = f32x4.splat(scale);
  const zp = i16x8.splat(<i16>zeroPoint);
  const run = w * c;
  for (let y = 0; y < h; y++) {
    const src = xs + ((<usize>y * <usize>run) << 2);
    const dst = img + ((<usize>((y + padTop) * wp + padLeft) * <usize>c) << 1);
    let i = 0;
    for (; i + 8 <= run; i += 8) v128.store(dst + (<usize>i << 1), quantize8(src + (<usize>i << 2), s, zp));
    for (; i < run; i++) {
      // One value through the same lanes (the others are copies of it).
      const v = f32x4.splat(load<f32>(src + (<usize>i << 2)));
      const q = i32x4.sub(f32x4.add(f32x4.div(v, s), f32x4.splat(ROUNDING_MAGIC)), i32x4.splat(ROUNDING_MAGIC_BITS));
      const u = i16x8.min_s(i16x8.max_s(i16x8.add_sat_s(i16x8.narrow_i32x4_s(q, q), zp), i16x8.splat(0)), i16x8.splat(255));
      store<i16>(dst + (<usize>i << 1), i16x8.extract_lane_s(i16x8.sub(u, zp), 0));
    }
  }
}

/**
 * Builds the gather table at `table` for K = kh·kw·c over an image `rowValues`
 * (wp·c) values wide; returns nothing, the per-vector entry ends follow the
 * entries (at table + (kp/8 + kh)·ENTRY).
 */
function buildGatherTable(kh: i32, kw: i32, c: i32, rowValues: i32, table: usize): void {
  const k = kh * kw * c;
  const kp = paddedK(k);
  const vectors = kp >> 3;
  const ends = table + <usize>(vectors + kh) * ENTRY;
  const run = kw * c;
  let e = 0;
  for (let v = 0; v < vectors; v++) {
    const k0 = v << 3;
    const k1 = min(k0 + 8, k);
    let kk = k0;
    while (kk < k1) {
      const ky = kk / run;
      const segEnd = min(k1, (ky + 1) * run);
      const rec = table + <usize>e * ENTRY;
      // Loaded from `lead` values before the run, its values land on their own lanes.
      const lead = kk - k0;
      v128.store(rec, i32x4.splat(0));
      for (let j = kk; j < segEnd; j++) store<i16>(rec + (<usize>(j - k0) << 1), -1);
      store<i32>(rec + 16, (ky * rowValues + kk - ky * run - lead) << 1);
      e++;
      kk = segEnd;
    }
    store<i32>(ends + (<usize>v << 2), e);
  }
}

/**
 * Rows of the A tile for `mt` output pixels from (oy, ox) on, through the
 * gather table (see GATHER_MAX_KP): pairs interleaved as `gemmI16` reads
 * them, a last odd row plain.
 */
function gatherTile(
  img: usize, c: i32, wp: i32, strideH: i32, strideW: i32, outW: i32, kp: i32,
  table: usize, kh: i32, oy: i32, ox: i32, mt: i32, a16: usize,
): void {
  const vectors = kp >> 3;
  const ends = table + <usize>(vectors + kh) * ENTRY;
  const rowBytes = (<usize>strideH * <usize>wp * <usize>c) << 1;
  const step = (<usize>strideW * <usize>c) << 1;
  let rowStart = img + <usize>oy * rowBytes;
  let p = rowStart + <usize>ox * step;
  for (let r = 0; r < mt; r += 2) {
    const dst = a16 + ((<usize>r * <usize>kp) << 1);
    const pA = p;
    if (++ox == outW) { ox = 0; rowStart += rowBytes; p = rowStart; } else p += step;
    if (r + 1 < mt) {
      const pB = p;
      if (++ox == outW) { ox = 0; rowStart += rowBytes; p = rowStart; } else p += step;
      let e = 0;
      for (let v = 0; v < vectors; v++) {
        const end = load<i32>(ends + (<usize>v << 2));
        let a = i32x4.splat(0);
        let b = i32x4.splat(0);
        for (; e < end; e++) {
          const rec = table + <usize>e * ENTRY;
          const mask = v128.load(rec);
          const off = <usize>load<i32>(rec + 16);
          a = v128.or(a, v128.and(v128.load(pA + off), mask));
          b = v128.or(b, v128.and(v128.load(pB + off), mask));
        }
        const at = dst + (<usize>v << 5);
        v128.store(at, i32x4.shuffle(a, b, 0, 4, 1, 5));
        v128.store(at, i32x4.shuffle(a, b, 2, 6, 3, 7), 16);
      }
    } else {
      let e = 0;
      for (let v = 0; v < vectors; v++) {
        const end = load<i32>(ends + (<usize>v << 2));
        let a = i32x4.splat(0);
        for (; e < end; e++) {
          const rec = table + <usize>e * ENTRY;
          a = v128.or(a, v128.and(v128.load(pA + <usize>load<i32>(rec + 16)), v128.load(rec)));
        }
        v128.store(dst + (<usize>v << 4), a);
      }
    }
  }
}

/**
 * y[M×N] = act(f32(acc) · multipliers[col] + bias[col]), multipliers[col]
 * = f32(aScale · wScales[col]) computed once per sample: the f32 ops of
 * `dequantizeAccumulators` in the same order, then any activation.
 */
function dequantizeActivate(
  acc: usize, m: i32, n: i32, multipliers: usize, bias: usize,
  act: i32, p0: f32, p1: f32, y: usize,
): void {
  if ((n & 3) == 0) {
    // Rows are contiguous: one flat pass, the column cycling, bias and common activations hoisted.
    const total = m * n;
    if (bias) {
      if (act == 0) dequantizeFlat(acc, total, n, multipliers, bias, true, 0, p0, p1, y);
      else if (act == 1) dequantizeFlat(acc, total, n, multipliers, bias, true, 1, p0, p1, y);
      else dequantizeFlat(acc, total, n, multipliers, bias, true, act, p0, p1, y);
    } else {
      if (act == 0) dequantizeFlat(acc, total, n, multipliers, 0, false, 0, p0, p1, y);
      else if (act == 1) dequantizeFlat(acc, total, n, multipliers, 0, false, 1, p0, p1, y);
      else dequantizeFlat(acc, total, n, multipliers, 0, false, act, p0, p1, y);
    }
    return;
  }
  for (let r = 0; r < m; r++) {
    const rowAcc = acc + ((<usize>r * <usize>n) << 2);
    const rowOut = y + ((<usize>r * <usize>n) << 2);
    let col = 0;
    for (; col + 4 <= n; col += 4) {
      const off = <usize>col << 2;
      let v = f32x4.mul(f32x4.convert_i32x4_s(v128.load(rowAcc + off)), v128.load(multipliers + off));
      if (bias) v = f32x4.add(v, v128.load(bias + off));
      v128.store(rowOut + off, activate4(v, act, p0, p1));
    }
    for (; col < n; col++) {
      const off = <usize>col << 2;
      let v: f32 = <f32>load<i32>(rowAcc + off) * load<f32>(multipliers + off);
      if (bias) v = v + load<f32>(bias + off);
      store<f32>(rowOut + off, activate1(v, act, p0, p1));
    }
  }
}

/**
 * `dequantizeActivate` for n % 4 == 0 over `total` = m·n contiguous values:
 * the same ops per element (f32(acc) · multiplier, + bias, activation);
 * inlined with constant `hasBias`/`act` at its call sites.
 */
// @ts-ignore: decorator
@inline
function dequantizeFlat(
  acc: usize, total: i32, n: i32, multipliers: usize, bias: usize, hasBias: bool,
  act: i32, p0: f32, p1: f32, y: usize,
): void {
  const rowBytes = <usize>n << 2;
  let col: usize = 0;
  const end = <usize>total << 2;
  if (n == 8) {
    // Eight columns (a common thin layer): multipliers and bias in registers, a row per step.
    const m0 = v128.load(multipliers), m1 = v128.load(multipliers, 16);
    const b0 = hasBias ? v128.load(bias) : m0, b1 = hasBias ? v128.load(bias, 16) : m1;
    for (let i: usize = 0; i < end; i += 32) {
      let v = f32x4.mul(f32x4.convert_i32x4_s(v128.load(acc + i)), m0);
      let u = f32x4.mul(f32x4.convert_i32x4_s(v128.load(acc + i, 16)), m1);
      if (hasBias) {
        v = f32x4.add(v, b0);
        u = f32x4.add(u, b1);
      }
      v128.store(y + i, activate4(v, act, p0, p1));
      v128.store(y + i, activate4(u, act, p0, p1), 16);
    }
    return;
  }
  for (let i: usize = 0; i < end; i += 16) {
    let v = f32x4.mul(f32x4.convert_i32x4_s(v128.load(acc + i)), v128.load(multipliers + col));
    if (hasBias) v = f32x4.add(v, v128.load(bias + col));
    v128.store(y + i, activate4(v, act, p0, p1));
    col += 16;
    if (col == rowBytes) col = 0;
  }
}

/**
 * Group-1 convolution through the int8 GEMM (see the top of this file).
 * NHWC [batch, h, w, c] to NHWC [batch, outH, outW, cout]. Returns 0, or 1
 * when a sample holds NaN or ±Inf (the samples before it are written).
 */
export function convInt8(
  x: usize, batch: i32, h: i32, w: i32, c: i32, kh: i32, kw: i32,
  strideH: i32, strideW: i32, padTop: i32, padLeft: i32, outH: i32, outW: i32,
  packedW: usize, cout: i32, wScales: usize, bias: usize,
  act: i32, p0: f32, p1: f32, y: usize, scratch: usize,
): i32 {
  const k = kh * kw * c;
  const kp = paddedK(k);
  const n = h * w * c;
  const rows = outH * outW;
  const tile = tileRows(outH, outW);
  const xq = scratch;
  const direct = kh == 1 && kw == 1 && strideH == 1 && strideW == 1 && padTop == 0 && padLeft == 0 && outH == h && outW == w;
  // The gather path when K is thin and the pads fit the padded image convInt8ScratchBytes counts.
  const padBottom = farPad(h, kh, strideH, padTop, outH);
  const padRight = farPad(w, kw, strideW, padLeft, outW);
  const gather = !direct && kp <= GATHER_MAX_KP
    && padTop < kh && padLeft < kw && padBottom < kh && padRight < kw;
  const hp = padTop + h + padBottom;
  const wp = padLeft + w + padRight;
  let sampleBytes = align16(<usize>paddedK(n) << 1);
  let tableBytes: usize = 0;
  if (kp <= GATHER_MAX_KP) {
    sampleBytes = max(sampleBytes, align16(<usize>(h + 2 * (kh - 1)) * <usize>(w + 2 * (kw - 1)) * <usize>c << 1));
    tableBytes = gatherTableBytes(kp, kh);
  }
  const table = xq + sampleBytes + SLACK;
  const pair = table + tableBytes;
  const pair1 = pair + (<usize>kp << 1);
  const a16 = pair + align16(<usize>kp << 2) + SLACK;
  const acc = a16 + align16((<usize>tile * <usize>kp) << 1) + SLACK;
  const multipliers = acc + align16((<usize>tile * <usize>cout) << 2);
  // `quantizeRowsI16` takes a scale and zero point per row: here every row is the sample's.
  const rowScales = multipliers + align16(<usize>cout << 2);
  const rowZeros = rowScales + align16(<usize>tile << 2);
  if (gather) buildGatherTable(kh, kw, c, wp * c, table);
  for (let b = 0; b < batch; b++) {
    const xs = x + ((<usize>b * <usize>n) << 2);
    const ys = y + ((<usize>b * <usize>rows * <usize>cout) << 2);
    if (dynamicRange(xs, n) != 0) return 1;
    const scale = dynamicScale();
    const zp = dynamicZeroPoint();
    // The gather path quantises on its own; the others need the scale once per row they quantise.
    const filled = gather ? 0 : direct ? tile : 1;
    for (let r = 0; r < filled; r++) {
      store<f32>(rowScales + (<usize>r << 2), scale);
      store<i32>(rowZeros + (<usize>r << 2), zp);
    }
    const as = f32x4.splat(scale);
    let col = 0;
    for (; col + 4 <= cout; col += 4) {
      const off = <usize>col << 2;
      v128.store(multipliers + off, f32x4.mul(as, v128.load(wScales + off)));
    }
    for (; col < cout; col++) store<f32>(multipliers + (<usize>col << 2), scale * load<f32>(wScales + (<usize>col << 2)));
    // A lone row's A layout is its values in order: the whole sample quantised once.
    if (gather) quantizePadded(xs, h, w, c, padTop, padLeft, hp, wp, scale, zp, xq);
    else if (!direct) quantizeRowsI16(xs, 1, n, rowScales, rowZeros, xq);
    for (let r0 = 0; r0 < rows; r0 += tile) {
      const mt = min(tile, rows - r0);
      if (gather) {
        const oy = r0 / outW;
        gatherTile(xq, c, wp, strideH, strideW, outW, kp, table, kh, oy, r0 - oy * outW, mt, a16);
      } else if (direct) {
        quantizeRowsI16(xs + ((<usize>r0 * <usize>c) << 2), mt, c, rowScales, rowZeros, a16);
      } else {
        let oy = r0 / outW;
        let ox = r0 - oy * outW;
        for (let r = 0; r < mt; r += 2) {
          const dst = a16 + ((<usize>r * <usize>kp) << 1);
          if (r + 1 < mt) {
            im2colRow(xq, h, w, c, kh, kw, strideH, strideW, padTop, padLeft, oy, ox, pair);
            if (++ox == outW) { ox = 0; oy++; }
            im2colRow(xq, h, w, c, kh, kw, strideH, strideW, padTop, padLeft, oy, ox, pair1);
            if (++ox == outW) { ox = 0; oy++; }
            // Interleave the two rows k-pair by k-pair, as `gemmI16` reads a row pair.
            for (let i = 0; i < kp; i += 8) {
              const v0 = v128.load(pair + (<usize>i << 1));
              const v1 = v128.load(pair1 + (<usize>i << 1));
              const at = dst + (<usize>i << 2);
              v128.store(at, i32x4.shuffle(v0, v1, 0, 4, 1, 5));
              v128.store(at, i32x4.shuffle(v0, v1, 2, 6, 3, 7), 16);
            }
          } else {
            im2colRow(xq, h, w, c, kh, kw, strideH, strideW, padTop, padLeft, oy, ox, dst);
          }
        }
      }
      gemmI16(a16, mt, k, packedW, cout, acc);
      dequantizeActivate(acc, mt, cout, multipliers, bias, act, p0, p1, ys + ((<usize>r0 * <usize>cout) << 2));
    }
  }
  return 0;
}

/**
 * `count` output pixels of a 3×3 depthwise row whose windows lie wholly
 * inside the input, channels 0 to c & ~3: `x0` is the first window's top-left
 * input pixel, `xRow` an input row's bytes, `step` the stride in bytes. Same
 * sums in the same order as the general loop (0, then taps in (ky, kx) order,
 * then the bias), so the bits are the same.
 */
function depthwise3x3Row(
  x0: usize, xRow: usize, step: usize, out: usize, count: i32, c: i32, weights: usize, bias: usize,
): void {
  const pixel = <usize>c << 2;
  const p2 = pixel << 1;
  const r2 = xRow << 1;
  for (let ch = 0; ch + 4 <= c; ch += 4) {
    const off = <usize>ch << 2;
    const wp = weights + off;
    const w0 = v128.load(wp), w1 = v128.load(wp + pixel), w2 = v128.load(wp + p2);
    const wq = wp + 3 * pixel;
    const w3 = v128.load(wq), w4 = v128.load(wq + pixel), w5 = v128.load(wq + p2);
    const wr = wp + 6 * pixel;
    const w6 = v128.load(wr), w7 = v128.load(wr + pixel), w8 = v128.load(wr + p2);
    const bv = bias ? v128.load(bias + off) : f32x4.splat(0);
    let xp = x0 + off;
    let op = out + off;
    for (let i = 0; i < count; i++, xp += step, op += pixel) {
      let a = f32x4.add(f32x4.splat(0), f32x4.mul(v128.load(xp), w0));
      a = f32x4.add(a, f32x4.mul(v128.load(xp + pixel), w1));
      a = f32x4.add(a, f32x4.mul(v128.load(xp + p2), w2));
      const xq = xp + xRow;
      a = f32x4.add(a, f32x4.mul(v128.load(xq), w3));
      a = f32x4.add(a, f32x4.mul(v128.load(xq + pixel), w4));
      a = f32x4.add(a, f32x4.mul(v128.load(xq + p2), w5));
      const xr = xp + r2;
      a = f32x4.add(a, f32x4.mul(v128.load(xr), w6));
      a = f32x4.add(a, f32x4.mul(v128.load(xr + pixel), w7));
      a = f32x4.add(a, f32x4.mul(v128.load(xr + p2), w8));
      v128.store(op, bias ? f32x4.add(a, bv) : a);
    }
  }
}

/**
 * Depthwise convolution (group = c, channel multiplier 1), f32. `weights`
 * holds kh·kw·c floats, tap-major with the channel fastest; `bias` c floats
 * or 0. NHWC [batch, h, w, c] to [batch, outH, outW, c].
 */
export function depthwiseConv(
  x: usize, batch: i32, h: i32, w: i32, c: i32, kh: i32, kw: i32,
  strideH: i32, strideW: i32, padTop: i32, padLeft: i32, outH: i32, outW: i32,
  weights: usize, bias: usize, act: i32, p0: f32, p1: f32, y: usize,
): void {
  const pixel = <usize>c << 2;
  const wRow = <usize>kw * pixel; // one kernel row of taps
  for (let b = 0; b < batch; b++) {
    const xs = x + <usize>b * <usize>h * <usize>w * pixel;
    const ys = y + <usize>b * <usize>outH * <usize>outW * pixel;
    for (let oy = 0; oy < outH; oy++) {
      const iy0 = oy * strideH - padTop;
      const ky0 = max(0, -iy0);
      const ky1 = min(kh, h - iy0);
      // 3×3 windows wholly inside: output pixels [oxLo, oxHi) of this row run
      // channel block by block with the block's nine weight vectors held in
      // registers (one load per multiply-add instead of two).
      let oxLo = outW;
      let oxHi = outW;
      if (kh == 3 && kw == 3 && ky0 == 0 && ky1 == 3 && c >= 4 && w + padLeft >= 3) {
        oxLo = (padLeft + strideW - 1) / strideW;
        oxHi = min(outW, (w + padLeft - 3) / strideW + 1);
        if (oxLo < oxHi) {
          depthwise3x3Row(
            xs + <usize>(iy0 * w + oxLo * strideW - padLeft) * pixel, <usize>w * pixel, <usize>strideW * pixel,
            ys + <usize>(oy * outW + oxLo) * pixel, oxHi - oxLo, c, weights, bias,
          );
        } else {
          oxLo = outW;
          oxHi = outW;
        }
      }
      for (let ox = 0; ox < outW; ox++) {
        const ix0 = ox * strideW - padLeft;
        const kx0 = max(0, -ix0);
        const kx1 = min(kw, w - ix0);
        const out = ys + <usize>(oy * outW + ox) * pixel;
        // The window's first valid input pixel and weight tap; channel offsets are added below.
        const x0 = xs + <usize>((iy0 + ky0) * w + ix0 + kx0) * pixel;
        const w0 = weights + <usize>ky0 * wRow + <usize>kx0 * pixel;
        const xRow = <usize>w * pixel;
        // Pixels done by depthwise3x3Row have only their last c % 4 channels left.
        let ch = ox >= oxLo && ox < oxHi ? c & ~3 : 0;
        for (; ch + 16 <= c; ch += 16) {
          const off = <usize>ch << 2;
          let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
          let xr = x0 + off;
          let wr = w0 + off;
          for (let ky = ky0; ky < ky1; ky++, xr += xRow, wr += wRow) {
            let xp = xr;
            let wp = wr;
            for (let kx = kx0; kx < kx1; kx++, xp += pixel, wp += pixel) {
              a0 = f32x4.add(a0, f32x4.mul(v128.load(xp), v128.load(wp)));
              a1 = f32x4.add(a1, f32x4.mul(v128.load(xp, 16), v128.load(wp, 16)));
              a2 = f32x4.add(a2, f32x4.mul(v128.load(xp, 32), v128.load(wp, 32)));
              a3 = f32x4.add(a3, f32x4.mul(v128.load(xp, 48), v128.load(wp, 48)));
            }
          }
          if (bias) {
            a0 = f32x4.add(a0, v128.load(bias + off));
            a1 = f32x4.add(a1, v128.load(bias + off, 16));
            a2 = f32x4.add(a2, v128.load(bias + off, 32));
            a3 = f32x4.add(a3, v128.load(bias + off, 48));
          }
          v128.store(out + off, a0);
          v128.store(out + off, a1, 16);
          v128.store(out + off, a2, 32);
          v128.store(out + off, a3, 48);
        }
        for (; ch + 4 <= c; ch += 4) {
          const off = <usize>ch << 2;
          let a = f32x4.splat(0);
          let xr = x0 + off;
          let wr = w0 + off;
          for (let ky = ky0; ky < ky1; ky++, xr += xRow, wr += wRow) {
            let xp = xr;
            let wp = wr;
            for (let kx = kx0; kx < kx1; kx++, xp += pixel, wp += pixel) {
              a = f32x4.add(a, f32x4.mul(v128.load(xp), v128.load(wp)));
            }
          }
          if (bias) a = f32x4.add(a, v128.load(bias + off));
          v128.store(out + off, a);
        }
        for (; ch < c; ch++) {
          const off = <usize>ch << 2;
          let a: f32 = 0;
          let xr = x0 + off;
          let wr = w0 + off;
          for (let ky = ky0; ky < ky1; ky++, xr += xRow, wr += wRow) {
            let xp = xr;
            let wp = wr;
            for (let kx = kx0; kx < kx1; kx++, xp += pixel, wp += pixel) a = a + load<f32>(xp) * load<f32>(wp);
          }
          if (bias) a = a + load<f32>(bias + off);
          store<f32>(out + off, a);
        }
      }
      // The activation over the output row while it is in L1: one copy of its code, out of the tap loops.
      if (act != 0) {
        const row = ys + <usize>oy * <usize>outW * pixel;
        activate(row, outW * c, act, p0, p1, row);
      }
    }
  }
}
