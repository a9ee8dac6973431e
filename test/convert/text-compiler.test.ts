/**
 * The text compiler and executor end to end in Node: the PyTorch-exported
 * text fixtures compiled to text plans (format 4) and run on the built
 * kernels against their fp32 answers; each operator and pattern against
 * onnxruntime on tiny graphs over token ids at random sizes (LayerNorm in
 * both forms, masked softmax, GELU in its forms, an attention block), a
 * sequence shorter than the maximum answered as onnxruntime answers that
 * length, and what is refused, with the node or the input named.
 */
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { compileInt8 } from "../../convert/int8-compiler";
import { ElemType, buildModel, type Initializer, type NodeSpec } from "../../convert/onnx";
import type { Tensor } from "../../core/protocol/datatypes";
import { loadProgram, type Int8Program } from "../../core/runtimes/int8/int8-runtime";
import type { Int8Kernels } from "../../core/runtimes/int8/kernels";
import { blobView, planFormatVersion } from "../../core/runtimes/int8/plan";
import { decodeTextPlan, encodeTextPlan } from "../../core/runtimes/int8/text-plan";
import { loadKernels, loadKernelsModule } from "../../scripts/lib/kernels-node";
import { ort, session } from "../../scripts/lib/onnx-graph";
import { Random } from "../assembly/random";

const fixture = (path: string) =>
  new Uint8Array(readFileSync(new URL(`../../fixtures/${path}`, import.meta.url)));
const fixtureJson = <T>(path: string) => JSON.parse(new TextDecoder().decode(fixture(path))) as T;

let module: WebAssembly.Module;
let kernels: Int8Kernels;
beforeAll(async () => {
  module = await loadKernelsModule();
  kernels = await loadKernels();
});

async function program(onnx: Uint8Array, maxSequence?: number): Promise<Int8Program> {
  const outcome = compileInt8(onnx, kernels, maxSequence ? { maxSequence } : {});
  if (!outcome.ok) throw new Error(outcome.reason);
  expect(planFormatVersion(outcome.plan)).toBe(4);
  return loadProgram(module, outcome.plan);
}

const argmax = (v: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
};
const ids = (name: string, rows: number[][]): Tensor => ({
  name,
  datatype: "INT64",
  shape: [rows.length, rows[0]!.length],
  data: BigInt64Array.from(rows.flat(), (v) => BigInt(v)),
});

describe("text plans of the PyTorch fixtures", () => {
  it("text-small: int8 top-1 agreement ≥ 99 % with fp32, accuracy within 1 point", async () => {
    const set = fixtureJson<{ inputs: number[][]; logits: number[][]; labels: number[] }>(
      "text-small/testset.json",
    );
    const run = await program(fixture("text-small/text_small.onnx"));
    const y = run.runInputs([ids("input_ids", set.inputs)]);
    const width = set.logits[0]!.length;
    let agree = 0;
    let fp32Right = 0;
    let int8Right = 0;
    set.logits.forEach((want, i) => {
      const got = y.subarray(i * width, (i + 1) * width);
      if (argmax(got) === argmax(want)) agree++;
      if (argmax(want) === set.labels[i]) fp32Right++;
      if (argmax(got) === set.labels[i]) int8Right++;
    });
    expect(agree / set.inputs.length).toBeGreaterThanOrEqual(0.99);
    expect(Math.abs(int8Right - fp32Right) / set.inputs.length).toBeLessThanOrEqual(0.01);
  });

  interface Masked {
    max_sequence: number;
    labels: number[];
    cases: Record<string, number[]>[];
    padded: Record<string, number[][]>;
    models: Record<string, { file: string; logits: number[][]; padded_logits: number[][] }>;
  }
  for (const name of ["text_masked_cls", "text_masked_mean"]) {
    it(`${name}: attention_mask and token_type_ids; padded answers as unpadded; agreement ≥ 99 %`, async () => {
      const set = fixtureJson<Masked>("text-masked/testset.json");
      const model = set.models[name]!;
      const run = await program(fixture(`text-masked/${model.file}`), set.max_sequence);
      expect(run.inputNames).toEqual(["input_ids", "attention_mask", "token_type_ids"]);
      let agree = 0;
      let paddedSame = 0;
      set.cases.forEach((c, i) => {
        const natural = run.runInputs(run.inputNames.map((k) => ids(k, [c[k]!])));
        const padded = run.runInputs(run.inputNames.map((k) => ids(k, [set.padded[k]![i]!])));
        if (argmax(natural) === argmax(model.logits[i]!)) agree++;
        if (argmax(padded) === argmax(natural)) paddedSame++;
        // Masked positions add e^(−10000) = 0 to every sum: the same answer to rounding.
        natural.forEach((v, j) => expect(padded[j]).toBeCloseTo(v, 4));
      });
      expect(agree / set.cases.length).toBeGreaterThanOrEqual(0.99);
      expect(paddedSame).toBe(set.cases.length);
    });
  }
});

