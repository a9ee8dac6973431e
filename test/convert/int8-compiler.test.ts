import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { compileInt8 } from "../../convert/int8-compiler";
import { linearLayers, linearStackToOnnx, type Activation } from "../../convert/linear-stack";
import { ElemType, buildModel, type Initializer, type NodeSpec } from "../../convert/onnx";
import { readStateDict } from "../../convert/torch-checkpoint";
import { MAX_BLOCK_ROWS, PlanExecutor } from "../../core/runtimes/int8/executor";
import type { Int8Kernels } from "../../core/runtimes/int8/kernels";
import { decodePlanHeader, encodePlan, unpackV1Weights } from "../../core/runtimes/int8/plan";
import { loadKernels } from "../../scripts/lib/kernels-node";
import { ort, session } from "../../scripts/lib/onnx-graph";
import { Random } from "../assembly/random";
import { referencePlan } from "../assembly/reference";

const fixture = (path: string) =>
  new Uint8Array(readFileSync(new URL(`../../fixtures/${path}`, import.meta.url)));
let kernels: Int8Kernels;
beforeAll(async () => {
  kernels = await loadKernels();
});

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

function cosine(a: ArrayLike<number>, b: ArrayLike<number>) {
  let d = 0;
  let x = 0;
  let y = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i]! * b[i]!;
    x += a[i]! ** 2;
    y += b[i]! ** 2;
  }
  return d / Math.sqrt(x * y);
}

