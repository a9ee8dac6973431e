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
  return align16(<usize>paddedK(h * w * c) << 1) + SLACK // the quantised sample (copies read past it)
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
 * y[M×N] = act(f32(acc) · multipliers[col] + bias[col]), multipliers[col]
 * = f32(aScale · wScales[col]) computed once per sample: the f32 ops of
 * `dequantizeAccumulators` in the same order, then any activation.
 */
function dequantizeActivate(
  acc: usize, m: i32, n: i32, multipliers: usize, bias: usize,
  act: i32, p0: f32, p1: f32, y: usize,
): void {
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
  const pair = xq + align16(<usize>paddedK(n) << 1) + SLACK;
  const pair1 = pair + (<usize>kp << 1);
  const a16 = pair + align16(<usize>kp << 2) + SLACK;
  const acc = a16 + align16((<usize>tile * <usize>kp) << 1) + SLACK;
  const multipliers = acc + align16((<usize>tile * <usize>cout) << 2);
  // `quantizeRowsI16` takes a scale and zero point per row: here every row is the sample's.
  const rowScales = multipliers + align16(<usize>cout << 2);
  const rowZeros = rowScales + align16(<usize>tile << 2);
  const direct = kh == 1 && kw == 1 && strideH == 1 && strideW == 1 && padTop == 0 && padLeft == 0 && outH == h && outW == w;
  for (let b = 0; b < batch; b++) {
    const xs = x + ((<usize>b * <usize>n) << 2);
    const ys = y + ((<usize>b * <usize>rows * <usize>cout) << 2);
    if (dynamicRange(xs, n) != 0) return 1;
    const scale = dynamicScale();
    const zp = dynamicZeroPoint();
    for (let r = 0; r < tile; r++) {
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
    if (!direct) quantizeRowsI16(xs, 1, n, rowScales, rowZeros, xq);
    for (let r0 = 0; r0 < rows; r0 += tile) {
      const mt = min(tile, rows - r0);
      if (direct) {
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