const VOCAB = 40;

/**
 * A graph over token ids: `ids` [N, S] (and `mask` when asked) → Gather on a
 * random [VOCAB, d] table → `x` [N, S, d] → `nodes` → `y`.
 */
function overTokens(
  random: Random,
  d: number,
  nodes: NodeSpec[],
  yDims: (string | number)[],
  options: { opset?: number; mask?: boolean; initializers?: Initializer[] } = {},
): Uint8Array {
  const table = Float32Array.from({ length: VOCAB * d }, () => random.normal());
  return buildModel(
    [{ op: "Gather", inputs: ["table", "ids"], outputs: ["x"] }, ...nodes],
    [
      { name: "ids", type: ElemType.INT64, dims: ["N", "S"] },
      ...(options.mask ? [{ name: "mask", type: ElemType.INT64, dims: ["N", "S"] }] : []),
    ],
    [{ name: "y", type: ElemType.FLOAT, dims: yDims }],
    options.opset ?? 13,
    [
      { name: "table", type: ElemType.FLOAT, dims: [VOCAB, d], data: table },
      ...(options.initializers ?? []),
    ],
  );
}

const f32 = (name: string, dims: number[], data: Float32Array): Initializer => ({
  name,
  type: ElemType.FLOAT,
  dims,
  data,
});
const i64 = (name: string, values: number[]): Initializer => ({
  name,
  type: ElemType.INT64,
  dims: [values.length],
  data: BigInt64Array.from(values, (v) => BigInt(v)),
});
const scalar = (name: string, v: number): Initializer => ({
  name,
  type: ElemType.FLOAT,
  dims: [],
  data: Float32Array.of(v),
});

/** The plan's and onnxruntime's answers for one sample of `s` tokens (and a mask). */
async function both(onnx: Uint8Array, random: Random, s: number, max: number, mask?: number[]) {
  const tokens = Array.from({ length: s }, () => random.int(0, VOCAB - 1));
  const run = await program(onnx, max);
  const inputs = [ids("ids", [tokens]), ...(mask ? [ids("mask", [mask])] : [])];
  const got = run.runInputs(inputs);
  const ref = await session(onnx);
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of inputs) feeds[t.name] = new ort.Tensor("int64", t.data as BigInt64Array, t.shape);
  const want = (await ref.run(feeds)).y!.data as Float32Array;
  await ref.release();
  expect(run.outputShapeOf(inputs).reduce((a, b) => a * b, 1)).toBe(want.length);
  return { got, want };
}

const maxError = (got: ArrayLike<number>, want: ArrayLike<number>) => {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  return worst;
};

const stepsOf = (onnx: Uint8Array, max: number) => {
  const outcome = compileInt8(onnx, kernels, { maxSequence: max });
  if (!outcome.ok) throw new Error(outcome.reason);
  return decodeTextPlan(outcome.plan).steps.map((s) => s.op + ("fn" in s ? `:${s.fn}` : ""));
};

