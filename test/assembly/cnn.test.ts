/**
 * The convolutional-network kernels (assembly/conv.ts, pool.ts,
 * elementwise.ts), called through the flat ABI of the built module, against
 * plain JS references of ONNX semantics written here in NCHW and transposed
 * to the kernels' NHWC, on random shapes (stride 2, asymmetric padding, 1×1,
 * kernel 5, odd sizes, c not a multiple of 4, batch 1 and 7). `convInt8` is
 * bit-exact against the exact quantised computation (DynamicQuantizeLinear
 * per sample, integer convolution, f32 dequantisation in the kernel's op
 * order), within quantisation error of onnxruntime-node's fp32 Conv, and
 * gives a sample the same bits alone and inside a batch of 7.
 */
import ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import { oneNodeModel } from "../../scripts/lib/onnx-node-model";
import { Random } from "./random";
import { bits, floats, instantiateRaw, put, scoped, type RawMemory } from "./raw-abi";
import { referenceDynamicQuantize } from "./reference";

const f32 = Math.fround;

/** The exports used here (pointers and sizes are plain numbers). */
interface Cnn extends RawMemory {
  packColumns(b: number, k: number, n: number, signed: number, zp: number, perColumn: number, out: number): void;
  packedBytes(k: number, n: number): number;
  convInt8ScratchBytes(...args: number[]): number;
  convInt8(...args: number[]): number;
  depthwiseConv(...args: number[]): void;
  maxPool(...args: number[]): void;
  averagePool(...args: number[]): void;
  globalAveragePool(x: number, batch: number, hw: number, c: number, y: number): void;
  activate(x: number, count: number, act: number, p0: number, p1: number, y: number): void;
  add(a: number, b: number, count: number, act: number, p0: number, p1: number, y: number): void;
  mul(a: number, b: number, count: number, y: number): void;
  mulChannels(x: number, gate: number, batch: number, hw: number, c: number, y: number): void;
  concatChannels(a: number, ca: number, b: number, cb: number, batch: number, hw: number, y: number): void;
  nchwToNhwc(x: number, batch: number, c: number, hw: number, y: number): void;
  nhwcToNchw(x: number, batch: number, c: number, hw: number, y: number): void;
}

let k: Cnn;
beforeAll(async () => {
  k = await instantiateRaw<Cnn>();
});



// ---- layouts ----

function toNhwc(x: Float32Array, batch: number, c: number, hw: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let b = 0; b < batch; b++)
    for (let ch = 0; ch < c; ch++)
      for (let p = 0; p < hw; p++) y[(b * hw + p) * c + ch] = x[(b * c + ch) * hw + p]!;
  return y;
}

function toNchw(x: Float32Array, batch: number, c: number, hw: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let b = 0; b < batch; b++)
    for (let ch = 0; ch < c; ch++)
      for (let p = 0; p < hw; p++) y[(b * c + ch) * hw + p] = x[(b * hw + p) * c + ch]!;
  return y;
}

// ---- activations (the kernels' contract, f32 step by step) ----

type Act = [code: number, p0: number, p1: number];
const ACTS: Act[] = [
  [0, 0, 0],
  [1, 0, 0],
  [2, 0, 6],
  [2, -0.5, 0.75],
  [3, 0, 0],
  [4, 0.2, 0.5],
  [5, 0, 0],
];

function act(v: number, [code, p0, p1]: Act): number {
  switch (code) {
    case 1:
      return v > 0 ? v : 0;
    case 2:
      return Math.min(Math.max(v, f32(p0)), f32(p1));
    case 3:
      return f32(f32(v * Math.min(Math.max(f32(v + 3), 0), 6)) / 6);
    case 4:
      return Math.max(0, Math.min(1, f32(f32(f32(p0) * v) + f32(p1))));
    case 5:
      return f32(1 / (1 + Math.exp(-v)));
    default:
      return v;
  }
}

/** Bit-exact, except sigmoid (the kernel's exp is f32 Mathf.exp): within 2 ulp-ish. */
function expectActivated(got: Float32Array, want: Float32Array, a: Act, label: string) {
  if (a[0] !== 5) {
    expect(bits(got), label).toEqual(bits(want));
    return;
  }
  for (let i = 0; i < got.length; i++) {
    expect(Math.abs(got[i]! - want[i]!), `${label} [${i}]`).toBeLessThanOrEqual(3e-7);
  }
}

// ---- random shapes ----

interface Shape {
  batch: number;
  h: number;
  w: number;
  c: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  pt: number;
  pl: number;
  pb: number;
  pr: number;
  outH: number;
  outW: number;
}

