/**
 * Randomised comparison of the int8 kernels with onnxruntime-web (in Node)
 * running the same one-node ONNX graphs: MatMulInteger, QLinearMatMul and
 * DynamicQuantizeLinear over many shapes (odd K and N, M = 1), zero points and
 * value distributions, including the extremes. Every case must match exactly.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { PinionError } from "../../core/errors";
import type { Bytes, Int8Kernels } from "../../core/runtimes/int8/kernels";
import { loadKernels } from "../../scripts/lib/kernels-node";
import { ElemType, buildModel, ort, session } from "../../scripts/lib/onnx-graph";
import { Random } from "./random";

const SHAPES_M = [1, 2, 3, 4, 5, 7, 8, 13, 32];
const SHAPES_K = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 130];
// N covers full 16-column panels, a last 8-column panel and partial ones of each.
const SHAPES_N = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 24, 33, 40, 64];

const elem = (signed: boolean) => (signed ? ElemType.INT8 : ElemType.UINT8);
const ortType = (signed: boolean) => (signed ? "int8" : "uint8");
const tensor = (data: Bytes, dims: number[]) =>
  new ort.Tensor(ortType(data instanceof Int8Array), data, dims);

let kernels: Int8Kernels;
beforeAll(async () => {
  kernels = await loadKernels("release");
});

describe("MatMulInteger versus onnxruntime-web", () => {
  const models = new Map<string, Promise<ort.InferenceSession>>();
  function model(bSigned: boolean, perColumn: boolean) {
    const key = `${bSigned}-${perColumn}`;
    if (!models.has(key)) {
      models.set(
        key,
        session(
          buildModel(
            [{ op: "MatMulInteger", inputs: ["A", "B", "a_zp", "b_zp"], outputs: ["Y"] }],
            [
              { name: "A", type: ElemType.UINT8, dims: ["M", "K"] },
              { name: "B", type: elem(bSigned), dims: ["K", "N"] },
              { name: "a_zp", type: ElemType.UINT8, dims: [] },
              { name: "b_zp", type: elem(bSigned), dims: perColumn ? ["N"] : [] },
            ],
            [{ name: "Y", type: ElemType.INT32, dims: ["M", "N"] }],
            10,
          ),
        ),
      );
    }
    return models.get(key)!;
  }

  it("matches on 150 random shapes, signed and unsigned B, per-tensor and per-column zero points", async () => {
    const rng = new Random(1234);
    let checked = 0;
    for (let i = 0; i < 150; i++) {
      const [m, k, n] = [rng.pick(SHAPES_M), rng.pick(SHAPES_K), rng.pick(SHAPES_N)];
      const bSigned = rng.next() < 0.6;
      const perColumn = rng.next() < 0.3;
      const a = rng.bytes(m * k, false) as Uint8Array;
      const b = rng.bytes(k * n, bSigned);
      const aZp = rng.int(0, 255);
      const bZp = perColumn ? rng.bytes(n, bSigned) : rng.bytes(1, bSigned);
      const s = await model(bSigned, perColumn);
      const expected = await s.run({
        A: tensor(a, [m, k]),
        B: tensor(b, [k, n]),
        a_zp: tensor(Uint8Array.of(aZp), []),
        b_zp: tensor(bZp, perColumn ? [n] : []),
      });
      const got = kernels.matMulInteger(a, b, m, k, n, aZp, perColumn ? Array.from(bZp) : bZp[0]!);
      expect(Array.from(got), `case ${i}: ${m}x${k}x${n}`).toEqual(
        Array.from(expected.Y!.data as Int32Array),
      );
      checked++;
    }
    expect(checked).toBe(150);
  });

  it("matches at the extremes: saturated values, all-equal inputs, K = 784, M = 1", async () => {
    const cases: [
      string,
      number,
      number,
      number,
      (i: number) => number,
      (i: number) => number,
      number,
      number,
    ][] = [
      ["max × min", 3, 17, 5, () => 255, () => -128, 0, 0],
      ["max × max with zero points", 2, 33, 3, () => 255, () => 127, 255, -128],
      ["all equal", 4, 9, 7, () => 77, () => 77, 77, 77],
      ["zeros", 1, 5, 1, () => 0, () => 0, 0, 0],
      ["wide K, M = 1", 1, 784, 10, (i) => (i * 37) % 256, (i) => ((i * 91) % 256) - 128, 128, 3],
      ["K = 1", 5, 1, 9, (i) => i * 50, (i) => i * 13 - 60, 10, -5],
    ];
    for (const [label, m, k, n, fa, fb, aZp, bZp] of cases) {
      const a = Uint8Array.from({ length: m * k }, (_, i) => fa(i));
      const b = Int8Array.from({ length: k * n }, (_, i) => fb(i));
      const expected = await (
        await model(true, false)
      ).run({
        A: tensor(a, [m, k]),
        B: tensor(b, [k, n]),
        a_zp: tensor(Uint8Array.of(aZp), []),
        b_zp: tensor(Int8Array.of(bZp), []),
      });
      expect(Array.from(kernels.matMulInteger(a, b, m, k, n, aZp, bZp)), label).toEqual(
        Array.from(expected.Y!.data as Int32Array),
      );
    }
  });
});

describe("QLinearMatMul versus onnxruntime-web", () => {
  const models = new Map<boolean, Promise<ort.InferenceSession>>();
  function model(bSigned: boolean) {
    if (!models.has(bSigned)) {
      models.set(
        bSigned,
        session(
          buildModel(
            [
              {
                op: "QLinearMatMul",
                inputs: ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"],
                outputs: ["y"],
              },
            ],
            [
              { name: "a", type: ElemType.UINT8, dims: ["M", "K"] },
              { name: "a_scale", type: ElemType.FLOAT, dims: [] },
              { name: "a_zp", type: ElemType.UINT8, dims: [] },
              { name: "b", type: elem(bSigned), dims: ["K", "N"] },
              { name: "b_scale", type: ElemType.FLOAT, dims: [] },
              { name: "b_zp", type: elem(bSigned), dims: [] },
              { name: "y_scale", type: ElemType.FLOAT, dims: [] },
              { name: "y_zp", type: ElemType.UINT8, dims: [] },
            ],
            [{ name: "y", type: ElemType.UINT8, dims: ["M", "N"] }],
            10,
          ),
        ),
      );
    }
    return models.get(bSigned)!;
  }

  it("matches on 150 random cases, including saturating output scales", async () => {
    const rng = new Random(99);
    let saturated = 0;
    for (let i = 0; i < 150; i++) {
      const [m, k, n] = [rng.pick(SHAPES_M), rng.pick(SHAPES_K), rng.pick(SHAPES_N)];
      const bSigned = rng.next() < 0.5;
      const a = rng.bytes(m * k, false) as Uint8Array;
      const b = rng.bytes(k * n, bSigned);
      const aScale = Math.fround(0.001 + rng.next() * 0.05);
      const bScale = Math.fround(0.001 + rng.next() * 0.05);
      // Sometimes far too small an output scale, so results saturate at 0 and 255.
      const yScale = Math.fround(
        rng.next() < 0.2 ? 1e-6 : aScale * bScale * Math.sqrt(k) * (20 + rng.next() * 200),
      );
      const aZp = rng.int(0, 255);
      const bZp = bSigned ? rng.int(-128, 127) : rng.int(0, 255);
      const yZp = rng.int(0, 255);
      const expected = await (
        await model(bSigned)
      ).run({
        a: tensor(a, [m, k]),
        a_scale: new ort.Tensor("float32", Float32Array.of(aScale), []),
        a_zp: tensor(Uint8Array.of(aZp), []),
        b: tensor(b, [k, n]),
        b_scale: new ort.Tensor("float32", Float32Array.of(bScale), []),
        b_zp: tensor(bSigned ? Int8Array.of(bZp) : Uint8Array.of(bZp), []),
        y_scale: new ort.Tensor("float32", Float32Array.of(yScale), []),
        y_zp: tensor(Uint8Array.of(yZp), []),
      });
      const want = Array.from(expected.y!.data as Uint8Array);
      const got = kernels.qlinearMatMul(
        a,
        aScale,
        aZp,
        b,
        bScale,
        bZp,
        yScale,
        yZp,
        false,
        m,
        k,
        n,
      );
      expect(Array.from(got), `case ${i}: ${m}x${k}x${n}`).toEqual(want);
      if (want.some((v) => v === 0 || v === 255)) saturated++;
    }
    expect(saturated).toBeGreaterThan(20);
  });
});

describe("DynamicQuantizeLinear versus onnxruntime-web", () => {
  let dql: ort.InferenceSession;
  beforeAll(async () => {
    dql = await session(
      buildModel(
        [{ op: "DynamicQuantizeLinear", inputs: ["x"], outputs: ["y", "y_scale", "y_zero_point"] }],
        [{ name: "x", type: ElemType.FLOAT, dims: ["N"] }],
        [
          { name: "y", type: ElemType.UINT8, dims: ["N"] },
          { name: "y_scale", type: ElemType.FLOAT, dims: [] },
          { name: "y_zero_point", type: ElemType.UINT8, dims: [] },
        ],
        11,
      ),
    );
  });

  async function compare(label: string, x: Float32Array) {
    const expected = await dql.run({ x: new ort.Tensor("float32", x, [x.length]) });
    const got = kernels.dynamicQuantizeLinear(x);
    expect(Array.from(got.y), `${label}: y`).toEqual(Array.from(expected.y!.data as Uint8Array));
    expect(got.scale, `${label}: scale`).toBe((expected.y_scale!.data as Float32Array)[0]);
    expect(got.zeroPoint, `${label}: zero point`).toBe(
      (expected.y_zero_point!.data as Uint8Array)[0],
    );
  }

  it("matches on random distributions and lengths", async () => {
    const rng = new Random(7);
    const distributions: [string, () => number][] = [
      ["normal", () => rng.normal()],
      ["positive", () => rng.next() * 10],
      ["negative", () => -rng.next() * 3],
      ["wide", () => rng.normal() * 1e6],
      ["tiny", () => rng.normal() * 1e-30],
      ["skewed", () => rng.next() * 100 - 1],
      ["halves", () => rng.int(-255, 255) / 2],
    ];
    for (let i = 0; i < 120; i++) {
      const [name, draw] = rng.pick(distributions);
      const n = rng.pick([1, 2, 3, 4, 5, 7, 15, 16, 17, 31, 64, 100, 1000]);
      await compare(`${name} n=${n} #${i}`, Float32Array.from({ length: n }, draw));
    }
  });

  it("matches at the extremes: all equal, all zero, a single value, saturating ranges", async () => {
    await compare("all equal positive", new Float32Array(37).fill(3.25));
    await compare("all equal negative", new Float32Array(20).fill(-0.5));
    await compare("all zero", new Float32Array(16));
    await compare("single", Float32Array.of(-7));
    await compare("float max", Float32Array.of(3.4e38, -3.4e38, 0, 1));
    await compare("denormals", Float32Array.of(1e-45, -1e-45, 3e-45));
    await compare(
      "one outlier",
      Float32Array.from({ length: 33 }, (_, i) => (i === 5 ? 1000 : i / 100)),
    );
  });

  it("refuses NaN and ±Infinity before quantising, in the vector body and the scalar tail", () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (let at = 0; at < 19; at++) {
        const x = Float32Array.from({ length: 19 }, (_, i) => (i === at ? bad : i - 9));
        expect(() => kernels.dynamicQuantizeLinear(x)).toThrow(PinionError);
        expect(() => kernels.dynamicQuantizeLinear(x)).toThrow(/NaN or infinite/);
      }
    }
  });
});