describe("each operator against onnxruntime, over token ids", () => {
  for (const seed of [1, 2, 3]) {
    it(`LayerNormalization (opset 17) and its decomposed form are one layerNorm step (seed ${seed})`, async () => {
      const random = new Random(seed);
      const d = random.pick([5, 16, 33]);
      const s = random.int(1, 12);
      const gamma = Float32Array.from({ length: d }, () => 1 + 0.2 * random.normal());
      const beta = Float32Array.from({ length: d }, () => 0.2 * random.normal());
      const params = [f32("gamma", [d], gamma), f32("beta", [d], beta)];
      const fused = overTokens(
        random,
        d,
        [
          {
            op: "LayerNormalization",
            inputs: ["x", "gamma", "beta"],
            outputs: ["y"],
            attributes: { axis: -1, epsilon: { float: 1e-5 } },
          },
        ],
        ["N", "S", d],
        { opset: 17, initializers: params },
      );
      const decomposed = overTokens(
        random,
        d,
        [
          { op: "ReduceMean", inputs: ["x"], outputs: ["mean"], attributes: { axes: [-1] } },
          { op: "Sub", inputs: ["x", "mean"], outputs: ["dev"] },
          { op: "Pow", inputs: ["dev", "two"], outputs: ["sq"] },
          { op: "ReduceMean", inputs: ["sq"], outputs: ["var"], attributes: { axes: [-1] } },
          { op: "Add", inputs: ["var", "eps"], outputs: ["vare"] },
          { op: "Sqrt", inputs: ["vare"], outputs: ["std"] },
          { op: "Div", inputs: ["dev", "std"], outputs: ["norm"] },
          { op: "Mul", inputs: ["norm", "gamma"], outputs: ["scaled"] },
          { op: "Add", inputs: ["scaled", "beta"], outputs: ["y"] },
        ],
        ["N", "S", d],
        { initializers: [...params, scalar("two", 2), scalar("eps", 1e-5)] },
      );
      for (const onnx of [fused, decomposed]) {
        expect(stepsOf(onnx, 12).filter((op) => op !== "gather")).toEqual(["layerNorm"]);
        const { got, want } = await both(onnx, random, s, 12);
        expect(maxError(got, want)).toBeLessThan(1e-4);
      }
    });
  }

  it("softmax over the last axis with the attention mask as an additive bias, fused into one step", async () => {
    const random = new Random(7);
    const d = 8;
    for (const s of [1, 6, 11]) {
      const onnx = overTokens(
        random,
        d,
        [
          { op: "Transpose", inputs: ["x"], outputs: ["xt"], attributes: { perm: [0, 2, 1] } },
          { op: "MatMul", inputs: ["x", "xt"], outputs: ["scores"] },
          { op: "Unsqueeze", inputs: ["mask", "one"], outputs: ["m1"] },
          { op: "Cast", inputs: ["m1"], outputs: ["mf"], attributes: { to: 1 } },
          { op: "Sub", inputs: ["onef", "mf"], outputs: ["inv"] },
          { op: "Mul", inputs: ["inv", "big"], outputs: ["bias"] },
          { op: "Add", inputs: ["scores", "bias"], outputs: ["masked"] },
          { op: "Softmax", inputs: ["masked"], outputs: ["y"], attributes: { axis: -1 } },
        ],
        ["N", "S", "S"],
        {
          mask: true,
          initializers: [i64("one", [1]), scalar("onef", 1), scalar("big", -10000)],
        },
      );
      expect(stepsOf(onnx, 12)).toContain("softmax");
      expect(stepsOf(onnx, 12)).not.toContain("binary:add");
      const mask = Array.from({ length: s }, (_, i) => (i === 0 || random.next() < 0.6 ? 1 : 0));
      const { got, want } = await both(onnx, random, s, 12, mask);
      expect(maxError(got, want)).toBeLessThan(1e-5);
    }
  });

  it("a mask made with Cast to BOOL and Where (masked_fill, as SDPA exports write it), still one softmax step", async () => {
    const random = new Random(8);
    const d = 8;
    const onnx = overTokens(
      random,
      d,
      [
        { op: "Transpose", inputs: ["x"], outputs: ["xt"], attributes: { perm: [0, 2, 1] } },
        { op: "MatMul", inputs: ["x", "xt"], outputs: ["scores"] },
        { op: "Unsqueeze", inputs: ["mask", "one"], outputs: ["m1"] },
        { op: "Cast", inputs: ["m1"], outputs: ["mf"], attributes: { to: 1 } },
        { op: "Sub", inputs: ["onef", "mf"], outputs: ["inv"] },
        { op: "Cast", inputs: ["inv"], outputs: ["flag"], attributes: { to: 9 } },
        { op: "Where", inputs: ["flag", "lowest", "inv"], outputs: ["bias"] },
        { op: "Add", inputs: ["scores", "bias"], outputs: ["masked"] },
        { op: "Softmax", inputs: ["masked"], outputs: ["y"], attributes: { axis: -1 } },
      ],
      ["N", "S", "S"],
      {
        mask: true,
        initializers: [
          i64("one", [1]),
          scalar("onef", 1),
          scalar("lowest", -3.4028234663852886e38),
        ],
      },
    );
    const steps = stepsOf(onnx, 12);
    expect(steps).toContain("where");
    expect(steps.filter((s) => s === "softmax")).toHaveLength(1);
    expect(steps).not.toContain("binary:add");
    for (const s of [1, 4, 9]) {
      const mask = Array.from({ length: s }, (_, i) => (i === 0 || random.next() < 0.5 ? 1 : 0));
      const { got, want } = await both(onnx, random, s, 12, mask);
      expect(maxError(got, want)).toBeLessThan(1e-5);
    }
  });

  const geluForms: [string, NodeSpec[], Initializer[], number][] = [
    [
      "erf form",
      [
        { op: "Div", inputs: ["x", "sqrt2"], outputs: ["a"] },
        { op: "Erf", inputs: ["a"], outputs: ["b"] },
        { op: "Add", inputs: ["b", "onef"], outputs: ["c"] },
        { op: "Mul", inputs: ["x", "c"], outputs: ["e"] },
        { op: "Mul", inputs: ["e", "half"], outputs: ["y"] },
      ],
      [scalar("sqrt2", Math.SQRT2), scalar("onef", 1), scalar("half", 0.5)],
      13,
    ],
    [
      "tanh form",
      [
        { op: "Pow", inputs: ["x", "three"], outputs: ["cube"] },
        { op: "Mul", inputs: ["k", "cube"], outputs: ["kc"] },
        { op: "Add", inputs: ["x", "kc"], outputs: ["inner"] },
        { op: "Mul", inputs: ["c", "inner"], outputs: ["arg"] },
        { op: "Tanh", inputs: ["arg"], outputs: ["t"] },
        { op: "Add", inputs: ["onef", "t"], outputs: ["t1"] },
        { op: "Mul", inputs: ["x", "t1"], outputs: ["xt"] },
        { op: "Mul", inputs: ["half", "xt"], outputs: ["y"] },
      ],
      [
        scalar("three", 3),
        scalar("k", 0.044715),
        scalar("c", Math.sqrt(2 / Math.PI)),
        scalar("onef", 1),
        scalar("half", 0.5),
      ],
      13,
    ],
    [
      "tanh form, x³ as x·x·x",
      [
        { op: "Mul", inputs: ["x", "x"], outputs: ["sq"] },
        { op: "Mul", inputs: ["x", "sq"], outputs: ["cube"] },
        { op: "Mul", inputs: ["k", "cube"], outputs: ["kc"] },
        { op: "Add", inputs: ["x", "kc"], outputs: ["inner"] },
        { op: "Mul", inputs: ["c", "inner"], outputs: ["arg"] },
        { op: "Tanh", inputs: ["arg"], outputs: ["t"] },
        { op: "Add", inputs: ["onef", "t"], outputs: ["t1"] },
        { op: "Mul", inputs: ["x", "t1"], outputs: ["xt"] },
        { op: "Mul", inputs: ["half", "xt"], outputs: ["y"] },
      ],
      [
        scalar("k", 0.044715),
        scalar("c", Math.sqrt(2 / Math.PI)),
        scalar("onef", 1),
        scalar("half", 0.5),
      ],
      13,
    ],
    ["Gelu op (opset 20)", [{ op: "Gelu", inputs: ["x"], outputs: ["y"] }], [], 20],
    [
      "Gelu op, approximate tanh (opset 20)",
      [
        {
          op: "Gelu",
          inputs: ["x"],
          outputs: ["y"],
          attributes: { approximate: { string: "tanh" } },
        },
      ],
      [],
      20,
    ],
    ["Relu", [{ op: "Relu", inputs: ["x"], outputs: ["y"] }], [], 13],
    ["Tanh", [{ op: "Tanh", inputs: ["x"], outputs: ["y"] }], [], 13],
    ["Erf", [{ op: "Erf", inputs: ["x"], outputs: ["y"] }], [], 13],
  ];
  for (const [name, nodes, initializers, opset] of geluForms) {
    it(`${name}`, async () => {
      const random = new Random(name.length);
      const d = random.pick([3, 16, 21]);
      const onnx = overTokens(random, d, nodes, ["N", "S", d], { opset, initializers });
      const { got, want } = await both(onnx, random, random.int(1, 9), 9);
      expect(maxError(got, want)).toBeLessThan(2e-5);
    });
  }
  it("the erf and tanh forms of GELU (x³ either way) are one gelu step each", () => {
    for (const [form, step] of [
      [0, "unary:gelu"],
      [1, "unary:geluTanh"],
      [2, "unary:geluTanh"],
    ] as const) {
      const [, nodes, initializers] = geluForms[form]!;
      const onnx = overTokens(new Random(1), 4, nodes, ["N", "S", 4], { initializers });
      expect(stepsOf(onnx, 4)).toEqual(["gather", step]);
    }
  });
});

