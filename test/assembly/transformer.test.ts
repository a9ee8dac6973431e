/**
 * The transformer-encoder kernels (assembly/transformer.ts), called through
 * the flat ABI of the built module, against plain JS references computed in
 * float64 from the same f32 inputs (the reference of accuracy), on random
 * shapes (rows 1 and 7, widths that are not multiples of 4), and against
 * onnxruntime-node's LayerNormalization (opset 17), Softmax (opset 13, last
 * axis), the exporter's Erf-based GELU subgraph, Erf, and 3-D MatMul of two
 * inputs. Tolerances are stated next to each check with the reason for them;
 * u = 2^-24 is f32's unit roundoff.
 */
import ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import { ElemType, buildModel, type NodeSpec } from "../../convert/onnx";
import { Random } from "./random";
import { bits, floats, instantiateRaw, put, scoped, type RawMemory } from "./raw-abi";

const f32 = Math.fround;
const U = 2 ** -24;

interface Text extends RawMemory {
  gatherRows(table: number, rows: number, width: number, ids: number, count: number, y: number): number;
  gatherRowsI8(...args: number[]): number;
  layerNorm(x: number, rows: number, width: number, gamma: number, beta: number, eps: number, y: number): void;
  softmaxRows(x: number, rows: number, width: number, mask: number, maskStride: number, y: number): void;
  gelu(x: number, count: number, mode: number, y: number): void;
  erf(x: number, count: number, y: number): void;
  tanhRows(x: number, count: number, y: number): void;
  batchedMatMul(...args: number[]): void;
  batchedMatMulStrided(...args: number[]): void;
  addBias(x: number, rows: number, width: number, bias: number, y: number): void;
  meanPoolMasked(x: number, batch: number, seq: number, width: number, mask: number, y: number): void;
}

let k: Text;
beforeAll(async () => {
  k = await instantiateRaw<Text>();
});



const normals = (r: Random, n: number, sd = 1, mean = 0) =>
  Float32Array.from({ length: n }, () => mean + sd * r.normal());

/** Widths that exercise every tail (not multiples of 4) and the MiniLM size. */
const WIDTHS = [1, 2, 3, 5, 7, 31, 33, 64, 127, 384, 385];

/** Largest |got − want| / bound over all elements; ≤ 1 passes. */
function worstRatio(got: Float32Array, want: ArrayLike<number>, bound: (i: number) => number) {
  let worst = 0;
  let at = -1;
  for (let i = 0; i < got.length; i++) {
    const r = Math.abs(got[i]! - want[i]!) / bound(i);
    if (!(r <= worst)) {
      worst = r;
      at = i;
    }
  }
  return { worst, at };
}

function expectWithin(
  got: Float32Array,
  want: ArrayLike<number>,
  bound: (i: number) => number,
  label: string,
) {
  const { worst, at } = worstRatio(got, want, bound);
  if (process.env.PRINT_WORST) console.log(`${label}: worst ${worst.toFixed(3)} of the bound`);
  expect(worst, `${label}: [${at}] got ${got[at]} want ${want[at]} bound ${bound(at)}`).toBeLessThanOrEqual(1);
}

// ---- float64 references ----

/** erf in float64 to ~1e-15: Taylor series below 3, Lentz's continued fraction for erfc above. */
function erf64(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  return Math.sign(x) * (1 - erfc64(a));
}

/** erfc for x ≥ 3: e^(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …)))). */
function erfc64(x: number): number {
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (x + f);
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / (x + f);
}

/** 1 + erf(z) without cancellation for z ≤ −3. */
const onePlusErf64 = (z: number) => (z <= -3 ? erfc64(-z) : 1 + erf64(z));

function layerNorm64(x: Float32Array, rows: number, width: number, g: Float32Array, b: Float32Array | null, eps: number) {
  const y = new Float64Array(x.length);
  const scale = new Float64Array(x.length); // |(x − mean)/σ · γ| + |β|, the bound's scale
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let j = 0; j < width; j++) mean += x[r * width + j]!;
    mean /= width;
    let v = 0;
    for (let j = 0; j < width; j++) v += (x[r * width + j]! - mean) ** 2;
    const sd = Math.sqrt(v / width + f32(eps));
    for (let j = 0; j < width; j++) {
      const n = ((x[r * width + j]! - mean) / sd) * g[j]!;
      y[r * width + j] = n + (b ? b[j]! : 0);
      scale[r * width + j] = Math.abs(n) + (b ? Math.abs(b[j]!) : 0);
    }
  }
  return { y, scale };
}