describe("int8 compiler", () => {
  it("compiles the digits MLP; MSE-searched clipping never does worse than absmax", () => {
    const outcome = compileInt8(fixture("digits-mlp/digits_mlp.onnx"), kernels);
    if (!outcome.ok) throw new Error(outcome.reason);
    expect(outcome.layers.map((l) => [l.k, l.n, l.activation])).toEqual([
      [64, 128, "relu"],
      [128, 64, "relu"],
      [64, 10, "none"],
    ]);
    for (const layer of outcome.layers) {
      expect(layer.sqnrDb).toBeGreaterThanOrEqual(layer.absmaxSqnrDb);
      expect(layer.sqnrDb).toBeGreaterThan(35);
    }
    expect(decodePlanHeader(outcome.plan).softmax).toBe(false);
  });

  it("says which node stops compilation", () => {
    const model = buildModel(
      [
        { op: "MatMul", inputs: ["x", "W"], outputs: ["h"] },
        { op: "Sin", inputs: ["h"], outputs: ["y"] },
      ],
      [{ name: "x", type: ElemType.FLOAT, dims: ["batch", 4] }],
      [{ name: "y", type: ElemType.FLOAT, dims: ["batch", 4] }],
      13,
      [{ name: "W", type: ElemType.FLOAT, dims: [4, 4], data: new Float32Array(16).fill(0.5) }],
    );
    expect(compileInt8(model, kernels)).toEqual({
      ok: false,
      reason: "node 1 (Sin 'Sin_1') is not a dense layer or a supported activation",
    });
  });

  it("refuses to quantise non-finite weights, naming the tensor", () => {
    const layers = linearLayers(readStateDict(fixture("seed-simple/simple_model.pth")));
    layers[1]!.weight[7] = Infinity;
    layers[1]!.weight[9] = NaN;
    expect(compileInt8(linearStackToOnnx(layers), kernels)).toEqual({
      ok: false,
      reason:
        'int8 cannot quantise non-finite weights: tensor "layer2.weight" holds 2 non-finite ' +
        "values (the first, Infinity, at index 7)",
    });
  });

  it("equals onnxruntime running the equivalent quantised graph, bit for bit", async () => {
    // Per layer: DynamicQuantizeLinear → MatMulInteger → Cast → Mul(x_scale · w_scale) → Add(bias) → Relu.
    const outcome = compileInt8(fixture("digits-mlp/digits_mlp.onnx"), kernels);
    if (!outcome.ok) throw new Error(outcome.reason);
    const nodes: NodeSpec[] = [];
    const inits: Initializer[] = [];
    let current = "input";
    outcome.quantised!.forEach((layer, i) => {
      const { k, n, activation } = outcome.layers[i]!;
      const p = `l${i}`;
      inits.push(
        { name: `${p}.w`, type: ElemType.INT8, dims: [k, n], data: layer.weights },
        { name: `${p}.w_zp`, type: ElemType.INT8, dims: [], data: Int8Array.of(0) },
        { name: `${p}.w_scale`, type: ElemType.FLOAT, dims: [n], data: layer.scales },
        { name: `${p}.bias`, type: ElemType.FLOAT, dims: [n], data: layer.bias! },
      );
      nodes.push(
        {
          op: "DynamicQuantizeLinear",
          inputs: [current],
          outputs: [`${p}.xq`, `${p}.xs`, `${p}.xzp`],
        },
        {
          op: "MatMulInteger",
          inputs: [`${p}.xq`, `${p}.w`, `${p}.xzp`, `${p}.w_zp`],
          outputs: [`${p}.acc`],
        },
        {
          op: "Cast",
          inputs: [`${p}.acc`],
          outputs: [`${p}.accf`],
          attributes: { to: ElemType.FLOAT },
        },
        { op: "Mul", inputs: [`${p}.xs`, `${p}.w_scale`], outputs: [`${p}.scale`] },
        { op: "Mul", inputs: [`${p}.accf`, `${p}.scale`], outputs: [`${p}.scaled`] },
        {
          op: "Add",
          inputs: [`${p}.scaled`, `${p}.bias`],
          outputs: [activation === "relu" ? `${p}.pre` : `${p}.out`],
        },
      );
      if (activation === "relu")
        nodes.push({ op: "Relu", inputs: [`${p}.pre`], outputs: [`${p}.out`] });
      current = `${p}.out`;
    });
    nodes.push({ op: "Identity", inputs: [current], outputs: ["logits"] });
    const graph = await session(
      buildModel(
        nodes,
        [{ name: "input", type: ElemType.FLOAT, dims: ["batch", 64] }],
        [{ name: "logits", type: ElemType.FLOAT, dims: ["batch", 10] }],
        13,
        inits,
      ),
    );
    const set = JSON.parse(
      readFileSync(new URL("../../fixtures/digits-mlp/testset.json", import.meta.url), "utf8"),
    ) as {
      inputs: number[][];
    };
    const executor = new PlanExecutor(kernels, outcome.plan);
    for (const row of set.inputs.slice(0, 100)) {
      const x = Float32Array.from(row);
      const want = (await graph.run({ input: new ort.Tensor("float32", x, [1, 64]) })).logits!
        .data as Float32Array;
      expect(bits(executor.run(x, 1))).toEqual(bits(want));
    }
  });

  describe.each([
    ["seed SimpleModel", "seed-simple/simple_model.onnx", "seed-simple/cases.json"],
    ["digits MLP", "digits-mlp/digits_mlp.onnx", "digits-mlp/testset.json"],
  ])("%s: answers do not depend on the batch", (_, model, cases) => {
    const compiled = () => {
      const outcome = compileInt8(fixture(model), kernels);
      if (!outcome.ok) throw new Error(outcome.reason);
      const { inputs } = JSON.parse(new TextDecoder().decode(fixture(cases))) as {
        inputs: number[][];
      };
      const layers = outcome.layers.map((l, i) => ({ ...l, ...outcome.quantised![i]! }));
      return { outcome, layers, rows: inputs.slice(0, 100).map((row) => Float32Array.from(row)) };
    };

    it("gives each row alone and inside a batch of 100 the same bits", () => {
      const { outcome, rows } = compiled();
      const executor = new PlanExecutor(kernels, outcome.plan);
      const width = executor.inputWidth;
      const out = executor.outputWidth;
      expect(rows).toHaveLength(100);
      const x = new Float32Array(rows.length * width);
      rows.forEach((row, i) => x.set(row, i * width));
      const batch = executor.run(x, rows.length);
      rows.forEach((row, i) => {
        expect(bits(batch.subarray(i * out, (i + 1) * out)), `row ${i}`).toEqual(
          bits(executor.run(row, 1)),
        );
      });
    });

    it("answers a batch of 1 exactly as before: DynamicQuantizeLinear of the one row, per layer", () => {
      // The reference quantises each row alone at every layer; for a batch of
      // one that is the per-tensor DynamicQuantizeLinear the kernels used
      // before quantisation went per row, so batch-1 answers are unchanged.
      const { outcome, layers, rows } = compiled();
      const executor = new PlanExecutor(kernels, outcome.plan);
      for (const [i, row] of rows.entries()) {
        expect(bits(executor.run(row, 1)), `row ${i}`).toEqual(bits(referencePlan(layers, row)));
      }
    });
  });

  it("runs large batches in blocks of 256 rows, keeping WASM memory bounded", async () => {
    const outcome = compileInt8(fixture("digits-mlp/digits_mlp.onnx"), kernels);
    if (!outcome.ok) throw new Error(outcome.reason);
    const own = await loadKernels();
    const executor = new PlanExecutor(own, outcome.plan);
    const memoryBeforeRuns = own.memoryBytes;
    const rng = new Random(4);
    const rows = 2000;
    const x = Float32Array.from({ length: rows * 64 }, () => rng.next());
    executor.run(x.subarray(0, MAX_BLOCK_ROWS * 64), MAX_BLOCK_ROWS);
    const memoryAfterOneBlock = own.memoryBytes;
    const all = executor.run(x, rows);
    expect(own.memoryBytes).toBe(memoryAfterOneBlock);
    // What the runtime counts for the model covers what a block really took.
    expect(memoryAfterOneBlock).toBeLessThanOrEqual(
      memoryBeforeRuns + executor.blockScratchBytes() + 65536,
    );
    for (let row = 0; row < rows; row += MAX_BLOCK_ROWS) {
      const n = Math.min(MAX_BLOCK_ROWS, rows - row);
      const block = executor.run(x.subarray(row * 64, (row + n) * 64), n);
      expect(bits(all.subarray(row * 10, (row + n) * 10))).toEqual(bits(block));
    }
    // Rows are quantised one by one, so block boundaries change nothing either.
    for (const row of [0, 255, 256, 1999]) {
      expect(bits(all.subarray(row * 10, (row + 1) * 10))).toEqual(
        bits(executor.run(x.subarray(row * 64, (row + 1) * 64), 1)),
      );
    }
  });

  it.each(["tanh", "sigmoid", "gelu", "none"] as Activation[])(
    "compiles a stack with %s and tracks fp32 closely",
    async (activation) => {
      const model = linearStackToOnnx(
        linearLayers(readStateDict(fixture("digits-mlp/digits_mlp.pth"))),
        {
          activation,
        },
      );
      const outcome = compileInt8(model, kernels);
      if (!outcome.ok) throw new Error(outcome.reason);
      expect(outcome.layers.slice(0, 2).every((l) => l.activation === activation)).toBe(true);
      const fp32 = await session(model, true);
      const executor = new PlanExecutor(kernels, outcome.plan);
      const rng = new Random(activation.length);
      for (let i = 0; i < 20; i++) {
        const x = Float32Array.from({ length: 64 }, () => rng.next());
        const want = (await fp32.run({ input: new ort.Tensor("float32", x, [1, 64]) })).output!
          .data as Float32Array;
        expect(cosine(executor.run(x, 1), want)).toBeGreaterThan(0.999);
      }
    },
  );

  it("compiles MatMul + Add, a flattening input and a final softmax", async () => {
    const rng = new Random(9);
    const w = Float32Array.from({ length: 16 * 5 }, () => rng.normal());
    const b = Float32Array.from({ length: 5 }, () => rng.normal());
    const model = buildModel(
      [
        { op: "Flatten", inputs: ["image"], outputs: ["flat"], attributes: { axis: 1 } },
        { op: "MatMul", inputs: ["flat", "W"], outputs: ["mm"] },
        { op: "Add", inputs: ["mm", "B"], outputs: ["z"] },
        { op: "Softmax", inputs: ["z"], outputs: ["probs"], attributes: { axis: -1 } },
      ],
      [{ name: "image", type: ElemType.FLOAT, dims: ["batch", 1, 4, 4] }],
      [{ name: "probs", type: ElemType.FLOAT, dims: ["batch", 5] }],
      13,
      [
        { name: "W", type: ElemType.FLOAT, dims: [16, 5], data: w },
        { name: "B", type: ElemType.FLOAT, dims: [5], data: b },
      ],
    );
    const outcome = compileInt8(model, kernels);
    if (!outcome.ok) throw new Error(outcome.reason);
    expect(decodePlanHeader(outcome.plan).softmax).toBe(true);
    const fp32 = await session(model, true);
    const executor = new PlanExecutor(kernels, outcome.plan);
    const x = Float32Array.from({ length: 16 }, () => rng.normal());
    const want = (await fp32.run({ image: new ort.Tensor("float32", x, [1, 1, 4, 4]) })).probs!
      .data as Float32Array;
    const got = executor.run(x, 1);
    got.forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThan(0.02));
    expect(got.reduce((a, v) => a + v, 0)).toBeCloseTo(1, 5);
  });
});