function randomShape(rng: Random, opts: { c?: number[]; k?: number[]; batch?: number[] } = {}): Shape {
  for (;;) {
    const kh = rng.pick(opts.k ?? [1, 1, 2, 3, 3, 5]);
    const kw = rng.next() < 0.8 ? kh : rng.pick([1, 3, 5]);
    const h = rng.int(1, 13);
    const w = rng.next() < 0.7 ? h : rng.int(1, 13);
    const sh = rng.pick([1, 2]);
    const sw = rng.next() < 0.8 ? sh : rng.pick([1, 2]);
    const pad = (kk: number) => (rng.next() < 0.3 ? 0 : rng.int(0, kk - 1));
    const [pt, pb, pl, pr] = [pad(kh), pad(kh), pad(kw), pad(kw)];
    if (h + pt + pb < kh || w + pl + pr < kw) continue;
    const outH = Math.floor((h + pt + pb - kh) / sh) + 1;
    const outW = Math.floor((w + pl + pr - kw) / sw) + 1;
    const c = rng.pick(opts.c ?? [1, 2, 3, 4, 5, 7, 8, 12, 16, 17, 24, 33]);
    const batch = rng.pick(opts.batch ?? [1, 1, 2, 7]);
    return { batch, h, w, c, kh, kw, sh, sw, pt, pl, pb, pr, outH, outW };
  }
}

const describeShape = (s: Shape) =>
  `b${s.batch} ${s.h}×${s.w}×${s.c} k${s.kh}×${s.kw} s${s.sh},${s.sw} pads ${s.pt},${s.pl},${s.pb},${s.pr} → ${s.outH}×${s.outW}`;

function randomInput(rng: Random, n: number): Float32Array {
  const scale = rng.pick([1, 0.01, 30]);
  const shift = rng.pick([0, 0, 0.5, -0.7]);
  return Float32Array.from({ length: n }, () => (rng.normal() + shift) * scale);
}

// ---- references (NCHW, ONNX semantics) ----

/**
 * Visits a window's valid taps for output (oy, ox): calls `tap(iy, ix, ky, kx)`
 * in (ky, kx) order.
 */
function window(
  s: Shape,
  oy: number,
  ox: number,
  tap: (iy: number, ix: number, ky: number, kx: number) => void,
) {
  for (let ky = 0; ky < s.kh; ky++) {
    const iy = oy * s.sh - s.pt + ky;
    if (iy < 0 || iy >= s.h) continue;
    for (let kx = 0; kx < s.kw; kx++) {
      const ix = ox * s.sw - s.pl + kx;
      if (ix < 0 || ix >= s.w) continue;
      tap(iy, ix, ky, kx);
    }
  }
}

/**
 * The exact quantised convolution: per sample DynamicQuantizeLinear, integer
 * sums over (q − zp)·W (padding contributes 0), then
 * act(f32(acc) · f32(scale · wScale) + bias). `x` NCHW, `w` [cout, c, kh, kw]
 * int8; returns NCHW and each sample's scale.
 */
function referenceConvInt8(
  s: Shape,
  x: Float32Array,
  w: Int8Array,
  cout: number,
  wScales: Float32Array,
  bias: Float32Array | undefined,
  a: Act,
) {
  const plane = s.h * s.w;
  const y = new Float32Array(s.batch * cout * s.outH * s.outW);
  const scales: number[] = [];
  for (let b = 0; b < s.batch; b++) {
    const sample = x.subarray(b * s.c * plane, (b + 1) * s.c * plane);
    const { y: q, scale, zeroPoint } = referenceDynamicQuantize(sample);
    scales.push(scale);
    for (let co = 0; co < cout; co++) {
      const multiplier = f32(scale * wScales[co]!);
      for (let oy = 0; oy < s.outH; oy++) {
        for (let ox = 0; ox < s.outW; ox++) {
          let acc = 0;
          window(s, oy, ox, (iy, ix, ky, kx) => {
            for (let ci = 0; ci < s.c; ci++) {
              acc +=
                (q[ci * plane + iy * s.w + ix]! - zeroPoint) *
                w[((co * s.c + ci) * s.kh + ky) * s.kw + kx]!;
            }
          });
          let v = f32(f32(acc) * multiplier);
          if (bias) v = f32(v + bias[co]!);
          y[((b * cout + co) * s.outH + oy) * s.outW + ox] = act(v, a);
        }
      }
    }
  }
  return { y, scales };
}

