/**
 * Pooling over f32 NHWC activations, ONNX semantics: padded taps take no part
 * in a max, nor (unless `countIncludePad`) in an average's count. The caller
 * gives the output size (so ceil_mode is the caller's choice of outH/outW).
 * SIMD over channels, a scalar tail for c % 4. Sums run tap by tap in (ky, kx)
 * order, then one f32 division by the count.
 */

/** The taps of a window that fall inside [0, size): [first, end). */
// @ts-ignore: decorator
@inline
function firstTap(o: i32, stride: i32, pad: i32): i32 {
  return max(0, pad - o * stride);
}

// @ts-ignore: decorator
@inline
function endTap(o: i32, stride: i32, pad: i32, k: i32, size: i32): i32 {
  return min(k, size + pad - o * stride);
}

// Inlined into maxPool and averagePool with `average` constant, so neither carries the other's branches.
// @ts-ignore: decorator
@inline
function pool(
  x: usize, batch: i32, h: i32, w: i32, c: i32, kh: i32, kw: i32,
  strideH: i32, strideW: i32, padTop: i32, padLeft: i32, outH: i32, outW: i32,
  average: bool, countIncludePad: bool, y: usize,
): void {
  const pixel = <usize>c << 2;
  for (let b = 0; b < batch; b++) {
    const xs = x + <usize>b * <usize>h * <usize>w * pixel;
    const ys = y + <usize>b * <usize>outH * <usize>outW * pixel;
    for (let oy = 0; oy < outH; oy++) {
      const ky0 = firstTap(oy, strideH, padTop);
      const ky1 = endTap(oy, strideH, padTop, kh, h);
      const iy0 = oy * strideH - padTop;
      for (let ox = 0; ox < outW; ox++) {
        const kx0 = firstTap(ox, strideW, padLeft);
        const kx1 = endTap(ox, strideW, padLeft, kw, w);
        const ix0 = ox * strideW - padLeft;
        const out = ys + (<usize>(oy * outW + ox)) * pixel;
        const taps = countIncludePad ? kh * kw : max(0, ky1 - ky0) * max(0, kx1 - kx0);
        const count = f32x4.splat(<f32>taps);
        let ch = 0;
        for (; ch + 4 <= c; ch += 4) {
          let acc = average ? f32x4.splat(0) : f32x4.splat(-Infinity);
          for (let ky = ky0; ky < ky1; ky++) {
            const rowAt = xs + (<usize>((iy0 + ky) * w + ix0)) * pixel + (<usize>ch << 2);
            for (let kx = kx0; kx < kx1; kx++) {
              const v = v128.load(rowAt + <usize>kx * pixel);
              acc = average ? f32x4.add(acc, v) : f32x4.max(acc, v);
            }
          }
          v128.store(out + (<usize>ch << 2), average ? f32x4.div(acc, count) : acc);
        }
        for (; ch < c; ch++) {
          let acc: f32 = average ? 0 : -Infinity;
          for (let ky = ky0; ky < ky1; ky++) {
            const rowAt = xs + (<usize>((iy0 + ky) * w + ix0)) * pixel + (<usize>ch << 2);
            for (let kx = kx0; kx < kx1; kx++) {
              const v = load<f32>(rowAt + <usize>kx * pixel);
              acc = average ? acc + v : max(acc, v);
            }
          }
          store<f32>(out + (<usize>ch << 2), average ? acc / <f32>taps : acc);
        }
      }
    }
  }
}

/**
 * MaxPool 2×2 with every window inside the input and c % 4 == 0 (the usual
 * 2×2 stride-2 pool after a conv): the four taps unrolled, the max started at
 * the first tap rather than at −∞ (max(−∞, v) is v), in (ky, kx) order.
 */
