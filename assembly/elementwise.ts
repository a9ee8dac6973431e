/**
 * Elementwise kernels for convolutional networks, over f32 activations in
 * NHWC (one sample after another): activations, residual `add`, `mul`,
 * squeeze-and-excitation gating, channel concatenation and the layout
 * transposes at a network's edges.
 *
 * Activation codes (`act`, with parameters p0 and p1):
 *   0 none         y = x
 *   1 relu         y = max(x, 0)
 *   2 clip         y = min(max(x, p0), p1)
 *   3 hardswish    y = x * min(max(x + 3, 0), 6) / 6      (in that order, f32)
 *   4 hardsigmoid  y = max(0, min(1, p0 * x + p1))
 *   5 sigmoid      y = 1 / (1 + exp(-x))                   (exp per lane, Mathf.exp)
 */

export const ACT_NONE: i32 = 0;
export const ACT_RELU: i32 = 1;
export const ACT_CLIP: i32 = 2;
export const ACT_HARDSWISH: i32 = 3;
export const ACT_HARDSIGMOID: i32 = 4;
export const ACT_SIGMOID: i32 = 5;

// @ts-ignore: decorator
@inline
function sigmoid(x: f32): f32 {
  return <f32>1 / (<f32>1 + Mathf.exp(-x));
}

/** The activation on four lanes. `act` is loop-invariant at every call site. */
// @ts-ignore: decorator
@inline
export function activate4(v: v128, act: i32, p0: f32, p1: f32): v128 {
  if (act == ACT_RELU) {
    // pmax(0, v) = 0 < v ? v : 0 — one instruction; max(x, 0) for every non-NaN x.
    return f32x4.pmax(f32x4.splat(0), v);
  } else if (act == ACT_CLIP) {
    return f32x4.min(f32x4.max(v, f32x4.splat(p0)), f32x4.splat(p1));
  } else if (act == ACT_HARDSWISH) {
    const t = f32x4.min(f32x4.max(f32x4.add(v, f32x4.splat(3)), f32x4.splat(0)), f32x4.splat(6));
    return f32x4.div(f32x4.mul(v, t), f32x4.splat(6));
  } else if (act == ACT_HARDSIGMOID) {
    const t = f32x4.add(f32x4.mul(f32x4.splat(p0), v), f32x4.splat(p1));
    return f32x4.max(f32x4.splat(0), f32x4.min(f32x4.splat(1), t));
  } else if (act == ACT_SIGMOID) {
    return f32x4(
      sigmoid(f32x4.extract_lane(v, 0)),
      sigmoid(f32x4.extract_lane(v, 1)),
      sigmoid(f32x4.extract_lane(v, 2)),
      sigmoid(f32x4.extract_lane(v, 3)),
    );
  }
  return v;
}

/** The activation on one value, through the same vector code (bit-identical tails). */
// @ts-ignore: decorator
@inline
export function activate1(v: f32, act: i32, p0: f32, p1: f32): f32 {
  if (act == ACT_NONE) return v;
  if (act == ACT_SIGMOID) return sigmoid(v);
  return f32x4.extract_lane(activate4(f32x4.splat(v), act, p0, p1), 0);
}

/** y[i] = act(x[i]) for `count` floats; `y` may be `x`. */
export function activate(x: usize, count: i32, act: i32, p0: f32, p1: f32, y: usize): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    v128.store(y + at, activate4(v128.load(x + at), act, p0, p1));
  }
  for (; i < count; i++) {
    const at = <usize>i << 2;
    store<f32>(y + at, activate1(load<f32>(x + at), act, p0, p1));
  }
}

/** y[i] = act(a[i] + b[i]) (residual connections); `y` may be `a` or `b`. */
export function add(a: usize, b: usize, count: i32, act: i32, p0: f32, p1: f32, y: usize): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    v128.store(y + at, activate4(f32x4.add(v128.load(a + at), v128.load(b + at)), act, p0, p1));
  }
  for (; i < count; i++) {
    const at = <usize>i << 2;
    store<f32>(y + at, activate1(load<f32>(a + at) + load<f32>(b + at), act, p0, p1));
  }
}

/** y[i] = a[i] * b[i]; `y` may be `a` or `b`. */
export function mul(a: usize, b: usize, count: i32, y: usize): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const at = <usize>i << 2;
    v128.store(y + at, f32x4.mul(v128.load(a + at), v128.load(b + at)));
  }
  for (; i < count; i++) {
    const at = <usize>i << 2;
    store<f32>(y + at, load<f32>(a + at) * load<f32>(b + at));
  }
}

/** Squeeze-and-excitation: y[b, p, ch] = x[b, p, ch] * gate[b, ch]; `y` may be `x`. */
export function mulChannels(x: usize, gate: usize, batch: i32, hw: i32, c: i32, y: usize): void {
  const row = <usize>c << 2;
  for (let b = 0; b < batch; b++) {
    const g = gate + <usize>b * row;
    const base = <usize>b * <usize>hw * row;
    for (let p = 0; p < hw; p++) {
      const xs = x + base + <usize>p * row;
      const ys = y + base + <usize>p * row;
      let ch = 0;
      for (; ch + 4 <= c; ch += 4) {
        const at = <usize>ch << 2;
        v128.store(ys + at, f32x4.mul(v128.load(xs + at), v128.load(g + at)));
      }
      for (; ch < c; ch++) {
        const at = <usize>ch << 2;
        store<f32>(ys + at, load<f32>(xs + at) * load<f32>(g + at));
      }
    }
  }
}