/** Depthwise conv, f32: act(Σ x·w over valid taps in (ky, kx) order + bias). `w` [c, 1, kh, kw]. */
function referenceDepthwise(
  s: Shape,
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | undefined,
  a: Act,
) {
  const plane = s.h * s.w;
  const y = new Float32Array(s.batch * s.c * s.outH * s.outW);
  for (let b = 0; b < s.batch; b++)
    for (let ch = 0; ch < s.c; ch++)
      for (let oy = 0; oy < s.outH; oy++)
        for (let ox = 0; ox < s.outW; ox++) {
          let acc = 0;
          window(s, oy, ox, (iy, ix, ky, kx) => {
            acc = f32(
              acc +
                f32(x[(b * s.c + ch) * plane + iy * s.w + ix]! * w[(ch * s.kh + ky) * s.kw + kx]!),
            );
          });
          if (bias) acc = f32(acc + bias[ch]!);
          y[((b * s.c + ch) * s.outH + oy) * s.outW + ox] = act(acc, a);
        }
  return y;
}

function referencePool(s: Shape, x: Float32Array, kind: "max" | "avg", countIncludePad: boolean) {
  const plane = s.h * s.w;
  const y = new Float32Array(s.batch * s.c * s.outH * s.outW);
  for (let b = 0; b < s.batch; b++)
    for (let ch = 0; ch < s.c; ch++)
      for (let oy = 0; oy < s.outH; oy++)
        for (let ox = 0; ox < s.outW; ox++) {
          let acc = kind === "max" ? -Infinity : 0;
          let count = 0;
          window(s, oy, ox, (iy, ix) => {
            const v = x[(b * s.c + ch) * plane + iy * s.w + ix]!;
            acc = kind === "max" ? Math.max(acc, v) : f32(acc + v);
            count++;
          });
          if (kind === "avg") acc = f32(acc / (countIncludePad ? s.kh * s.kw : count));
          y[((b * s.c + ch) * s.outH + oy) * s.outW + ox] = acc;
        }
  return y;
}

// ---- the kernels through the ABI ----

/** K×N (K = (ky·kw + kx)·c + ci) from ONNX's [cout, c, kh, kw]. */
function weightsKN(s: Shape, w: Int8Array, cout: number): Int8Array {
  const out = new Int8Array(s.kh * s.kw * s.c * cout);
  for (let co = 0; co < cout; co++)
    for (let ci = 0; ci < s.c; ci++)
      for (let ky = 0; ky < s.kh; ky++)
        for (let kx = 0; kx < s.kw; kx++)
          out[((ky * s.kw + kx) * s.c + ci) * cout + co] = w[((co * s.c + ci) * s.kh + ky) * s.kw + kx]!;
  return out;
}

function runConvInt8(
  s: Shape,
  xNhwc: Float32Array,
  w: Int8Array,
  cout: number,
  wScales: Float32Array,
  bias: Float32Array | undefined,
  [code, p0, p1]: Act,
): { status: number; y: Float32Array } {
  return scoped(k, () => {
    const kk = s.kh * s.kw * s.c;
    const packed = k.allocate(k.packedBytes(kk, cout));
    k.packColumns(put(k, weightsKN(s, w, cout)), kk, cout, 1, put(k, Int8Array.of(0)), 0, packed);
    const n = s.batch * s.outH * s.outW * cout;
    const y = k.allocate(n * 4);
    const scratch = k.allocate(
      k.convInt8ScratchBytes(s.h, s.w, s.c, s.kh, s.kw, s.outH, s.outW, cout),
    );
    const status = k.convInt8(
      put(k, xNhwc),
      s.batch,
      s.h,
      s.w,
      s.c,
      s.kh,
      s.kw,
      s.sh,
      s.sw,
      s.pt,
      s.pl,
      s.outH,
      s.outW,
      packed,
      cout,
      put(k, wScales),
      bias ? put(k, bias) : 0,
      code,
      p0,
      p1,
      y,
      scratch,
    );
    return { status, y: floats(k, y, n) };
  });
}

function runDepthwise(
  s: Shape,
  xNhwc: Float32Array,
  w: Float32Array,
  bias: Float32Array | undefined,
  [code, p0, p1]: Act,
) {
  return scoped(k, () => {
    // Tap-major, channel fastest, from ONNX's [c, 1, kh, kw].
    const taps = new Float32Array(s.kh * s.kw * s.c);
    for (let ch = 0; ch < s.c; ch++)
      for (let t = 0; t < s.kh * s.kw; t++) taps[t * s.c + ch] = w[ch * s.kh * s.kw + t]!;
    const n = s.batch * s.outH * s.outW * s.c;
    const y = k.allocate(n * 4);
    k.depthwiseConv(
      put(k, xNhwc),
      s.batch,
      s.h,
      s.w,
      s.c,
      s.kh,
      s.kw,
      s.sh,
      s.sw,
      s.pt,
      s.pl,
      s.outH,
      s.outW,
      put(k, taps),
      bias ? put(k, bias) : 0,
      code,
      p0,
      p1,
      y,
    );
    return floats(k, y, n);
  });
}

