/**
 * @module
 * Plain TypeScript reference for the fused int8 layer — the oracle the WASM
 * kernel must equal bit for bit. Every f32 operation is written out with
 * Math.fround, in the order the kernel's contract states.
 */
const f32 = Math.fround;

/** Round half to even, as f32.nearest / std::nearbyint do. */
export function nearest(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function referenceDynamicQuantize(x: Float32Array) {
  let lo = 0;
  let hi = 0;
  for (const v of x) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const scale = hi === lo ? 1 : f32(f32(hi - lo) / 255);
  const zeroPoint = nearest(Math.min(Math.max(f32(0 - f32(lo / scale)), 0), 255));
  const y = Uint8Array.from(x, (v) =>
    Math.min(Math.max(nearest(f32(v / scale)) + zeroPoint, 0), 255),
  );
  return { y, scale, zeroPoint };
}

/**
 * y = act(f32(Σ (q − zp)·w) · f32(a_scale · w_scale[n]) + bias[n]), with
 * (q, a_scale, zp) the dynamic quantisation of x. `w` is K×N row-major int8.
 */
export function referenceFusedLinear(
  x: Float32Array,
  m: number,
  k: number,
  w: Int8Array,
  n: number,
  wScales: Float32Array,
  bias: Float32Array | undefined,
  activation: "none" | "relu",
): Float32Array {
  const { y: q, scale, zeroPoint } = referenceDynamicQuantize(x);
  const out = new Float32Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < n; c++) {
      let acc = 0;
      for (let i = 0; i < k; i++) acc += (q[r * k + i]! - zeroPoint) * w[i * n + c]!;
      let v = f32(f32(acc) * f32(scale * wScales[c]!));
      if (bias) v = f32(v + bias[c]!);
      if (activation === "relu") v = Math.max(v, 0);
      out[r * n + c] = v;
    }
  }
  return out;
}