function maxPool2x2Inside(
  x: usize, batch: i32, h: i32, w: i32, c: i32, strideH: i32, strideW: i32, outH: i32, outW: i32, y: usize,
): void {
  const pixel = <usize>c << 2;
  const row = <usize>w * pixel;
  const step = <usize>strideW * pixel;
  for (let b = 0; b < batch; b++) {
    const xs = x + <usize>b * <usize>h * row;
    let out = y + <usize>b * <usize>outH * <usize>outW * pixel;
    for (let oy = 0; oy < outH; oy++) {
      let p = xs + <usize>(oy * strideH) * row;
      for (let ox = 0; ox < outW; ox++, p += step, out += pixel) {
        for (let off: usize = 0; off < pixel; off += 16) {
          const q = p + off;
          const top = f32x4.max(v128.load(q), v128.load(q + pixel));
          const m = f32x4.max(f32x4.max(top, v128.load(q + row)), v128.load(q + row + pixel));
          v128.store(out + off, m);
        }
      }
    }
  }
}

/** MaxPool: NHWC [batch, h, w, c] to [batch, outH, outW, c]. */
export function maxPool(
  x: usize, batch: i32, h: i32, w: i32, c: i32, kh: i32, kw: i32,
  strideH: i32, strideW: i32, padTop: i32, padLeft: i32, outH: i32, outW: i32, y: usize,
): void {
  if (
    kh == 2 && kw == 2 && (c & 3) == 0 && padTop == 0 && padLeft == 0 &&
    (outH - 1) * strideH + 2 <= h && (outW - 1) * strideW + 2 <= w
  ) {
    maxPool2x2Inside(x, batch, h, w, c, strideH, strideW, outH, outW, y);
    return;
  }
  pool(x, batch, h, w, c, kh, kw, strideH, strideW, padTop, padLeft, outH, outW, false, false, y);
}

/**
 * AveragePool: NHWC [batch, h, w, c] to [batch, outH, outW, c]. With
 * `countIncludePad` the divisor is always kh·kw (ONNX's, except for ceil_mode
 * windows that run past the bottom/right padding, which ONNX clips).
 */
export function averagePool(
  x: usize, batch: i32, h: i32, w: i32, c: i32, kh: i32, kw: i32,
  strideH: i32, strideW: i32, padTop: i32, padLeft: i32, outH: i32, outW: i32,
  countIncludePad: i32, y: usize,
): void {
  pool(x, batch, h, w, c, kh, kw, strideH, strideW, padTop, padLeft, outH, outW, true, countIncludePad != 0, y);
}

/** GlobalAveragePool: NHWC [batch, hw, c] to [batch, c]; sums pixel by pixel, then divides by hw. */
export function globalAveragePool(x: usize, batch: i32, hw: i32, c: i32, y: usize): void {
  const pixel = <usize>c << 2;
  const count = f32x4.splat(<f32>hw);
  for (let b = 0; b < batch; b++) {
    const xs = x + <usize>b * <usize>hw * pixel;
    const ys = y + <usize>b * pixel;
    let ch = 0;
    for (; ch + 16 <= c; ch += 16) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let p = xs + (<usize>ch << 2);
      for (let i = 0; i < hw; i++, p += pixel) {
        a0 = f32x4.add(a0, v128.load(p));
        a1 = f32x4.add(a1, v128.load(p, 16));
        a2 = f32x4.add(a2, v128.load(p, 32));
        a3 = f32x4.add(a3, v128.load(p, 48));
      }
      const o = ys + (<usize>ch << 2);
      v128.store(o, f32x4.div(a0, count));
      v128.store(o, f32x4.div(a1, count), 16);
      v128.store(o, f32x4.div(a2, count), 32);
      v128.store(o, f32x4.div(a3, count), 48);
    }
    for (; ch + 4 <= c; ch += 4) {
      let acc = f32x4.splat(0);
      let p = xs + (<usize>ch << 2);
      for (let i = 0; i < hw; i++, p += pixel) acc = f32x4.add(acc, v128.load(p));
      v128.store(ys + (<usize>ch << 2), f32x4.div(acc, count));
    }
    for (; ch < c; ch++) {
      let acc: f32 = 0;
      let p = xs + (<usize>ch << 2);
      for (let i = 0; i < hw; i++, p += pixel) acc += load<f32>(p);
      store<f32>(ys + (<usize>ch << 2), acc / <f32>hw);
    }
  }
}
