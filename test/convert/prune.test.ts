/**
 * Structured pruning (convert/prune.ts) on the real fixtures, every candidate
 * run by onnxruntime-node: the pruned ONNX computes exactly what the pruning's
 * own reference computes with the pruned weights; units whose outgoing weights
 * are zero go first and change nothing; the golden-set accuracy stays within
 * the bound; `auto` finds a fraction > 0 for digits-mlp; models that are not a
 * chain of dense layers are refused, saying why.
 */
import { readFileSync } from "node:fs";
import ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import { linearLayers, linearStackToOnnx } from "../../convert/linear-stack";
import { ElemType, buildModel } from "../../convert/onnx";
import {
  forwardChain,
  prunableChain,
  pruneDenseModel,
  type PruneOptions,
} from "../../convert/prune";
import { readStateDict } from "../../convert/torch-checkpoint";
import { loadKernels, loadKernelsModule } from "../../scripts/lib/kernels-node";

const fixture = (path: string) =>
  new Uint8Array(readFileSync(new URL(`../../fixtures/${path}`, import.meta.url)));
const json = (path: string) => JSON.parse(new TextDecoder().decode(fixture(path)));

const digitsOnnx = fixture("digits-mlp/digits_mlp.onnx");
const digits = json("digits-mlp/testset.json") as { inputs: number[][]; labels: number[] };
const digitsCases = {
  inputs: digits.inputs.map((r) => Float32Array.from(r)),
  labels: digits.labels,
};
const seedOnnx = fixture("seed-simple/simple_model.onnx");
const seed = json("seed-simple/cases.json") as { inputs: number[][] };
const seedCases = { inputs: seed.inputs.map((r) => Float32Array.from(r)) };

let int8: NonNullable<PruneOptions["int8"]>;
beforeAll(async () => {
  int8 = { kernels: await loadKernels(), module: await loadKernelsModule() };
});