function runPool(s: Shape, xNhwc: Float32Array, kind: "max" | "avg", countIncludePad: boolean) {
  return scoped(k, () => {
    const n = s.batch * s.outH * s.outW * s.c;
    const y = k.allocate(n * 4);
    const args = [xNhwc, s.batch, s.h, s.w, s.c, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, s.outH, s.outW];
    const [x, ...rest] = args as [Float32Array, ...number[]];
    if (kind === "max") k.maxPool(put(k, x), ...rest, y);
    else k.averagePool(put(k, x), ...rest, countIncludePad ? 1 : 0, y);
    return floats(k, y, n);
  });
}

// ---- onnxruntime-node graphs ----

async function ortRun(model: Uint8Array, x: Float32Array, dims: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model);
  try {
    const out = await session.run({ x: new ort.Tensor("float32", x, dims) });
    return out.y!.data as Float32Array;
  } finally {
    await session.release();
  }
}

const windowAttributes = (s: Shape) => ({
  kernel_shape: [s.kh, s.kw],
  strides: [s.sh, s.sw],
  pads: [s.pt, s.pl, s.pb, s.pr],
});

// ---- tests ----

describe("convInt8", () => {
  it("equals the exact quantised convolution bit for bit on 150 random shapes", () => {
    const rng = new Random(7001);
    for (let i = 0; i < 150; i++) {
      const s = randomShape(rng);
      const cout = rng.pick([1, 3, 8, 13, 16, 24, 33]);
      const x = randomInput(rng, s.batch * s.c * s.h * s.w);
      const w = rng.bytes(cout * s.c * s.kh * s.kw, true) as Int8Array;
      const wScales = Float32Array.from({ length: cout }, () => 0.0005 + rng.next() * 0.02);
      const bias =
        rng.next() < 0.2
          ? undefined
          : Float32Array.from({ length: cout }, () => rng.normal() * 0.3);
      const a = rng.pick(ACTS);
      const got = runConvInt8(s, toNhwc(x, s.batch, s.c, s.h * s.w), w, cout, wScales, bias, a);
      const want = referenceConvInt8(s, x, w, cout, wScales, bias, a).y;
      const label = `case ${i}: ${describeShape(s)} cout ${cout} act ${a[0]}`;
      expect(got.status, label).toBe(0);
      expectActivated(got.y, toNhwc(want, s.batch, cout, s.outH * s.outW), a, label);
    }
  });

  it("covers the 1×1 direct path and larger images (tiles of output pixels)", () => {
    const rng = new Random(99);
    for (let i = 0; i < 12; i++) {
      const side = rng.pick([9, 11, 16, 23]);
      const pointwise = i % 2 === 0;
      const s: Shape = {
        batch: rng.pick([1, 3]),
        h: side,
        w: side + (i % 3),
        c: rng.pick([3, 8, 16, 21]),
        kh: pointwise ? 1 : 3,
        kw: pointwise ? 1 : 3,
        sh: 1,
        sw: 1,
        pt: pointwise ? 0 : 1,
        pl: pointwise ? 0 : 1,
        pb: pointwise ? 0 : 1,
        pr: pointwise ? 0 : 1,
        outH: side,
        outW: side + (i % 3),
      };
      const cout = rng.pick([8, 16, 17, 40]);
      const x = randomInput(rng, s.batch * s.c * s.h * s.w);
      const w = rng.bytes(cout * s.c * s.kh * s.kw, true) as Int8Array;
      const wScales = Float32Array.from({ length: cout }, () => 0.001 + rng.next() * 0.01);
      const bias = Float32Array.from({ length: cout }, () => rng.normal());
      const a: Act = [1, 0, 0];
      const got = runConvInt8(s, toNhwc(x, s.batch, s.c, s.h * s.w), w, cout, wScales, bias, a);
      const want = referenceConvInt8(s, x, w, cout, wScales, bias, a).y;
      expect(bits(got.y), describeShape(s)).toEqual(
        bits(toNhwc(want, s.batch, cout, s.outH * s.outW)),
      );
    }
  });

  it("covers the gather path (thin K: c 1–4, zero-padded image) on random shapes, bit for bit", () => {
    // K ≤ 128 with pads below the kernel takes the gather im2col; larger pads and
    // strides past the kernel (windows skipping rows) are mixed in, as are images
    // past one 64-pixel tile, odd tile tails and 1×1 kernels that are not direct.
    const rng = new Random(31337);
    for (let i = 0; i < 80; i++) {
      const kh = rng.pick([1, 2, 3, 3, 5, 7]);
      const kw = rng.next() < 0.7 ? kh : rng.pick([1, 3, 5]);
      const h = rng.int(1, 30);
      const w = rng.next() < 0.6 ? h : rng.int(1, 30);
      const sh = rng.pick([1, 1, 2, 3]);
      const sw = rng.next() < 0.7 ? sh : rng.pick([1, 2, 3]);
      const pad = (kk: number) => (rng.next() < 0.15 ? rng.int(kk, kk + 2) : rng.int(0, kk - 1));
      const [pt, pb, pl, pr] = [pad(kh), pad(kh), pad(kw), pad(kw)];
      if (h + pt + pb < kh || w + pl + pr < kw) continue;
      const s: Shape = {
        batch: rng.pick([1, 1, 3]),
        h,
        w,
        c: rng.pick([1, 2, 3, 4]),
        kh,
        kw,
        sh,
        sw,
        pt,
        pl,
        pb,
        pr,
        outH: Math.floor((h + pt + pb - kh) / sh) + 1,
        outW: Math.floor((w + pl + pr - kw) / sw) + 1,
      };
      const cout = rng.pick([1, 4, 8, 13, 16, 32]);
      const x = randomInput(rng, s.batch * s.c * s.h * s.w);
      const w8 = rng.bytes(cout * s.c * s.kh * s.kw, true) as Int8Array;
      const wScales = Float32Array.from({ length: cout }, () => 0.0005 + rng.next() * 0.02);
      const bias =
        rng.next() < 0.3 ? undefined : Float32Array.from({ length: cout }, () => rng.normal());
      const a = rng.pick(ACTS);
      const got = runConvInt8(s, toNhwc(x, s.batch, s.c, s.h * s.w), w8, cout, wScales, bias, a);
      const want = referenceConvInt8(s, x, w8, cout, wScales, bias, a).y;
      const label = `case ${i}: ${describeShape(s)} cout ${cout} act ${a[0]}`;
      expect(got.status, label).toBe(0);
      expectActivated(got.y, toNhwc(want, s.batch, cout, s.outH * s.outW), a, label);
    }
  });

  it("gives a sample the same bits alone and inside a batch of 7", () => {
    const rng = new Random(4242);
    for (let i = 0; i < 10; i++) {
      const s = { ...randomShape(rng), batch: 7 };
      const cout = rng.pick([5, 16, 24]);
      // Samples of very different ranges, so a per-batch scale would show.
      const x = Float32Array.from({ length: 7 * s.c * s.h * s.w }, (_, j) => {
        const sample = Math.floor(j / (s.c * s.h * s.w));
        return rng.normal() * (sample + 1) ** 3;
      });
      const w = rng.bytes(cout * s.c * s.kh * s.kw, true) as Int8Array;
      const wScales = Float32Array.from({ length: cout }, () => 0.001 + rng.next() * 0.01);
      const bias = Float32Array.from({ length: cout }, () => rng.normal());
      const nhwc = toNhwc(x, 7, s.c, s.h * s.w);
      const batch = runConvInt8(s, nhwc, w, cout, wScales, bias, [0, 0, 0]).y;
      const per = s.outH * s.outW * cout;
      const sampleIn = s.h * s.w * s.c;
      for (let b = 0; b < 7; b++) {
        const alone = runConvInt8(
          { ...s, batch: 1 },
          nhwc.subarray(b * sampleIn, (b + 1) * sampleIn),
          w,
          cout,
          wScales,
          bias,
          [0, 0, 0],
        ).y;
        expect(bits(alone), `${describeShape(s)} sample ${b}`).toEqual(
          bits(batch.subarray(b * per, (b + 1) * per)),
        );
      }
    }
  });

  it("refuses NaN and ±Inf", () => {
    const s = randomShape(new Random(3), { batch: [1] });
    for (const bad of [NaN, Infinity, -Infinity]) {
      const x = new Float32Array(s.h * s.w * s.c).fill(0.5);
      x[x.length - 1] = bad;
      const w = new Int8Array(s.c * s.kh * s.kw).fill(1);
      const got = runConvInt8(s, x, w, 1, Float32Array.of(0.01), undefined, [0, 0, 0]);
      expect(got.status).toBe(1);
    }
  });

  it("is within quantisation error of onnxruntime-node's fp32 Conv", async () => {
    const rng = new Random(515);
    for (let i = 0; i < 40; i++) {
      const s = randomShape(rng);
      const cout = rng.pick([1, 4, 8, 13, 16]);
      const x = randomInput(rng, s.batch * s.c * s.h * s.w);
      const w = rng.bytes(cout * s.c * s.kh * s.kw, true) as Int8Array;
      const wScales = Float32Array.from({ length: cout }, () => 0.001 + rng.next() * 0.02);
      const bias = Float32Array.from({ length: cout }, () => rng.normal() * 0.3);
      const wf = Float32Array.from(
        w,
        (v, j) => v * wScales[Math.floor(j / (s.c * s.kh * s.kw))]!,
      );
      const model = oneNodeModel(
        "Conv",
        [{ name: "x", dims: [s.batch, s.c, s.h, s.w] }],
        [
          { name: "w", dims: [cout, s.c, s.kh, s.kw], data: wf },
          { name: "b", dims: [cout], data: bias },
        ],
        { ...windowAttributes(s), group: 1 },
      );
      const want = await ortRun(model, x, [s.batch, s.c, s.h, s.w]);
      const got = toNchw(
        runConvInt8(s, toNhwc(x, s.batch, s.c, s.h * s.w), w, cout, wScales, bias, [0, 0, 0]).y,
        s.batch,
        cout,
        s.outH * s.outW,
      );
      const { scales } = referenceConvInt8(s, x, w, cout, wScales, bias, [0, 0, 0]);
      const taps = s.c * s.kh * s.kw;
      const outPlane = s.outH * s.outW;
      for (let j = 0; j < got.length; j++) {
        const b = Math.floor(j / (cout * outPlane));
        const co = Math.floor(j / outPlane) % cout;
        let l1 = 0;
        for (let t = 0; t < taps; t++) l1 += Math.abs(wf[co * taps + t]!);
        // Each input is off by at most half a quantisation step; f32 sums add a little.
        const bound = 0.5 * scales[b]! * l1 * 1.001 + 1e-5 * (1 + Math.abs(want[j]!));
        expect(Math.abs(got[j]! - want[j]!), `case ${i} ${describeShape(s)} [${j}]`).toBeLessThanOrEqual(bound);
      }
    }
  });
});