function softmax64(x: Float32Array, rows: number, width: number, mask: Float32Array | null, stride: number) {
  const y = new Float64Array(x.length);
  const spread = new Float64Array(x.length); // |t − max t|
  for (let r = 0; r < rows; r++) {
    // The kernel adds the mask in f32, as ONNX's Add before Softmax does.
    const t = Array.from({ length: width }, (_, j) =>
      mask ? f32(x[r * width + j]! + mask[r * stride + j]!) : x[r * width + j]!,
    );
    const top = Math.max(...t);
    let sum = 0;
    for (let j = 0; j < width; j++) sum += Math.exp(t[j]! - top);
    for (let j = 0; j < width; j++) {
      y[r * width + j] = Math.exp(t[j]! - top) / sum;
      spread[r * width + j] = top - t[j]!;
    }
  }
  return { y, spread };
}

function matMul64(
  a: Float32Array, b: Float32Array, batch: number, m: number, kk: number, n: number, transB: boolean, scale: number,
) {
  const y = new Float64Array(batch * m * n);
  const mag = new Float64Array(batch * m * n); // Σ |a·b| · |scale|
  for (let i = 0; i < batch; i++)
    for (let r = 0; r < m; r++)
      for (let c = 0; c < n; c++) {
        let s = 0;
        let t = 0;
        for (let p = 0; p < kk; p++) {
          const av = a[(i * m + r) * kk + p]!;
          const bv = transB ? b[(i * n + c) * kk + p]! : b[(i * kk + p) * n + c]!;
          s += av * bv;
          t += Math.abs(av * bv);
        }
        y[(i * m + r) * n + c] = s * f32(scale);
        mag[(i * m + r) * n + c] = t * Math.abs(f32(scale));
      }
  return { y, mag };
}

// ---- onnxruntime-node ----

function graph(
  nodes: NodeSpec[],
  inputs: { name: string; dims: number[] }[],
  outDims: number[],
  opset: number,
  initializers: { name: string; dims: number[]; data: Float32Array }[] = [],
): Uint8Array {
  return buildModel(
    nodes,
    inputs.map(({ name, dims }) => ({ name, type: ElemType.FLOAT, dims })),
    [{ name: "y", type: ElemType.FLOAT, dims: outDims }],
    opset,
    initializers.map((i) => ({ ...i, type: ElemType.FLOAT })),
  );
}

async function ortRun(model: Uint8Array, feeds: Record<string, [Float32Array, number[]]>) {
  const session = await ort.InferenceSession.create(model);
  try {
    const out = await session.run(
      Object.fromEntries(Object.entries(feeds).map(([n, [d, dims]]) => [n, new ort.Tensor("float32", d, dims)])),
    );
    return out.y!.data as Float32Array;
  } finally {
    await session.release();
  }
}

// ---- tests ----