/**
 * One self-attention block as a BERT layer's export writes it: Q, K, V
 * projections (int8 dense), heads split by Reshape [0, 0, h, d/h] and
 * Transpose, Q·Kᵀ / √(d/h) + mask, Softmax, ·V, heads merged, output projection.
 */
function attentionBlock(random: Random, d: number, heads: number): Uint8Array {
  const hd = d / heads;
  const w = (name: string) =>
    f32(
      name,
      [d, d],
      Float32Array.from({ length: d * d }, () => random.normal() / Math.sqrt(d)),
    );
  const b = (name: string) =>
    f32(
      name,
      [d],
      Float32Array.from({ length: d }, () => 0.1 * random.normal()),
    );
  const project = (name: string, from: string): NodeSpec[] => [
    { op: "MatMul", inputs: [from, `w${name}`], outputs: [`${name}0`] },
    { op: "Add", inputs: [`b${name}`, `${name}0`], outputs: [name] },
  ];
  const split = (name: string, perm: number[]): NodeSpec[] => [
    { op: "Reshape", inputs: [name, "split"], outputs: [`${name}h`] },
    { op: "Transpose", inputs: [`${name}h`], outputs: [`${name}t`], attributes: { perm } },
  ];
  return overTokens(
    random,
    d,
    [
      ...project("q", "x"),
      ...project("k", "x"),
      ...project("v", "x"),
      ...split("q", [0, 2, 1, 3]),
      ...split("k", [0, 2, 3, 1]),
      ...split("v", [0, 2, 1, 3]),
      { op: "MatMul", inputs: ["qt", "kt"], outputs: ["s0"] },
      { op: "Div", inputs: ["s0", "root"], outputs: ["s1"] },
      { op: "Unsqueeze", inputs: ["mask", "axes12"], outputs: ["m1"] },
      { op: "Cast", inputs: ["m1"], outputs: ["mf"], attributes: { to: 1 } },
      { op: "Sub", inputs: ["onef", "mf"], outputs: ["inv"] },
      { op: "Mul", inputs: ["inv", "big"], outputs: ["bias"] },
      { op: "Add", inputs: ["s1", "bias"], outputs: ["s2"] },
      { op: "Softmax", inputs: ["s2"], outputs: ["p"], attributes: { axis: -1 } },
      { op: "MatMul", inputs: ["p", "vt"], outputs: ["c0"] },
      { op: "Transpose", inputs: ["c0"], outputs: ["c1"], attributes: { perm: [0, 2, 1, 3] } },
      { op: "Reshape", inputs: ["c1", "merge"], outputs: ["c2"] },
      ...project("y", "c2"),
    ],
    ["N", "S", d],
    {
      mask: true,
      initializers: [
        w("wq"),
        w("wk"),
        w("wv"),
        w("wy"),
        b("bq"),
        b("bk"),
        b("bv"),
        b("by"),
        i64("split", [0, 0, heads, hd]),
        i64("merge", [0, 0, d]),
        i64("axes12", [1, 2]),
        scalar("root", Math.sqrt(hd)),
        scalar("onef", 1),
        scalar("big", -10000),
      ],
    },
  );
}

