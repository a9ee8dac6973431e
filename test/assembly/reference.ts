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
 * (q, a_scale, zp) the dynamic quantisation of x's row, each row on its own
 * (the batch never changes a row's answer). `w` is K×N row-major int8.
 */
export function referenceFusedLinear(
  x: Float32Array,
  m: number,
  k: number,
  w: Int8Array,
  n: number,
  wScales: Float32Array,
  bias: Float32Array | null | undefined,
  activation: "none" | "relu",
): Float32Array {
  const out = new Float32Array(m * n);
  for (let r = 0; r < m; r++) {
    const { y: q, scale, zeroPoint } = referenceDynamicQuantize(x.subarray(r * k, (r + 1) * k));
    for (let c = 0; c < n; c++) {
      let acc = 0;
      for (let i = 0; i < k; i++) acc += (q[i]! - zeroPoint) * w[i * n + c]!;
      let v = f32(f32(acc) * f32(scale * wScales[c]!));
      if (bias) v = f32(v + bias[c]!);
      if (activation === "relu") v = Math.max(v, 0);
      out[r * n + c] = v;
    }
  }
  return out;
}

/** A compiled dense layer as the reference reads it: K×N int8 weights and f32 scales and bias. */
export interface ReferenceLayer {
  k: number;
  n: number;
  activation: string;
  weights: Int8Array;
  scales: Float32Array;
  bias: Float32Array | null;
}

/**
 * A whole int8 plan of ReLU/linear layers (what the kernels run in one call),
 * one row at a time: every row is quantised alone at every layer, which is
 * also what the per-tensor DynamicQuantizeLinear of a batch of one gives.
 */
export function referencePlan(layers: readonly ReferenceLayer[], x: Float32Array): Float32Array {
  let values = x;
  for (const l of layers) {
    if (l.activation !== "relu" && l.activation !== "none") {
      throw new Error(`the reference runs ReLU and linear layers only, not ${l.activation}`);
    }
    const rows = values.length / l.k;
    values = referenceFusedLinear(values, rows, l.k, l.weights, l.n, l.scales, l.bias, l.activation);
  }
  return values;
}