/** Copies `count` floats (vector by vector; the ranges must not overlap). */
// @ts-ignore: decorator
@inline
function copyFloats(src: usize, count: i32, dst: usize): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) v128.store(dst + (<usize>i << 2), v128.load(src + (<usize>i << 2)));
  for (; i < count; i++) store<f32>(dst + (<usize>i << 2), load<f32>(src + (<usize>i << 2)));
}

/** Concat on channels: y[b, p, :] = a[b, p, :ca] ++ b[b, p, :cb]. */
export function concatChannels(a: usize, ca: i32, b: usize, cb: i32, batch: i32, hw: i32, y: usize): void {
  const pixels = <usize>batch * <usize>hw;
  const cy = <usize>(ca + cb);
  for (let p: usize = 0; p < pixels; p++) {
    const out = y + ((p * cy) << 2);
    copyFloats(a + ((p * <usize>ca) << 2), ca, out);
    copyFloats(b + ((p * <usize>cb) << 2), cb, out + (<usize>ca << 2));
  }
}

/**
 * Transposes `batch` [rows × cols] f32 matrices at `x` to [cols × rows] at
 * `y`: 4 × 4 blocks through registers, the edges value by value.
 */
function transposeBatch(x: usize, batch: i32, rows: i32, cols: i32, y: usize): void {
  const plane = (<usize>rows * <usize>cols) << 2;
  const rs = <usize>cols << 2; // source row stride
  const ds = <usize>rows << 2; // destination row stride
  if (rows == 1) {
    memory.copy(y, x, <usize>batch * plane);
    return;
  }
  for (let b = 0; b < batch; b++) {
    const src = x + <usize>b * plane;
    const dst = y + <usize>b * plane;
    let r = 0;
    if (rows == 3) {
      // Three rows (an RGB image's planes to NHWC): four columns at a time, 12 values in three stores.
      let c = 0;
      for (; c + 4 <= cols; c += 4) {
        const s = src + (<usize>c << 2);
        const p = v128.load(s);
        const q = v128.load(s + rs);
        const u = v128.load(s + 2 * rs);
        const t = i32x4.shuffle(p, q, 0, 4, 1, 5); // p0 q0 p1 q1
        const v = i32x4.shuffle(p, q, 2, 6, 3, 7); // p2 q2 p3 q3
        const d = dst + <usize>c * 12;
        v128.store(d, i32x4.shuffle(t, u, 0, 1, 4, 2)); // p0 q0 u0 p1
        v128.store(d, i32x4.shuffle(i32x4.shuffle(t, u, 3, 5, 0, 0), v, 0, 1, 4, 5), 16); // q1 u1 p2 q2
        v128.store(d, i32x4.shuffle(u, v, 2, 6, 7, 3), 32); // u2 p3 q3 u3
      }
      for (; c < cols; c++) {
        for (let i = 0; i < 3; i++) {
          store<f32>(dst + <usize>c * 12 + (<usize>i << 2), load<f32>(src + <usize>i * rs + (<usize>c << 2)));
        }
      }
      continue;
    }
    for (; r + 4 <= rows; r += 4) {
      let c = 0;
      for (; c + 4 <= cols; c += 4) {
        const s = src + <usize>r * rs + (<usize>c << 2);
        const r0 = v128.load(s);
        const r1 = v128.load(s + rs);
        const r2 = v128.load(s + 2 * rs);
        const r3 = v128.load(s + 3 * rs);
        const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5);
        const t1 = i32x4.shuffle(r2, r3, 0, 4, 1, 5);
        const t2 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
        const t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
        const d = dst + <usize>c * ds + (<usize>r << 2);
        v128.store(d, i64x2.shuffle(t0, t1, 0, 2));
        v128.store(d + ds, i64x2.shuffle(t0, t1, 1, 3));
        v128.store(d + 2 * ds, i64x2.shuffle(t2, t3, 0, 2));
        v128.store(d + 3 * ds, i64x2.shuffle(t2, t3, 1, 3));
      }
      for (; c < cols; c++) {
        for (let i = r; i < r + 4; i++) {
          store<f32>(dst + <usize>c * ds + (<usize>i << 2), load<f32>(src + <usize>i * rs + (<usize>c << 2)));
        }
      }
    }
    for (; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        store<f32>(dst + <usize>c * ds + (<usize>r << 2), load<f32>(src + <usize>r * rs + (<usize>c << 2)));
      }
    }
  }
}

/** NCHW [batch, c, hw] to NHWC [batch, hw, c]. */
export function nchwToNhwc(x: usize, batch: i32, c: i32, hw: i32, y: usize): void {
  transposeBatch(x, batch, c, hw, y);
}

/** NHWC [batch, hw, c] to NCHW [batch, c, hw]. */
export function nhwcToNchw(x: usize, batch: i32, c: i32, hw: i32, y: usize): void {
  transposeBatch(x, batch, hw, c, y);
}