describe("int8 plan format", () => {
  const meta = {
    input: { name: "x", shape: [-1, 3] },
    output: { name: "y", shape: [-1, 2] },
    softmax: false,
    layers: [{ name: "fc", k: 3, n: 2, activation: "relu" as const, sqnrDb: 40, absmaxSqnrDb: 39 }],
  };
  const blobs = () => [
    {
      packedWeights: kernels.packedWeightBytes(Int8Array.of(1, 2, 3, 4, 5, 6), 3, 2),
      scales: Float32Array.of(0.5, 0.25),
      bias: Float32Array.of(1, -1),
    },
  ];

  it("round-trips, with 16-byte aligned blobs after a magic and version header", () => {
    const plan = encodePlan(meta, blobs());
    expect(new TextDecoder().decode(plan.subarray(0, 8))).toBe("PINT8PLN");
    expect(new DataView(plan.buffer).getUint32(8, true)).toBe(2);
    const decoded = decodePlanHeader(plan);
    expect(decoded.layers[0]!.packedWeights.offset % 16).toBe(0);
    expect(decoded.layers[0]!.bias).not.toBeNull();
    const y = new PlanExecutor(kernels, plan).run(Float32Array.of(1, 1, 1), 1);
    expect(y).toHaveLength(2);
  });

  it("refuses bad magic, unknown versions, truncation and blobs outside the file", () => {
    const plan = encodePlan(meta, blobs());
    const badMagic = plan.slice();
    badMagic[0] = 0;
    expect(() => decodePlanHeader(badMagic)).toThrow(/not an int8 plan/);
    const v3 = plan.slice();
    new DataView(v3.buffer).setUint32(8, 3, true);
    expect(() => decodePlanHeader(v3)).toThrow(/format version 3 is not supported/);
    expect(() => decodePlanHeader(plan.subarray(0, 40))).toThrow(/truncated/);
    expect(() => decodePlanHeader(plan.subarray(0, plan.length - 16))).toThrow(
      /points outside the file/,
    );
  });

  it("still runs version-1 plans (the earlier packed layout), exactly as the same plan compiled now", () => {
    // fixtures/int8-plan-v1/digits-mlp.plan: digits_mlp.onnx compiled by the
    // version-1 compiler. Quantisation has not changed since, so the weights
    // are the same and only their packing differs.
    const v1 = fixture("int8-plan-v1/digits-mlp.plan");
    expect(new DataView(v1.buffer, v1.byteOffset).getUint32(8, true)).toBe(1);
    const outcome = compileInt8(fixture("digits-mlp/digits_mlp.onnx"), kernels);
    if (!outcome.ok) throw new Error(outcome.reason);
    const testset = JSON.parse(new TextDecoder().decode(fixture("digits-mlp/testset.json"))) as {
      inputs: number[][];
    };
    const x = Float32Array.from(testset.inputs.flat());
    const batch = testset.inputs.length;
    const old = new PlanExecutor(kernels, v1).run(x, batch);
    const now = new PlanExecutor(kernels, outcome.plan).run(x, batch);
    expect(bits(old)).toEqual(bits(now));
    // And one row at a time (the batch-1 kernel).
    for (let row = 0; row < 5; row++) {
      const one = x.subarray(row * 64, (row + 1) * 64);
      expect(bits(new PlanExecutor(kernels, v1).run(one, 1))).toEqual(
        bits(new PlanExecutor(kernels, outcome.plan).run(one, 1)),
      );
    }
  });

  it("refuses version-1 weights of the wrong size", () => {
    expect(() => unpackV1Weights(new Uint8Array(10), 3, 2)).toThrow(/version-1 packed weights/);
  });
});