describe("gatherRows", () => {
  it("copies rows bit for bit and refuses an out-of-range id before writing", () => {
    const r = new Random(11);
    for (const width of [1, 3, 5, 33, 384]) {
      const rows = r.int(1, 40);
      const table = normals(r, rows * width);
      const ids = Int32Array.from({ length: r.int(1, 17) }, () => r.int(0, rows - 1));
      scoped(k, () => {
        const y = k.allocate(ids.length * width * 4);
        expect(k.gatherRows(put(k, table), rows, width, put(k, ids), ids.length, y)).toBe(0);
        const want = new Float32Array(ids.length * width);
        ids.forEach((id, c) => want.set(table.subarray(id * width, (id + 1) * width), c * width));
        expect(bits(floats(k, y, want.length))).toEqual(bits(want));
      });
    }
    for (const bad of [-1, 10, 2 ** 31 - 1, -(2 ** 31)]) {
      scoped(k, () => {
        const table = normals(r, 10 * 4);
        const ids = Int32Array.of(0, 9, 3, bad, 12);
        const y = put(k, new Float32Array(5 * 4).fill(7));
        expect(k.gatherRows(put(k, table), 10, 4, put(k, ids), 5, y), `id ${bad}`).toBe(4);
        expect(Array.from(floats(k, y, 20)), "nothing written").toEqual(new Array(20).fill(7));
      });
    }
  });

  it("gatherRowsI8 dequantises per row: f32(q · scale[id]), exact", () => {
    const r = new Random(12);
    for (const width of [1, 7, 8, 9, 33, 384]) {
      const rows = r.int(1, 30);
      const table = r.bytes(rows * width, true) as Int8Array;
      const scales = Float32Array.from({ length: rows }, () => f32(0.001 + r.next() * 0.05));
      const ids = Int32Array.from({ length: r.int(1, 9) }, () => r.int(0, rows - 1));
      scoped(k, () => {
        const y = k.allocate(ids.length * width * 4);
        expect(k.gatherRowsI8(put(k, table), put(k, scales), rows, width, put(k, ids), ids.length, y)).toBe(0);
        const want = new Float32Array(ids.length * width);
        ids.forEach((id, c) => {
          for (let j = 0; j < width; j++) want[c * width + j] = f32(table[id * width + j]! * scales[id]!);
        });
        expect(bits(floats(k, y, want.length))).toEqual(bits(want));
        const bad = Int32Array.of(rows);
        expect(k.gatherRowsI8(put(k, table), put(k, scales), rows, width, put(k, bad), 1, y)).toBe(1);
      });
    }
  });
});

describe("layerNorm", () => {
  // Bound: 16u · (|normalised·γ| + |β|) + 16u·|γ|. Each output is four f32 roundings
  // after the statistics (sub, ·inv, ·γ, +β: ≤ 2u relative together) plus inv's error,
  // which the variance sum over four lanes of width/4 terms each carries; with random
  // signs that stays well inside the 16u (≈1e-6) allowed, and the |γ| term covers the
  // mean's absolute error near x ≈ mean. Measured worst: ~0.3 of this bound.
  const bound = (scale: Float64Array, g: Float32Array, width: number) => (i: number) =>
    16 * U * (scale[i]! + Math.abs(g[i % width]!)) + 1e-30;

  it("matches float64 on random shapes, with and without beta", () => {
    const r = new Random(21);
    for (const width of WIDTHS) {
      for (const rows of [1, 7]) {
        const x = normals(r, rows * width, 2, r.normal());
        const g = normals(r, width);
        const b = r.next() < 0.3 ? null : normals(r, width);
        const eps = r.pick([1e-5, 1e-12]);
        const got = scoped(k, () => {
          const y = k.allocate(x.byteLength);
          k.layerNorm(put(k, x), rows, width, put(k, g), b ? put(k, b) : 0, eps, y);
          return floats(k, y, x.length);
        });
        const { y, scale } = layerNorm64(x, rows, width, g, b, eps);
        expectWithin(got, y, bound(scale, g, width), `rows ${rows} width ${width}`);
      }
    }
  });

  it("stays accurate for rows far from zero (two passes, no E[x²] − E[x]²)", () => {
    const r = new Random(22);
    const width = 384;
    const x = normals(r, 2 * width, 1, 1000);
    const g = normals(r, width);
    const got = scoped(k, () => {
      const y = k.allocate(x.byteLength);
      k.layerNorm(put(k, x), 2, width, put(k, g), 0, 1e-5, y);
      return floats(k, y, x.length);
    });
    const { y, scale } = layerNorm64(x, 2, width, g, null, 1e-5);
    // The f32 mean of values near 1000 is off by up to ~width/4·u·1000 ≈ 6e-3·… in the
    // worst case; x − mean then carries an absolute error of a few 1000·u ≈ 6e-5 (σ = 1).
    expectWithin(got, y, (i) => 1e-4 * Math.abs(g[i % width]!) + 16 * U * scale[i]!, "offset 1000");
  });

  it("agrees with onnxruntime-node's LayerNormalization (opset 17, axis -1)", async () => {
    const r = new Random(23);
    for (const [batch, seq, width] of [
      [1, 1, 5],
      [2, 7, 33],
      [1, 9, 384],
    ] as const) {
      const x = normals(r, batch * seq * width, 1.5, 0.3);
      const g = normals(r, width);
      const b = normals(r, width);
      const model = graph(
        [
          {
            op: "LayerNormalization",
            inputs: ["x", "g", "b"],
            outputs: ["y"],
            attributes: { axis: -1, epsilon: { float: 1e-5 } },
          },
        ],
        [{ name: "x", dims: [batch, seq, width] }],
        [batch, seq, width],
        17,
        [
          { name: "g", dims: [width], data: g },
          { name: "b", dims: [width], data: b },
        ],
      );
      const want = await ortRun(model, { x: [x, [batch, seq, width]] });
      const got = scoped(k, () => {
        const y = k.allocate(x.byteLength);
        k.layerNorm(put(k, x), batch * seq, width, put(k, g), put(k, b), 1e-5, y);
        return floats(k, y, x.length);
      });
      // Both are f32 computations of the same formula within ~16u·scale of float64
      // (ORT's one-pass variance included, at this mean/σ): allow twice that.
      const { scale } = layerNorm64(x, batch * seq, width, g, b, 1e-5);
      expectWithin(got, want, (i) => 32 * U * (scale[i]! + Math.abs(g[i % width]!)), `ort ${width}`);
    }
  });
});