it("evaluates a scale computed from a shape (SDPA's 1/√d) at compile time, into the product", async () => {
  const random = new Random(21);
  const d = 8;
  const onnx = overTokens(
    random,
    d,
    [
      { op: "Shape", inputs: ["x"], outputs: ["shape"] },
      { op: "Slice", inputs: ["shape", "minus1", "big"], outputs: ["last"] },
      { op: "Cast", inputs: ["last"], outputs: ["lastf"], attributes: { to: 1 } },
      { op: "Sqrt", inputs: ["lastf"], outputs: ["root"] },
      { op: "Reciprocal", inputs: ["root"], outputs: ["scale"] },
      { op: "Mul", inputs: ["x", "scale"], outputs: ["xs"] },
      { op: "Transpose", inputs: ["x"], outputs: ["xt"], attributes: { perm: [0, 2, 1] } },
      { op: "MatMul", inputs: ["xs", "xt"], outputs: ["y"] },
    ],
    ["N", "S", "S"],
    { initializers: [i64("minus1", [-1]), i64("big", [2 ** 40])] },
  );
  expect(stepsOf(onnx, 6)).toEqual(["gather", "matmul"]);
  const { got, want } = await both(onnx, random, 5, 6);
  expect(maxError(got, want)).toBeLessThan(1e-4);
});