describe("depthwiseConv", () => {
  it("equals the f32 reference on 120 random shapes", () => {
    const rng = new Random(808);
    for (let i = 0; i < 120; i++) {
      const s = randomShape(rng, { c: [1, 3, 4, 5, 7, 16, 19, 32, 35] });
      const x = randomInput(rng, s.batch * s.c * s.h * s.w);
      const w = Float32Array.from({ length: s.c * s.kh * s.kw }, () => rng.normal());
      const bias = rng.next() < 0.2 ? undefined : Float32Array.from({ length: s.c }, () => rng.normal());
      const a = rng.pick(ACTS);
      const got = runDepthwise(s, toNhwc(x, s.batch, s.c, s.h * s.w), w, bias, a);
      const want = toNhwc(referenceDepthwise(s, x, w, bias, a), s.batch, s.c, s.outH * s.outW);
      expectActivated(got, want, a, `case ${i}: ${describeShape(s)} act ${a[0]}`);
    }
  });

  it("matches onnxruntime-node's Conv with group = c", async () => {
    const rng = new Random(909);
    for (let i = 0; i < 30; i++) {
      const s = randomShape(rng, { c: [1, 3, 5, 8, 17, 32] });
      const x = randomInput(rng, s.batch * s.c * s.h * s.w);
      const w = Float32Array.from({ length: s.c * s.kh * s.kw }, () => rng.normal());
      const bias = Float32Array.from({ length: s.c }, () => rng.normal());
      const model = oneNodeModel(
        "Conv",
        [{ name: "x", dims: [s.batch, s.c, s.h, s.w] }],
        [
          { name: "w", dims: [s.c, 1, s.kh, s.kw], data: w },
          { name: "b", dims: [s.c], data: bias },
        ],
        { ...windowAttributes(s), group: s.c },
      );
      const want = await ortRun(model, x, [s.batch, s.c, s.h, s.w]);
      const got = toNchw(
        runDepthwise(s, toNhwc(x, s.batch, s.c, s.h * s.w), w, bias, [0, 0, 0]),
        s.batch,
        s.c,
        s.outH * s.outW,
      );
      const scale = Math.max(...Array.from(x, Math.abs)) * 25;
      for (let j = 0; j < got.length; j++) {
        expect(Math.abs(got[j]! - want[j]!), `case ${i} ${describeShape(s)}`).toBeLessThanOrEqual(
          1e-5 * scale + 1e-6,
        );
      }
    }
  });
});

