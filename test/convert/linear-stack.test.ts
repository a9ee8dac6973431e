import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { inspectOnnx } from "../../convert/onnx";
import {
  ACTIVATIONS,
  linearLayers,
  linearStackToOnnx,
  type Activation,
  type StateDictTensor,
} from "../../convert/linear-stack";
import { readStateDict } from "../../convert/torch-checkpoint";
import { ort, session } from "../../scripts/lib/onnx-graph";
import { Random } from "../assembly/random";

const fixture = (path: string) =>
  new Uint8Array(readFileSync(new URL(`../../fixtures/${path}`, import.meta.url)));

function tensor(shape: number[], rng: Random): StateDictTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return {
    dtype: "float32",
    shape,
    data: Float32Array.from({ length: n }, () => rng.normal() * 0.5),
  };
}

const erf = (x: number) => {
  // Abramowitz–Stegun 7.1.26 is too coarse for 1e-5; integrate the series instead.
  let sum = 0;
  let term = x;
  for (let n = 0; n < 60; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
};
const ACT: Record<Activation, (v: number) => number> = {
  relu: (v) => Math.max(v, 0),
  tanh: Math.tanh,
  sigmoid: (v) => 1 / (1 + Math.exp(-v)),
  gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  none: (v) => v,
};

/** The stack's forward pass in float64, as the oracle. */
function forward(
  sd: Map<string, StateDictTensor>,
  prefixes: string[],
  activation: Activation,
  x: number[],
): number[] {
  let h = x;
  prefixes.forEach((p, i) => {
    const w = sd.get(`${p}.weight`)!;
    const b = sd.get(`${p}.bias`);
    const [out, inn] = w.shape as [number, number];
    const next = new Array<number>(out).fill(0);
    for (let o = 0; o < out; o++) {
      let acc = b ? Number(b.data[o]) : 0;
      for (let j = 0; j < inn; j++) acc += Number(w.data[o * inn + j]) * h[j]!;
      next[o] = i < prefixes.length - 1 ? ACT[activation](acc) : acc;
    }
    h = next;
  });
  return h;
}

async function run(model: Uint8Array, rows: number[][]): Promise<number[][]> {
  const s = await session(model, true);
  const width = rows[0]!.length;
  const out = await s.run({
    input: new ort.Tensor("float32", Float32Array.from(rows.flat()), [rows.length, width]),
  });
  const data = Array.from(out.output!.data as Float32Array);
  const n = data.length / rows.length;
  return rows.map((_, r) => data.slice(r * n, (r + 1) * n));
}

describe("linear stack → ONNX", () => {
  it.each(ACTIVATIONS)("builds a runnable graph with %s between layers", async (activation) => {
    const rng = new Random(activation.length * 17);
    const sd = new Map<string, StateDictTensor>([
      ["net.0.weight", tensor([16, 7], rng)],
      ["net.0.bias", tensor([16], rng)],
      ["net.2.weight", tensor([9, 16], rng)],
      ["net.2.bias", tensor([9], rng)],
      ["net.4.weight", tensor([3, 9], rng)], // no bias
    ]);
    const layers = linearLayers(sd);
    expect(layers.map((l) => [l.name, l.inFeatures, l.outFeatures])).toEqual([
      ["net.0", 7, 16],
      ["net.2", 16, 9],
      ["net.4", 9, 3],
    ]);
    const model = linearStackToOnnx(layers, { activation });
    const summary = inspectOnnx(model);
    expect(summary.inputs).toEqual([{ name: "input", datatype: "FP32", shape: [-1, 7] }]);
    expect(summary.outputs).toEqual([{ name: "output", datatype: "FP32", shape: [-1, 3] }]);
    expect(summary.opsets).toEqual({ "": 13 });
    const rows = Array.from({ length: 5 }, () => Array.from({ length: 7 }, () => rng.normal()));
    const got = await run(model, rows);
    rows.forEach((row, r) => {
      const want = forward(sd, ["net.0", "net.2", "net.4"], activation, row);
      want.forEach((v, i) => expect(Math.abs(got[r]![i]! - v)).toBeLessThan(1e-5));
    });
  });

  it("refuses what cannot be inferred from a state_dict", () => {
    const rng = new Random(3);
    const refuse = (entries: [string, StateDictTensor][], message: RegExp) =>
      expect(() => linearLayers(new Map(entries))).toThrow(message);
    refuse(
      [["bn.running_mean", tensor([4], rng)]],
      /'bn.running_mean' is not the weight or bias of a Linear layer/,
    );
    refuse(
      [["conv.weight", tensor([8, 1, 3, 3], rng)]],
      /\[8, 1, 3, 3\] \(a convolution's\); a Linear weight is 2-D/,
    );
    refuse(
      [
        ["fc1.weight", tensor([128, 64], rng)],
        ["fc2.weight", tensor([10, 100], rng)],
      ],
      /layer 'fc2' takes 100 inputs but the layer before it, 'fc1', produces 128/,
    );
    refuse(
      [
        ["fc.weight", tensor([4, 3], rng)],
        ["fc.bias", tensor([5], rng)],
      ],
      /'fc.bias' has shape \[5\]; layer 'fc' needs \[4\]/,
    );
    refuse([["fc.bias", tensor([4], rng)]], /layer 'fc' has a bias but no weight/);
    refuse(
      [["fc.weight", { dtype: "int64", shape: [2, 2], data: new BigInt64Array(4) }]],
      /holds int64 values/,
    );
    refuse([], /holds no tensors/);
  });

  it("converts the seed model's .pth to ONNX that reproduces PyTorch and the fixture's export", async () => {
    const sd = readStateDict(fixture("seed-simple/simple_model.pth"));
    const model = linearStackToOnnx(linearLayers(sd), { activation: "relu" });
    const cases = JSON.parse(
      readFileSync(new URL("../../fixtures/seed-simple/cases.json", import.meta.url), "utf8"),
    ) as {
      inputs: number[][];
      expected: number[][];
    };
    const ours = await run(model, cases.inputs);
    const theirs = await run(fixture("seed-simple/simple_model.onnx"), cases.inputs);
    let worst = 0;
    ours.forEach((row, r) =>
      row.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - cases.expected[r]![i]!)))),
    );
    expect(worst).toBeLessThan(1e-5);
    expect(ours).toEqual(theirs);
  });

  it("converts the digits MLP's .pth: 350/360 like PyTorch", async () => {
    const sd = readStateDict(fixture("digits-mlp/digits_mlp.pth"));
    const model = linearStackToOnnx(linearLayers(sd), { activation: "relu" });
    const set = JSON.parse(
      readFileSync(new URL("../../fixtures/digits-mlp/testset.json", import.meta.url), "utf8"),
    ) as {
      inputs: number[][];
      labels: number[];
      logits: number[][];
    };
    const out = await run(model, set.inputs);
    let correct = 0;
    out.forEach((row, i) => {
      if (row.indexOf(Math.max(...row)) === set.labels[i]) correct++;
      row.forEach((v, j) => expect(Math.abs(v - set.logits[i]![j]!)).toBeLessThan(1e-4));
    });
    expect(correct).toBe(350);
  });
});