describe("an attention block, at any length up to the maximum", () => {
  it("answers as onnxruntime at the maximum and at shorter lengths, within int8 error", async () => {
    const random = new Random(11);
    const onnx = attentionBlock(random, 32, 4);
    const steps = stepsOf(onnx, 12);
    // Heads split and merged through strides: no copies; the mask rides in the softmax.
    expect(steps.filter((s) => s === "copy")).toEqual([]);
    expect(steps.filter((s) => s === "matmul")).toHaveLength(2);
    for (const s of [12, 7, 3, 1]) {
      const mask = Array.from({ length: s }, (_, i) => (i < s - 1 || s === 1 ? 1 : 0));
      const { got, want } = await both(onnx, random, s, 12, mask);
      let dot = 0;
      let gg = 0;
      let ww = 0;
      want.forEach((v, i) => {
        dot += v * got[i]!;
        gg += got[i]! ** 2;
        ww += v * v;
      });
      expect(dot / Math.sqrt(gg * ww), `length ${s}`).toBeGreaterThan(0.999);
      expect(maxError(got, want), `length ${s}`).toBeLessThan(0.05);
    }
  });

  it("refuses a longer sequence, ids outside the vocabulary and mismatched inputs as invalid", async () => {
    const random = new Random(12);
    const run = await program(attentionBlock(random, 16, 2), 6);
    const ones = (n: number) => new Array<number>(n).fill(1);
    expect(() =>
      run.runInputs([ids("ids", [[1, 2, 3, 4, 5, 6, 7]]), ids("mask", [ones(7)])]),
    ).toThrow(/sequences of 1 to 6 tokens .*got 7/);
    expect(() => run.runInputs([ids("ids", [[1, 2, VOCAB]]), ids("mask", [ones(3)])])).toThrow(
      `input 'ids' holds ${VOCAB} at position 2; ids must lie in [0, ${VOCAB})`,
    );
    expect(() => run.runInputs([ids("ids", [[1, 2, 3]]), ids("mask", [ones(4)])])).toThrow(
      /every input must be \[batch, sequence\]/,
    );
    expect(() => run.runInputs([ids("ids", [[1, 2 ** 33, 3]]), ids("mask", [ones(3)])])).toThrow(
      /not an int32 token id/,
    );
  });
});