describe("pooling", () => {
  it("maxPool and averagePool equal the reference on random shapes", () => {
    const rng = new Random(2718);
    for (let i = 0; i < 120; i++) {
      const s = randomShape(rng, { k: [1, 2, 3, 5] });
      const x = randomInput(rng, s.batch * s.c * s.h * s.w);
      const kind = rng.pick(["max", "avg"] as const);
      const include = kind === "avg" && rng.next() < 0.5;
      const got = runPool(s, toNhwc(x, s.batch, s.c, s.h * s.w), kind, include);
      const want = toNhwc(referencePool(s, x, kind, include), s.batch, s.c, s.outH * s.outW);
      expect(bits(got), `case ${i}: ${kind} ${include} ${describeShape(s)}`).toEqual(bits(want));
    }
  });

  it("maxPool's 2×2 path (windows inside, c % 4 == 0) equals the reference, -0 and +0 included", () => {
    const rng = new Random(1618);
    for (let i = 0; i < 40; i++) {
      const [sh, sw] = [rng.pick([1, 2, 2, 3]), rng.pick([1, 2, 2, 3])];
      const [h, w] = [rng.int(2, 14), rng.int(2, 14)];
      const s: Shape = {
        batch: rng.pick([1, 2, 5]),
        h,
        w,
        c: rng.pick([4, 8, 12, 16, 32]),
        kh: 2,
        kw: 2,
        sh,
        sw,
        pt: 0,
        pl: 0,
        pb: 0,
        pr: 0,
        outH: Math.floor((h - 2) / sh) + 1,
        outW: Math.floor((w - 2) / sw) + 1,
      };
      // Some signed zeros and repeated values, where max's rules matter.
      const x = randomInput(rng, s.batch * s.c * s.h * s.w).map((v, j) =>
        j % 7 === 0 ? (j % 2 ? -0 : 0) : j % 5 === 0 ? 1.5 : v,
      );
      const got = runPool(s, toNhwc(x, s.batch, s.c, s.h * s.w), "max", false);
      const want = toNhwc(referencePool(s, x, "max", false), s.batch, s.c, s.outH * s.outW);
      expect(bits(got), `case ${i}: ${describeShape(s)}`).toEqual(bits(want));
    }
  });

  it("match onnxruntime-node's MaxPool and AveragePool", async () => {
    const rng = new Random(31415);
    for (let i = 0; i < 30; i++) {
      const s = randomShape(rng, { k: [2, 3, 5] });
      const x = randomInput(rng, s.batch * s.c * s.h * s.w);
      const kind = i % 3 === 0 ? "max" : "avg";
      const include = i % 3 === 2;
      const model = oneNodeModel(
        kind === "max" ? "MaxPool" : "AveragePool",
        [{ name: "x", dims: [s.batch, s.c, s.h, s.w] }],
        [],
        kind === "max" ? windowAttributes(s) : { ...windowAttributes(s), count_include_pad: include ? 1 : 0 },
      );
      const want = await ortRun(model, x, [s.batch, s.c, s.h, s.w]);
      const got = toNchw(runPool(s, toNhwc(x, s.batch, s.c, s.h * s.w), kind, include), s.batch, s.c, s.outH * s.outW);
      for (let j = 0; j < got.length; j++) {
        expect(Math.abs(got[j]! - want[j]!), `case ${i} ${kind} ${describeShape(s)}`).toBeLessThanOrEqual(
          1e-6 * (1 + Math.abs(want[j]!)),
        );
      }
    }
  });

  it("globalAveragePool sums pixel by pixel and divides by hw", () => {
    const rng = new Random(1618);
    for (let i = 0; i < 40; i++) {
      const batch = rng.pick([1, 2, 7]);
      const hw = rng.int(1, 70);
      const c = rng.pick([1, 3, 4, 7, 16, 20, 33, 64]);
      const x = randomInput(rng, batch * hw * c);
      const want = new Float32Array(batch * c);
      for (let b = 0; b < batch; b++)
        for (let ch = 0; ch < c; ch++) {
          let acc = 0;
          for (let p = 0; p < hw; p++) acc = f32(acc + x[(b * hw + p) * c + ch]!);
          want[b * c + ch] = f32(acc / hw);
        }
      const got = scoped(k, () => {
        const y = k.allocate(batch * c * 4);
        k.globalAveragePool(put(k, x), batch, hw, c, y);
        return floats(k, y, batch * c);
      });
      expect(bits(got), `${batch}×${hw}×${c}`).toEqual(bits(want));
    }
  });
});