describe("softmaxRows", () => {
  // Bound, relative to each output p: exp's ≤ 2u, the f32 rounding of t − max (absolute
  // |t − max|·u in the exponent, so relative |t − max|·u), the four-lane sum of width
  // positive terms (≤ (width/4 + 2)·u) and the final product (u); 2× slack. Outputs
  // below 2^-100 (e^(t − max) under −87.3 flushes to 0) are allowed that absolute error.
  const bound = (y: Float64Array, spread: Float64Array, width: number) => (i: number) =>
    y[i] === 0 ? 2 ** -100 : 2 * (4 + spread[i]! + width / 4 + 2) * U * y[i]! + 2 ** -100;

  it("matches float64 with no mask, a shared mask row and a mask per row", () => {
    const r = new Random(31);
    for (const width of WIDTHS) {
      for (const rows of [1, 7]) {
        for (const kind of ["none", "shared", "per-row"] as const) {
          const x = normals(r, rows * width, 3);
          const stride = kind === "per-row" ? width : 0;
          const mask =
            kind === "none"
              ? null
              : Float32Array.from({ length: kind === "shared" ? width : rows * width }, (_, j) =>
                  j % width === 0 ? 0 : r.pick([0, 0, 0, -10000, -Infinity, -3.5]),
                );
          const got = scoped(k, () => {
            const y = k.allocate(x.byteLength);
            k.softmaxRows(put(k, x), rows, width, mask ? put(k, mask) : 0, stride, y);
            return floats(k, y, x.length);
          });
          const { y, spread } = softmax64(x, rows, width, mask, stride);
          expectWithin(got, y, bound(y, spread, width), `${kind} rows ${rows} width ${width}`);
        }
      }
    }
  });

  it("is stable for large logits, gives zeros for an all −Inf row and NaN for a NaN", () => {
    const x = Float32Array.of(1000, 999, -1000, 88, 1e30, 1e30, 0, 0, 1, 2, NaN, 3);
    const mask = Float32Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -Infinity, -Infinity, -Infinity, -Infinity);
    const got = scoped(k, () => {
      const y = k.allocate(16 * 4);
      k.softmaxRows(put(k, x), 3, 4, 0, 0, y);
      k.softmaxRows(put(k, Float32Array.of(1, 2, 3, 4)), 1, 4, put(k, mask.subarray(12)), 0, y + 48);
      return floats(k, y, 16);
    });
    const e = Math.exp(-1);
    expect(got[0]).toBeCloseTo(1 / (1 + e), 6);
    expect(got[1]).toBeCloseTo(e / (1 + e), 6);
    expect(got[2]).toBe(0);
    expect(Array.from(got.subarray(4, 8))).toEqual([0.5, 0.5, 0, 0]);
    expect(got.subarray(8, 12).every(Number.isNaN)).toBe(true);
    expect(Array.from(got.subarray(12, 16))).toEqual([0, 0, 0, 0]);
  });

  it("agrees with onnxruntime-node's Add (mask) + Softmax (opset 13, axis -1)", async () => {
    const r = new Random(32);
    for (const [heads, seq] of [
      [1, 1],
      [3, 7],
      [12, 33],
    ] as const) {
      const x = normals(r, heads * seq * seq, 4);
      const mask = Float32Array.from({ length: seq }, (_, j) => (j > 0 && j >= seq - 2 ? -10000 : 0));
      const model = graph(
        [
          { op: "Add", inputs: ["x", "m"], outputs: ["t"] },
          { op: "Softmax", inputs: ["t"], outputs: ["y"], attributes: { axis: -1 } },
        ],
        [{ name: "x", dims: [heads, seq, seq] }],
        [heads, seq, seq],
        13,
        [{ name: "m", dims: [1, 1, seq], data: mask }],
      );
      const want = await ortRun(model, { x: [x, [heads, seq, seq]] });
      const got = scoped(k, () => {
        const y = k.allocate(x.byteLength);
        k.softmaxRows(put(k, x), heads * seq, seq, put(k, mask), 0, y);
        return floats(k, y, x.length);
      });
      const { y, spread } = softmax64(x, heads * seq, seq, mask, 0);
      // Two f32 computations each within the bound above of float64: twice the bound.
      const b = bound(y, spread, seq);
      expectWithin(got, want, (i) => 2 * b(i), `ort ${heads}×${seq}`);
    }
  });
});

