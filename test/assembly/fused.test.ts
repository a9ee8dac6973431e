/**
 * The fused int8 layer (dynamic quantisation per row → int8 GEMM → per-channel
 * dequantisation → bias → ReLU) against two references: the plain TypeScript
 * oracle, and onnxruntime-web running the equivalent ONNX graph node by node
 * (DynamicQuantizeLinear → MatMulInteger → Cast → Mul(a_scale·w_scale) → Add → Relu,
 * graph optimisations off) on each row alone, since ONNX's DynamicQuantizeLinear
 * has one range per tensor. Both comparisons are bit-exact.
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { Int8Kernels } from "../../core/runtimes/int8/kernels";
import { loadKernels } from "../../scripts/lib/kernels-node";
import { ElemType, buildModel, ort, session } from "../../scripts/lib/onnx-graph";
import { Random } from "./random";
import { referenceDynamicQuantize, referenceFusedLinear } from "./reference";

let kernels: Int8Kernels;
beforeAll(async () => {
  kernels = await loadKernels("release");
});

interface Layer {
  m: number;
  k: number;
  n: number;
  x: Float32Array;
  w: Int8Array;
  wScales: Float32Array;
  bias: Float32Array;
  activation: "none" | "relu";
}

function randomLayer(rng: Random): Layer {
  const m = rng.pick([1, 2, 3, 4, 5, 8, 17, 64]);
  const k = rng.pick([1, 3, 8, 9, 16, 31, 64, 100, 128]);
  const n = rng.pick([1, 2, 3, 5, 8, 10, 13, 64, 128]);
  const scale = rng.pick([1, 1e-3, 50]);
  return {
    m,
    k,
    n,
    x: Float32Array.from({ length: m * k }, () => rng.normal() * scale),
    w: rng.bytes(k * n, true) as Int8Array,
    wScales: Float32Array.from({ length: n }, () => 0.0005 + rng.next() * 0.02),
    bias: Float32Array.from({ length: n }, () => rng.normal() * 0.1),
    activation: rng.next() < 0.5 ? "relu" : "none",
  };
}

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

describe("fused int8 layer", () => {
  it("equals the TypeScript oracle bit for bit on 200 random layers", () => {
    const rng = new Random(2024);
    for (let i = 0; i < 200; i++) {
      const l = randomLayer(rng);
      const packed = kernels.packWeights(l.w, l.k, l.n);
      const bias = i % 5 === 0 ? undefined : l.bias;
      const got = kernels.fusedLinear(l.x, l.m, packed, l.wScales, bias, l.activation);
      const want = referenceFusedLinear(l.x, l.m, l.k, l.w, l.n, l.wScales, bias, l.activation);
      expect(bits(got), `layer ${i}: ${l.m}x${l.k}x${l.n} ${l.activation}`).toEqual(bits(want));
      kernels.reset();
    }
  });

  it("quantises activations as the oracle does", () => {
    const rng = new Random(5);
    for (let i = 0; i < 50; i++) {
      const x = Float32Array.from({ length: rng.int(1, 300) }, () => rng.normal() * 4);
      const got = kernels.dynamicQuantizeLinear(x);
      const want = referenceDynamicQuantize(x);
      expect(got.scale).toBe(want.scale);
      expect(got.zeroPoint).toBe(want.zeroPoint);
      expect(Array.from(got.y)).toEqual(Array.from(want.y));
    }
  });

  it("equals onnxruntime-web running the equivalent quantised ONNX graph", async () => {
    const graph = await session(
      buildModel(
        [
          { op: "DynamicQuantizeLinear", inputs: ["x"], outputs: ["xq", "x_scale", "x_zp"] },
          { op: "MatMulInteger", inputs: ["xq", "w", "x_zp", "w_zp"], outputs: ["acc"] },
          { op: "Cast", inputs: ["acc"], outputs: ["acc_f"], attributes: { to: ElemType.FLOAT } },
          { op: "Mul", inputs: ["x_scale", "w_scale"], outputs: ["scale"] },
          { op: "Mul", inputs: ["acc_f", "scale"], outputs: ["scaled"] },
          { op: "Add", inputs: ["scaled", "bias"], outputs: ["biased"] },
          { op: "Relu", inputs: ["biased"], outputs: ["y"] },
        ],
        [
          { name: "x", type: ElemType.FLOAT, dims: ["M", "K"] },
          { name: "w", type: ElemType.INT8, dims: ["K", "N"] },
          { name: "w_zp", type: ElemType.INT8, dims: [] },
          { name: "w_scale", type: ElemType.FLOAT, dims: ["N"] },
          { name: "bias", type: ElemType.FLOAT, dims: ["N"] },
        ],
        [{ name: "y", type: ElemType.FLOAT, dims: ["M", "N"] }],
      ),
    );
    const rng = new Random(31337);
    for (let i = 0; i < 60; i++) {
      const l = { ...randomLayer(rng), activation: "relu" as const };
      const expected = new Float32Array(l.m * l.n);
      for (let r = 0; r < l.m; r++) {
        const row = await graph.run({
          x: new ort.Tensor("float32", l.x.slice(r * l.k, (r + 1) * l.k), [1, l.k]),
          w: new ort.Tensor("int8", l.w, [l.k, l.n]),
          w_zp: new ort.Tensor("int8", Int8Array.of(0), []),
          w_scale: new ort.Tensor("float32", l.wScales, [l.n]),
          bias: new ort.Tensor("float32", l.bias, [l.n]),
        });
        expected.set(row.y!.data as Float32Array, r * l.n);
      }
      const packed = kernels.packWeights(l.w, l.k, l.n);
      const got = kernels.fusedLinear(l.x, l.m, packed, l.wScales, l.bias, "relu");
      expect(bits(got), `layer ${i}: ${l.m}x${l.k}x${l.n}`).toEqual(bits(expected));
      kernels.reset();
    }
  });

  it("gives each row the same bits alone as inside a batch of 100", () => {
    const rng = new Random(100);
    for (let i = 0; i < 20; i++) {
      const { k, n, w, wScales, bias, activation } = randomLayer(rng);
      const m = 100;
      // Rows of very different magnitudes: one shared range would crush the small ones.
      const x = Float32Array.from({ length: m * k }, (_, j) => rng.normal() * 10 ** ((j / k) % 5 | 0));
      const packed = kernels.packWeights(w, k, n);
      const batch = kernels.fusedLinear(x, m, packed, wScales, bias, activation);
      for (let r = 0; r < m; r++) {
        const alone = kernels.fusedLinear(x.subarray(r * k, (r + 1) * k), 1, packed, wScales, bias, activation);
        expect(bits(batch.subarray(r * n, (r + 1) * n)), `layer ${i} ${k}x${n} row ${r}`).toEqual(
          bits(alone),
        );
      }
      kernels.reset();
    }
  });

  it("multiplies against packed weights exactly as MatMulInteger does", () => {
    const rng = new Random(11);
    for (let i = 0; i < 40; i++) {
      const { m, k, n, w } = randomLayer(rng);
      const a = rng.bytes(m * k, false) as Uint8Array;
      const zp = rng.int(0, 255);
      const packed = kernels.packWeights(w, k, n);
      expect(Array.from(kernels.matMulPacked(a, m, zp, packed))).toEqual(
        Array.from(kernels.matMulInteger(a, w, m, k, n, zp, 0)),
      );
      kernels.reset();
    }
  });

  it("refuses non-finite activations and leaves memory reusable", () => {
    const packed = kernels.packWeights(new Int8Array(6).fill(1), 3, 2);
    const scales = Float32Array.of(0.1, 0.2);
    expect(() =>
      kernels.fusedLinear(Float32Array.of(1, NaN, 3), 1, packed, scales, undefined, "relu"),
    ).toThrow(/NaN or infinite/);
    // In a group of four rows, and in a row left over after one.
    for (const [at, bad] of [
      [7, NaN],
      [2, -Infinity],
      [14, Infinity],
    ] as const) {
      const x = Float32Array.from({ length: 15 }, (_, i) => i);
      x[at] = bad;
      expect(() => kernels.fusedLinear(x, 5, packed, scales, undefined, "none"), `${bad}`).toThrow(
        /NaN or infinite/,
      );
    }
    const ok = kernels.fusedLinear(Float32Array.of(1, 2, 3), 1, packed, scales, undefined, "none");
    expect(ok).toHaveLength(2);
    kernels.reset();
  });
});