/** The model's outputs on `rows` under onnxruntime-node, flattened. */
async function runOrt(model: Uint8Array, rows: Float32Array[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model);
  try {
    const input = session.inputNames[0]!;
    const x = new Float32Array(rows.length * rows[0]!.length);
    rows.forEach((row, i) => x.set(row, i * row.length));
    const out = await session.run({
      [input]: new ort.Tensor("float32", x, [rows.length, rows[0]!.length]),
    });
    return out[session.outputNames[0]!]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

const flat = (rows: Float32Array[]) => {
  const x = new Float32Array(rows.length * rows[0]!.length);
  rows.forEach((row, i) => x.set(row, i * row.length));
  return x;
};

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

function accuracyOf(logits: Float32Array, labels: number[]): number {
  const classes = logits.length / labels.length;
  let correct = 0;
  labels.forEach((label, r) => {
    let best = 0;
    for (let c = 1; c < classes; c++) {
      if (logits[r * classes + c]! > logits[r * classes + best]!) best = c;
    }
    if (best === label) correct++;
  });
  return (100 * correct) / labels.length;
}

describe("pruning dense layers", () => {
  it("digits-mlp at 25 %: a smaller dense ONNX that computes what the pruning's reference computes", async () => {
    const outcome = await pruneDenseModel(digitsOnnx, {
      fraction: 0.25,
      cases: digitsCases,
      maxAccuracyDrop: 5,
      timingRuns: 0,
    });
    expect(outcome.record.method).toBe("golden-effect");
    expect(outcome.record.layers).toEqual([
      { name: "/fc1/Gemm", units: 128, kept: 96, removed: 32 },
      { name: "/fc2/Gemm", units: 64, kept: 48, removed: 16 },
    ]);
    // The file holds the pruned weights: read back, it is a dense chain of those sizes.
    const reread = prunableChain(outcome.onnx);
    expect(reread.layers.map((l) => [l.k, l.n])).toEqual([
      [64, 96],
      [96, 48],
      [48, 10],
    ]);
    reread.layers.forEach((layer, l) => {
      expect(Array.from(layer.weights)).toEqual(Array.from(outcome.layers[l]!.weights));
      expect(Array.from(layer.bias!)).toEqual(Array.from(outcome.layers[l]!.bias!));
    });
    const params = 64 * 96 + 96 + 96 * 48 + 48 + 48 * 10 + 10;
    expect(outcome.record.parameters).toEqual({ before: 17226, after: params });
    expect(outcome.onnx.byteLength).toBeLessThan(digitsOnnx.byteLength * 0.8);

    const served = await runOrt(outcome.onnx, digitsCases.inputs);
    const reference = forwardChain(outcome.layers, outcome.softmax, flat(digitsCases.inputs), 360);
    expect(maxAbsDiff(served, reference)).toBeLessThan(5e-5);
    // What the report says it measured is what onnxruntime answers.
    expect(maxAbsDiff(served, flat(outcome.outputs!))).toBe(0);
    expect(outcome.record.accuracy!.pruned).toBeCloseTo(accuracyOf(served, digits.labels), 10);
  });

  it("ranks layers too large for the full measurement by their local effect on the golden set", async () => {
    const full = await pruneDenseModel(digitsOnnx, {
      fraction: 0.125,
      cases: digitsCases,
      maxAccuracyDrop: 2,
      timingRuns: 0,
    });
    const local = await pruneDenseModel(digitsOnnx, {
      fraction: 0.125,
      cases: digitsCases,
      maxAccuracyDrop: 2,
      rankingBudgetMacs: 1,
      timingRuns: 0,
    });
    // Another ranking, so other units go; the same counts, and onnxruntime still equals the reference.
    expect(local.record.layers).toEqual(full.record.layers);
    expect(Array.from(local.layers[0]!.weights)).not.toEqual(Array.from(full.layers[0]!.weights));
    const served = await runOrt(local.onnx, digitsCases.inputs);
    const reference = forwardChain(local.layers, local.softmax, flat(digitsCases.inputs), 360);
    expect(maxAbsDiff(served, reference)).toBeLessThan(5e-5);
    expect(local.record.accuracy!.pruned).toBeGreaterThanOrEqual(local.record.accuracy!.fp32 - 2);
  });

  it("the seed model, with and without golden cases: onnxruntime equals the reference", async () => {
    for (const cases of [seedCases, undefined]) {
      const outcome = await pruneDenseModel(seedOnnx, {
        fraction: 0.25,
        ...(cases ? { cases, maxAccuracyDrop: 100 } : {}),
        timingRuns: 0,
      });
      expect(outcome.record.method).toBe(cases ? "golden-effect" : "weight-norm");
      expect(outcome.record.layers).toEqual([
        { name: "/layer1/Gemm", units: 20, kept: 15, removed: 5 },
      ]);
      const served = await runOrt(outcome.onnx, seedCases.inputs);
      const reference = forwardChain(outcome.layers, outcome.softmax, flat(seedCases.inputs), 100);
      expect(maxAbsDiff(served, reference)).toBeLessThan(1e-5);
      if (cases) expect(outcome.record.accuracy?.metric).toBe("agreement");
    }
  });

  it("removes units whose outgoing weights are zero first, and the outputs stay exactly the same", async () => {
    const layers = linearLayers(readStateDict(fixture("seed-simple/simple_model.pth")));
    const dead = [2, 7, 11, 15, 19];
    const layer2 = layers[1]!; // [10, 20]: column j is hidden unit j's outgoing weights
    for (let o = 0; o < layer2.outFeatures; o++) {
      for (const j of dead) layer2.weight[o * layer2.inFeatures + j] = 0;
    }
    const model = linearStackToOnnx(layers);
    const before = await runOrt(model, seedCases.inputs);
    for (const cases of [undefined, seedCases]) {
      const outcome = await pruneDenseModel(model, {
        fraction: 0.25,
        ...(cases ? { cases, maxAccuracyDrop: 0 } : {}),
        timingRuns: 0,
      });
      expect(outcome.layers[0]!.n).toBe(15);
      // None of the dead units survived (each kept unit has some outgoing weight).
      const kept = outcome.layers[1]!;
      for (let i = 0; i < kept.k; i++) {
        let norm = 0;
        for (let o = 0; o < kept.n; o++) norm += Math.abs(kept.weights[i * kept.n + o]!);
        expect(norm).toBeGreaterThan(0);
      }
      const after = await runOrt(outcome.onnx, seedCases.inputs);
      expect(maxAbsDiff(after, before)).toBe(0);
      if (cases) expect(outcome.record.accuracy!.pruned).toBe(100);
    }
  });

  it("keeps golden-set accuracy within the bound, and refuses a fraction that loses more", async () => {
    const outcome = await pruneDenseModel(digitsOnnx, {
      fraction: 0.125,
      cases: digitsCases,
      maxAccuracyDrop: 0.5,
      timingRuns: 0,
    });
    const accuracy = outcome.record.accuracy!;
    expect(accuracy.metric).toBe("accuracy");
    expect(accuracy.fp32).toBeCloseTo(97.2222, 3);
    const served = await runOrt(outcome.onnx, digitsCases.inputs);
    expect(accuracyOf(served, digits.labels)).toBeGreaterThanOrEqual(accuracy.fp32 - 0.5);

    await expect(
      pruneDenseModel(digitsOnnx, {
        fraction: 0.5,
        cases: digitsCases,
        maxAccuracyDrop: 0.5,
        timingRuns: 0,
      }),
    ).rejects.toThrow(
      /takes golden-set accuracy from 97\.22 to \d+\.\d\d, more than --max-accuracy-drop 0\.5 points/,
    );
  });

  it("auto finds a fraction > 0 for digits-mlp within the drop, for fp32 and int8 alike", async () => {
    const outcome = await pruneDenseModel(digitsOnnx, {
      fraction: "auto",
      cases: digitsCases,
      maxAccuracyDrop: 0.5,
      int8,
      timingRuns: 20,
    });
    const { record, search, variants } = outcome;
    expect(record.requested).toBe("auto");
    expect(record.fraction).toBeGreaterThan(0);
    expect(record.parameters.after).toBeLessThan(record.parameters.before);
    const accuracy = record.accuracy!;
    expect(accuracy.pruned).toBeGreaterThanOrEqual(accuracy.fp32 - 0.5);
    expect(accuracy.prunedInt8).toBeGreaterThanOrEqual(accuracy.fp32 - 0.5);
    // The chosen fraction is the largest the search accepted, and it was measured.
    const accepted = search.filter((s) => s.accepted).map((s) => s.fraction);
    expect(record.fraction).toBe(Math.max(...accepted));
    for (const step of search.filter((s) => !s.accepted)) {
      expect(Math.min(step.score, step.int8Score ?? Infinity)).toBeLessThan(accuracy.fp32 - 0.5);
    }
    // The report has fp32, pruned, int8 and pruned + int8, each timed; the pruned ones smaller.
    expect(variants.map((v) => [v.variant, v.runtime])).toEqual([
      ["fp32", "onnxruntime-node"],
      ["pruned", "onnxruntime-node"],
      ["int8", "int8"],
      ["pruned + int8", "int8"],
    ]);
    for (const v of variants) expect(v.medianMicros).toBeGreaterThan(0);
    expect(variants[1]!.bytes).toBeLessThan(variants[0]!.bytes);
    expect(variants[3]!.bytes).toBeLessThan(variants[2]!.bytes);
    expect(variants[3]!.bytes).toBeLessThan(variants[1]!.bytes);
    expect(variants[3]!.parameters).toBe(variants[1]!.parameters);
    expect(variants[3]!.score).toBe(accuracy.prunedInt8);
  });

  it("prunes MatMul + Add layers ending in a softmax", async () => {
    const w1 = Float32Array.from({ length: 6 * 8 }, (_, i) => Math.sin(i * 1.7));
    const b1 = Float32Array.from({ length: 8 }, (_, i) => Math.cos(i) * 0.1);
    const w2 = Float32Array.from({ length: 8 * 3 }, (_, i) => Math.cos(i * 0.9));
    const b2 = Float32Array.from({ length: 3 }, (_, i) => i * 0.05);
    const model = buildModel(
      [
        { op: "MatMul", inputs: ["x", "w1"], outputs: ["m1"] },
        { op: "Add", inputs: ["m1", "b1"], outputs: ["a1"] },
        { op: "Tanh", inputs: ["a1"], outputs: ["h1"] },
        { op: "MatMul", inputs: ["h1", "w2"], outputs: ["m2"] },
        { op: "Add", inputs: ["m2", "b2"], outputs: ["a2"] },
        { op: "Softmax", inputs: ["a2"], outputs: ["y"], attributes: { axis: 1 } },
      ],
      [{ name: "x", type: ElemType.FLOAT, dims: ["batch", 6] }],
      [{ name: "y", type: ElemType.FLOAT, dims: ["batch", 3] }],
      13,
      [
        { name: "w1", type: ElemType.FLOAT, dims: [6, 8], data: w1 },
        { name: "b1", type: ElemType.FLOAT, dims: [8], data: b1 },
        { name: "w2", type: ElemType.FLOAT, dims: [8, 3], data: w2 },
        { name: "b2", type: ElemType.FLOAT, dims: [3], data: b2 },
      ],
    );
    const rows = Array.from({ length: 40 }, (_, r) =>
      Float32Array.from({ length: 6 }, (_, i) => Math.sin(r * 0.3 + i)),
    );
    const outcome = await pruneDenseModel(model, {
      fraction: 0.5,
      cases: { inputs: rows },
      maxAccuracyDrop: 100,
      timingRuns: 0,
    });
    expect(outcome.softmax).toBe(true);
    expect(outcome.layers.map((l) => [l.k, l.n])).toEqual([
      [6, 4],
      [4, 3],
    ]);
    const served = await runOrt(outcome.onnx, rows);
    expect(maxAbsDiff(served, forwardChain(outcome.layers, true, flat(rows), 40))).toBeLessThan(
      1e-6,
    );
  });

  it("refuses a CNN, auto without golden cases, and fractions out of range, saying why", async () => {
    await expect(
      pruneDenseModel(fixture("digits-cnn/digits_cnn.onnx"), { fraction: 0.25, timingRuns: 0 }),
    ).rejects.toThrow(
      /this model's structure is not prunable yet: it has convolutions \(node 0, Conv '[^']*'\).*pruning whole output channels of convolutions is not implemented/,
    );
    await expect(pruneDenseModel(digitsOnnx, { fraction: "auto", timingRuns: 0 })).rejects.toThrow(
      /--prune auto needs golden cases \(--golden\)/,
    );
    await expect(pruneDenseModel(digitsOnnx, { fraction: 1, timingRuns: 0 })).rejects.toThrow(
      /between 0 and 1/,
    );
  });
});