describe("erf, tanh and gelu", () => {
  const grid = () => {
    const v: number[] = [0, -0, 1e-30, -1e-30, 1e-8, 0.5, 1, -1, 0.9999999, 1.0000001, 3.9, 4, 10, 12, 1e30];
    for (let x = -12; x <= 12; x += 1 / 512) v.push(x);
    const r = new Random(41);
    for (let i = 0; i < 4000; i++) v.push(r.normal() * 3);
    return Float32Array.from(v.flatMap((x) => [x, -x]));
  };
  const run = (fn: (x: number, n: number, y: number) => void, x: Float32Array) =>
    scoped(k, () => {
      const y = k.allocate(x.byteLength);
      fn(put(k, x), x.length, y);
      return floats(k, y, x.length);
    });

  it("erf is within 3e-7 relative of float64 (|x| < 1: polynomial; else 1 − erfc)", () => {
    const x = grid();
    const got = run((p, n, y) => k.erf(p, n, y), x);
    // 3e-7 ≈ 5u: the polynomial fits to 1.3e-9 (f64), its f32 evaluation adds ~3u;
    // above 1, erf ≥ 0.84 and 1 − erfc is within ~1u of 1's ulp. Tiny x: erf ≈ 1.128·x.
    expectWithin(got, Array.from(x, erf64), (i) => 3e-7 * Math.abs(erf64(x[i]!)) + 1e-45, "erf");
    const special = run((p, n, y) => k.erf(p, n, y), Float32Array.of(Infinity, -Infinity, NaN));
    expect(Array.from(special.subarray(0, 2))).toEqual([1, -1]);
    expect(Number.isNaN(special[2])).toBe(true);
  });

  it("tanh is within 3e-7 relative of float64", () => {
    const x = grid();
    const got = run((p, n, y) => k.tanhRows(p, n, y), x);
    // |x| < 0.625: polynomial (1.7e-10 in f64) in f32, ~3u; above, 1 − 2/(e^2x + 1) loses
    // at most a factor ~2 to cancellation at 0.625 on top of exp's 2u.
    expectWithin(got, Array.from(x, Math.tanh), (i) => 3e-7 * Math.abs(Math.tanh(x[i]!)) + 1e-45, "tanh");
  });

  it("gelu (erf) is within 1e-6 relative of float64, also far into the negative tail", () => {
    const x = grid();
    const got = run((p, n, y) => k.gelu(p, n, 0, y), x);
    const want = Array.from(x, (v) => 0.5 * v * onePlusErf64(f32(v * f32(Math.SQRT1_2))));
    // The reference takes z = f32(x·f32(1/√2)) as the kernel does (ORT's Gelu also
    // multiplies by M_SQRT1_2 in f32). 1e-6 ≈ 17u: erfc(|z|) for z < −1 is e^(−z²)·Q/z
    // with e^(−z²) taken from an exact s² (≤ 2u), Q to 1.5u, three products; 1 + erf
    // near 0 ~3u. Below z ≈ −9.3, e^(−z²) is under f32's normals and flushes to 0:
    // an absolute 1e-37.
    expectWithin(got, want, (i) => 1e-6 * Math.abs(want[i]!) + 1e-37, "gelu erf");
  });

  it("gelu (tanh) is within 1e-6 relative of float64", () => {
    const x = grid();
    const got = run((p, n, y) => k.gelu(p, n, 1, y), x);
    const c = Math.sqrt(2 / Math.PI);
    const want = Array.from(x, (v) => (v === Infinity ? v : v / (1 + Math.exp(-2 * c * (v + 0.044715 * v ** 3)))));
    // x / (1 + e^(−2u)): the cube, u and exp in f32. u carries ~4 roundings (≤ 4u
    // relative), so the exponent 2u is off by up to 8|u|·u in absolute terms, which
    // is that much relative error in e^(−2u) and in the result where e^(−2u) ≫ 1 (the
    // far negative tail, where ORT's tanh form has the same argument error); plus 16u.
    const arg = (v: number) => Math.abs(c * (v + 0.044715 * v ** 3));
    expectWithin(got, want, (i) => (8 * arg(x[i]!) + 16) * U * Math.abs(want[i]!) + 1e-37, "gelu tanh");
  });

  it("agrees with onnxruntime-node's Erf and the exporter's Erf-based GELU subgraph", async () => {
    const r = new Random(42);
    const n = 3 * 7 * 37;
    const x = normals(r, n, 3);
    const erfModel = graph([{ op: "Erf", inputs: ["x"], outputs: ["y"] }], [{ name: "x", dims: [n] }], [n], 13);
    const wantErf = await ortRun(erfModel, { x: [x, [n]] });
    const gotErf = run((p, c, y) => k.erf(p, c, y), x);
    // ORT's Erf (MLAS) is itself an f32 approximation of ~1 ulp: allow 4e-7 relative.
    expectWithin(gotErf, wantErf, (i) => 4e-7 * Math.abs(wantErf[i]!) + 1e-38, "ort Erf");

    // torch.onnx.export's nn.GELU(): Div(√2), Erf, Add(1), Mul(x), Mul(0.5).
    const geluModel = graph(
      [
        { op: "Div", inputs: ["x", "sqrt2"], outputs: ["d"] },
        { op: "Erf", inputs: ["d"], outputs: ["e"] },
        { op: "Add", inputs: ["e", "one"], outputs: ["a"] },
        { op: "Mul", inputs: ["x", "a"], outputs: ["m"] },
        { op: "Mul", inputs: ["m", "half"], outputs: ["y"] },
      ],
      [{ name: "x", dims: [3, 7, 37] }],
      [3, 7, 37],
      13,
      [
        { name: "sqrt2", dims: [], data: Float32Array.of(Math.SQRT2) },
        { name: "one", dims: [], data: Float32Array.of(1) },
        { name: "half", dims: [], data: Float32Array.of(0.5) },
      ],
    );
    const wantGelu = await ortRun(geluModel, { x: [x, [3, 7, 37]] });
    const gotGelu = run((p, c, y) => k.gelu(p, c, 0, y), x);
    // The subgraph divides by f32(√2) where the kernel multiplies by f32(1/√2) (≤ 1u in
    // z), and forms 1 + erf, which loses relative accuracy where erf ≈ −1: there the
    // subgraph's absolute error is ~u (an ulp of erf near −1) times 0.5·|x|.
    expectWithin(
      gotGelu,
      wantGelu,
      (i) => 2e-6 * Math.abs(wantGelu[i]!) + 0.5 * Math.abs(x[i]!) * 2 * U,
      "ort GELU subgraph",
    );
  });
});