describe("what text plans refuse", () => {
  it("refuses at load a plan whose steps would reach outside their buffers", async () => {
    const outcome = compileInt8(fixture("text-small/text_small.onnx"), kernels);
    if (!outcome.ok) throw new Error(outcome.reason);
    const { kind: _kind, blobs, ...plan } = decodeTextPlan(outcome.plan);
    const gather = plan.steps.find((s) => s.op === "gather")!;
    const shrunk = plan.buffers.map((b, i) => (i === gather.output ? { ...b, elements: [4] } : b));
    const broken = encodeTextPlan(
      { ...plan, buffers: shrunk },
      blobs.map((ref) => blobView(outcome.plan, ref)),
    );
    await expect(loadProgram(module, broken)).rejects.toThrow(
      /int8 text plan step 0 \(gather\) reaches outside its buffers at sequence length 8/,
    );
    // The plan as compiled loads.
    await expect(loadProgram(module, outcome.plan)).resolves.toBeDefined();
  });

  it("names the node of an unsupported operator", () => {
    const onnx = overTokens(
      new Random(1),
      4,
      [{ op: "Sin", inputs: ["x"], outputs: ["y"] }],
      ["N", "S", 4],
    );
    expect(compileInt8(onnx, kernels)).toEqual({
      ok: false,
      reason: "node 1 (Sin 'Sin_1') is an operator int8 text plans do not run",
    });
  });

  it("takes INT32 ids too, and a dynamic sequence axis defaults to 128 tokens", async () => {
    const table = Float32Array.from({ length: VOCAB * 3 }, (_, i) => Math.sin(i));
    const onnx = buildModel(
      [{ op: "Gather", inputs: ["table", "ids"], outputs: ["y"] }],
      [{ name: "ids", type: ElemType.INT32, dims: ["N", "S"] }],
      [{ name: "y", type: ElemType.FLOAT, dims: ["N", "S", 3] }],
      13,
      [f32("table", [VOCAB, 3], table)],
    );
    const outcome = compileInt8(onnx, kernels);
    expect(outcome.ok && outcome.maxSequence).toBe(128);
    const run = await program(onnx);
    const tokens = [3, 0, VOCAB - 1];
    const got = run.runInputs([
      { name: "ids", datatype: "INT32", shape: [1, 3], data: Int32Array.from(tokens) },
    ]);
    expect(Array.from(got)).toEqual(
      tokens.flatMap((t) => Array.from(table.subarray(t * 3, t * 3 + 3))),
    );
    expect(() =>
      run.runInputs([
        { name: "ids", datatype: "INT32", shape: [1, 129], data: new Int32Array(129) },
      ]),
    ).toThrow(/sequences of 1 to 128 tokens .*got 129/);
  });

  it("refuses --max-sequence for a model whose sequence axis is fixed", () => {
    const outcome = compileInt8(fixture("text-small/text_small.onnx"), kernels, {
      maxSequence: 16,
    });
    expect(outcome).toEqual({
      ok: false,
      reason: "the model's sequence axis is fixed at 8; --max-sequence 16 does not apply",
    });
  });
});