describe("elementwise", () => {
  it("activate, add, mul on odd counts, in place too", () => {
    const rng = new Random(77);
    for (let i = 0; i < 40; i++) {
      const n = rng.int(1, 67);
      const a = randomInput(rng, n);
      const b = randomInput(rng, n);
      const act1 = rng.pick(ACTS);
      scoped(k, () => {
        const pa = put(k, a);
        const pb = put(k, b);
        const y = k.allocate(n * 4);
        k.activate(pa, n, act1[0], act1[1], act1[2], y);
        expectActivated(floats(k, y, n), a.map((v) => act(v, act1)), act1, `activate ${act1}`);
        k.add(pa, pb, n, act1[0], act1[1], act1[2], y);
        expectActivated(
          floats(k, y, n),
          a.map((v, j) => act(f32(v + b[j]!), act1)),
          act1,
          `add ${act1}`,
        );
        k.mul(pa, pb, n, y);
        expect(bits(floats(k, y, n))).toEqual(bits(a.map((v, j) => f32(v * b[j]!))));
        k.activate(pa, n, act1[0], act1[1], act1[2], pa); // in place
        expectActivated(floats(k, pa, n), a.map((v) => act(v, act1)), act1, `in place ${act1}`);
      });
    }
  });

  it("mulChannels gates every pixel of a sample by that sample's channel vector", () => {
    const rng = new Random(12);
    for (let i = 0; i < 30; i++) {
      const [batch, hw, c] = [rng.pick([1, 7]), rng.int(1, 20), rng.pick([1, 3, 4, 6, 16, 19])];
      const x = randomInput(rng, batch * hw * c);
      const gate = Float32Array.from({ length: batch * c }, () => rng.next());
      const want = x.map((v, j) => {
        const b = Math.floor(j / (hw * c));
        return f32(v * gate[b * c + (j % c)]!);
      });
      const got = scoped(k, () => {
        const y = k.allocate(x.length * 4);
        k.mulChannels(put(k, x), put(k, gate), batch, hw, c, y);
        return floats(k, y, x.length);
      });
      expect(bits(got)).toEqual(bits(want));
    }
  });

  it("concatChannels joins two tensors pixel by pixel", () => {
    const rng = new Random(13);
    for (let i = 0; i < 30; i++) {
      const [batch, hw, ca, cb] = [rng.pick([1, 7]), rng.int(1, 20), rng.int(1, 9), rng.int(1, 9)];
      const a = randomInput(rng, batch * hw * ca);
      const b = randomInput(rng, batch * hw * cb);
      const want = new Float32Array(batch * hw * (ca + cb));
      for (let p = 0; p < batch * hw; p++) {
        want.set(a.subarray(p * ca, (p + 1) * ca), p * (ca + cb));
        want.set(b.subarray(p * cb, (p + 1) * cb), p * (ca + cb) + ca);
      }
      const got = scoped(k, () => {
        const y = k.allocate(want.length * 4);
        k.concatChannels(put(k, a), ca, put(k, b), cb, batch, hw, y);
        return floats(k, y, want.length);
      });
      expect(bits(got)).toEqual(bits(want));
    }
  });

  it("nchwToNhwc and nhwcToNchw transpose and invert each other", () => {
    const rng = new Random(14);
    for (let i = 0; i < 40; i++) {
      // The first ten: one or three planes (grey and RGB images have their own paths).
      const c = i < 10 ? [1, 3][i % 2]! : rng.int(1, 19);
      const [batch, hw] = [rng.pick([1, 2, 7]), rng.int(1, 40)];
      const x = randomInput(rng, batch * c * hw);
      scoped(k, () => {
        const px = put(k, x);
        const y = k.allocate(x.length * 4);
        const back = k.allocate(x.length * 4);
        k.nchwToNhwc(px, batch, c, hw, y);
        expect(bits(floats(k, y, x.length))).toEqual(bits(toNhwc(x, batch, c, hw)));
        k.nhwcToNchw(y, batch, c, hw, back);
        expect(bits(floats(k, back, x.length))).toEqual(bits(x));
      });
    }
  });
});