describe("gelu against the opset-20 Gelu op", () => {
  it("agrees with onnxruntime-node's Gelu (approximate none)", async () => {
    const r = new Random(43);
    const n = 5 * 77;
    const x = Float32Array.from({ length: n }, () => 4 * r.normal());
    const model = graph([{ op: "Gelu", inputs: ["x"], outputs: ["y"] }], [{ name: "x", dims: [n] }], [n], 20);
    const want = await ortRun(model, { x: [x, [n]] });
    const got = scoped(k, () => {
      const y = k.allocate(x.byteLength);
      k.gelu(put(k, x), n, 0, y);
      return floats(k, y, n);
    });
    // ORT forms 0.5·x·(1 + erf(x·M_SQRT1_2)) in f32: within our 1e-6 relative of float64
    // plus its own 0.5·|x|·2u absolute from 1 + erf near erf ≈ −1.
    expectWithin(got, want, (i) => 2e-6 * Math.abs(want[i]!) + 0.5 * Math.abs(x[i]!) * 2 * U, "ort Gelu-20");
  });
});

describe("batchedMatMul", () => {
  // Bound: |scale·Σ a·b − y| ≤ (k + 2)·u·|scale|·Σ|a·b| (the standard forward error of
  // a k-term f32 dot product, any summation order, plus the product with scale).
  const bound = (mag: Float64Array, kk: number) => (i: number) => (kk + 2) * U * mag[i]! + 1e-38;

  it("matches float64 on random shapes, plain and with B transposed", () => {
    const r = new Random(51);
    const dims = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 32, 33];
    for (let c = 0; c < 80; c++) {
      const batch = r.int(1, 3);
      const m = c < 4 ? [1, 7, 1, 7][c]! : r.pick(dims);
      const kk = r.pick(dims);
      const n = r.pick(dims);
      const transB = c % 2 === 1;
      const scale = r.pick([1, 0.17677669529663687, -2.5]);
      const a = normals(r, batch * m * kk);
      const b = normals(r, batch * kk * n);
      const got = scoped(k, () => {
        const y = k.allocate(batch * m * n * 4);
        k.batchedMatMul(put(k, a), put(k, b), batch, m, kk, n, transB ? 1 : 0, scale, y);
        return floats(k, y, batch * m * n);
      });
      const { y, mag } = matMul64(a, b, batch, m, kk, n, transB, scale);
      expectWithin(got, y, bound(mag, kk), `${batch}×${m}×${kk}×${n} transB ${transB}`);
    }
  });

  it("reads heads in place (strided) with the same bits as on split copies", () => {
    const r = new Random(52);
    const seq = 7;
    const heads = 3;
    const hd = 5;
    const d = heads * hd;
    const q = normals(r, seq * d);
    const kx = normals(r, seq * d);
    const split = (x: Float32Array) => {
      const out = new Float32Array(x.length);
      for (let h = 0; h < heads; h++)
        for (let s = 0; s < seq; s++)
          for (let j = 0; j < hd; j++) out[(h * seq + s) * hd + j] = x[s * d + h * hd + j]!;
      return out;
    };
    scoped(k, () => {
      const y1 = k.allocate(heads * seq * seq * 4);
      const y2 = k.allocate(heads * seq * seq * 4);
      k.batchedMatMul(put(k, split(q)), put(k, split(kx)), heads, seq, hd, seq, 1, 0.5, y1);
      k.batchedMatMulStrided(put(k, q), d, hd, put(k, kx), d, hd, heads, seq, hd, seq, 1, 0.5, y2, seq, seq * seq);
      expect(bits(floats(k, y2, heads * seq * seq))).toEqual(bits(floats(k, y1, heads * seq * seq)));
    });
  });

  it("agrees with onnxruntime-node's 3-D MatMul of two inputs (and with Transpose for Kᵀ)", async () => {
    const r = new Random(53);
    for (const [batch, m, kk, n] of [
      [1, 1, 1, 1],
      [2, 7, 5, 3],
      [12, 9, 32, 9],
      [4, 13, 13, 32],
    ] as const) {
      const a = normals(r, batch * m * kk);
      const b = normals(r, batch * kk * n);
      const bt = normals(r, batch * n * kk);
      const plain = graph(
        [{ op: "MatMul", inputs: ["a", "b"], outputs: ["y"] }],
        [
          { name: "a", dims: [batch, m, kk] },
          { name: "b", dims: [batch, kk, n] },
        ],
        [batch, m, n],
        13,
      );
      const transposed = graph(
        [
          { op: "Transpose", inputs: ["b"], outputs: ["t"], attributes: { perm: [0, 2, 1] } },
          { op: "MatMul", inputs: ["a", "t"], outputs: ["y"] },
        ],
        [
          { name: "a", dims: [batch, m, kk] },
          { name: "b", dims: [batch, n, kk] },
        ],
        [batch, m, n],
        13,
      );
      for (const [model, bx, transB] of [
        [plain, b, false],
        [transposed, bt, true],
      ] as const) {
        const want = await ortRun(model, { a: [a, [batch, m, kk]], b: [bx, transB ? [batch, n, kk] : [batch, kk, n]] });
        const got = scoped(k, () => {
          const y = k.allocate(batch * m * n * 4);
          k.batchedMatMul(put(k, a), put(k, bx), batch, m, kk, n, transB ? 1 : 0, 1, y);
          return floats(k, y, batch * m * n);
        });
        const { mag } = matMul64(a, bx, batch, m, kk, n, transB, 1);
        const b1 = bound(mag, kk);
        // Both within the bound of float64: twice the bound between them.
        expectWithin(got, want, (i) => 2 * b1(i), `ort ${batch}×${m}×${kk}×${n} transB ${transB}`);
      }
    }
  });
});

describe("addBias and meanPoolMasked", () => {
  it("addBias is f32(x + bias), bit for bit", () => {
    const r = new Random(61);
    for (const width of WIDTHS)
      for (const rows of [1, 7]) {
        const x = normals(r, rows * width);
        const b = normals(r, width);
        const got = scoped(k, () => {
          const y = k.allocate(x.byteLength);
          k.addBias(put(k, x), rows, width, put(k, b), y);
          return floats(k, y, x.length);
        });
        expect(bits(got)).toEqual(bits(Float32Array.from(x, (v, i) => v + b[i % width]!)));
      }
  });

  it("meanPoolMasked averages the positions the mask keeps (or all), ignoring masked garbage", () => {
    const r = new Random(62);
    for (const width of [1, 3, 33, 384])
      for (const batch of [1, 3])
        for (const useMask of [false, true]) {
          const seq = r.int(1, 12);
          const x = normals(r, batch * seq * width);
          const mask = Float32Array.from({ length: batch * seq }, (_, i) => (i % seq === 0 || r.next() < 0.6 ? 1 : 0));
          // Masked positions may hold anything (even NaN): they are never read into the sum.
          if (useMask) mask.forEach((m, i) => m === 0 && x.fill(NaN, i * width, (i + 1) * width));
          const got = scoped(k, () => {
            const y = k.allocate(batch * width * 4);
            k.meanPoolMasked(put(k, x), batch, seq, width, useMask ? put(k, mask) : 0, y);
            return floats(k, y, batch * width);
          });
          const want = new Float64Array(batch * width);
          const mag = new Float64Array(batch * width);
          for (let b = 0; b < batch; b++) {
            let count = 0;
            for (let s = 0; s < seq; s++) {
              const w = useMask ? mask[b * seq + s]! : 1;
              if (w === 0) continue;
              count += w;
              for (let j = 0; j < width; j++) {
                want[b * width + j]! += x[(b * seq + s) * width + j]!;
                mag[b * width + j]! += Math.abs(x[(b * seq + s) * width + j]!);
              }
            }
            for (let j = 0; j < width; j++) {
              want[b * width + j]! /= count;
              mag[b * width + j]! /= count;
            }
          }
          // A seq-term f32 sum then one division: (seq + 1)·u·mean|x|.
          expectWithin(got, want, (i) => (seq + 1) * U * mag[i]! + 1e-38, `${batch}×${seq}×${width} mask ${useMask}`);
        }
    // An all-zero mask row gives zeros (divided by max(0, 1e-9)), not NaN.
    const got = scoped(k, () => {
      const y = k.allocate(8);
      k.meanPoolMasked(put(k, Float32Array.of(1, 2, 3, 4)), 1, 2, 2, put(k, Float32Array.of(0, 0)), y);
      return floats(k, y, 2);
    });
    expect(Array.from(got)).toEqual([0, 0]);
  });
});
