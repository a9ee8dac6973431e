/**
 * The graph compiler and executor end to end in Node: real CNN fixtures from
 * PyTorch compiled to graph plans and run on the built kernels, compared with
 * the fixtures' fp32 answers; every supported operator against onnxruntime on
 * random shapes (stride 2, asymmetric padding, 1×1, depthwise, odd sizes,
 * batch 1 and 7); a sample's answer alone and inside a batch; the arena's
 * buffers never overlapping while alive; unsupported graphs named by node.
 */
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { compileGraph, planArena } from "../../convert/graph-compiler";
import { compileInt8 } from "../../convert/int8-compiler";
import {
  ElemType,
  buildModel,
  readGraph,
  type Initializer,
  type NodeSpec,
} from "../../convert/onnx";
import { decodeGraphPlan, stepBuffers } from "../../core/runtimes/int8/graph-plan";
import { loadProgram, type Int8Program } from "../../core/runtimes/int8/int8-runtime";
import type { Int8Kernels } from "../../core/runtimes/int8/kernels";
import { planFormatVersion } from "../../core/runtimes/int8/plan";
import { loadKernels, loadKernelsModule } from "../../scripts/lib/kernels-node";
import { ort, session } from "../../scripts/lib/onnx-graph";
import { Random } from "../assembly/random";

const fixture = (path: string) =>
  new Uint8Array(readFileSync(new URL(`../../fixtures/${path}`, import.meta.url)));
const fixtureJson = <T>(path: string) => JSON.parse(new TextDecoder().decode(fixture(path))) as T;

interface TestSet {
  inputs: unknown[];
  labels: number[];
  logits: number[][];
}

let module: WebAssembly.Module;
let kernels: Int8Kernels;
beforeAll(async () => {
  module = await loadKernelsModule();
  kernels = await loadKernels();
});

async function program(onnx: Uint8Array): Promise<Int8Program> {
  const outcome = compileInt8(onnx, kernels);
  if (!outcome.ok) throw new Error(outcome.reason);
  expect(planFormatVersion(outcome.plan)).toBe(3);
  return loadProgram(module, outcome.plan);
}

const argmax = (v: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
};

describe("graph plans of the CNN fixtures", () => {
  for (const [name, file, testset] of [
    ["digits-cnn", "digits-cnn/digits_cnn.onnx", "digits-cnn/testset.json"],
    ["cnn-small", "cnn-small/cnn_small.onnx", "cnn-small/testset.json"],
  ] as const) {
    it(`${name}: int8 accuracy within 0.5 points of fp32, top-1 agreement at least 99 %`, async () => {
      const set = fixtureJson<TestSet>(testset);
      const run = await program(fixture(file));
      const width = set.logits[0]!.length;
      const x = Float32Array.from(set.inputs.flat(16) as number[]);
      const y = run.run(x, set.inputs.length);
      expect(y).toHaveLength(set.inputs.length * width);
      let agree = 0;
      let fp32Right = 0;
      let int8Right = 0;
      let worst = 0;
      set.logits.forEach((want, i) => {
        const got = y.subarray(i * width, (i + 1) * width);
        if (argmax(got) === argmax(want)) agree++;
        if (argmax(want) === set.labels[i]) fp32Right++;
        if (argmax(got) === set.labels[i]) int8Right++;
        want.forEach((w, j) => (worst = Math.max(worst, Math.abs(w - got[j]!))));
      });
      const n = set.inputs.length;
      expect(agree / n).toBeGreaterThanOrEqual(0.99);
      expect(Math.abs(int8Right - fp32Right) / n).toBeLessThanOrEqual(0.005);
      // Quantisation error, not a wrong computation: logits span about ±10.
      expect(worst).toBeLessThan(1);
    });

    it(`${name}: each sample alone gives exactly its answer inside a batch`, async () => {
      const set = fixtureJson<TestSet>(testset);
      const run = await program(fixture(file));
      const rows = 100;
      const x = Float32Array.from(set.inputs.slice(0, rows).flat(16) as number[]);
      const per = x.length / rows;
      const batch = run.run(x, rows);
      const width = batch.length / rows;
      for (const i of [0, 1, 7, 42, 99]) {
        const alone = run.run(x.slice(i * per, (i + 1) * per), 1);
        expect(Array.from(alone)).toEqual(Array.from(batch.subarray(i * width, (i + 1) * width)));
      }
    });
  }

  it("plans an arena in which no two buffers alive at once overlap", () => {
    for (const file of ["digits-cnn/digits_cnn.onnx", "cnn-small/cnn_small.onnx"]) {
      const outcome = compileGraph(readGraph(fixture(file)));
      if (!outcome.ok) throw new Error(outcome.reason);
      const plan = decodeGraphPlan(outcome.plan);
      const alive = plan.buffers.map(() => [Infinity, -Infinity]);
      const touch = (id: number, at: number) => {
        alive[id]![0] = Math.min(alive[id]![0]!, at);
        alive[id]![1] = Math.max(alive[id]![1]!, at);
      };
      touch(plan.input.buffer, -1);
      touch(plan.output.buffer, plan.steps.length);
      plan.steps.forEach((step, at) => stepBuffers(step).forEach(([id]) => touch(id, at)));
      const total = plan.buffers.reduce((sum, b) => sum + b.elements, 0);
      expect(plan.arenaElements).toBeLessThan(total); // buffers were reused
      for (let a = 0; a < plan.buffers.length; a++) {
        for (let b = a + 1; b < plan.buffers.length; b++) {
          const [ba, bb] = [plan.buffers[a]!, plan.buffers[b]!];
          const timeOverlap = alive[a]![0]! <= alive[b]![1]! && alive[b]![0]! <= alive[a]![1]!;
          const spaceOverlap =
            ba.offset < bb.offset + bb.elements && bb.offset < ba.offset + ba.elements;
          expect(timeOverlap && spaceOverlap, `buffers ${a} and ${b}`).toBe(false);
        }
      }
    }
  });

  it("planArena packs disjoint lifetimes into the same space", () => {
    const steps = [
      { op: "activate", input: 0, output: 1, count: 4, act: "relu", p0: 0, p1: 0 },
      { op: "activate", input: 1, output: 2, count: 4, act: "relu", p0: 0, p1: 0 },
      { op: "activate", input: 2, output: 3, count: 4, act: "relu", p0: 0, p1: 0 },
    ] as const;
    const { offsets, size } = planArena([4, 4, 4, 4], [...steps], 0, 3);
    expect(size).toBe(8);
    expect(offsets[0]).not.toBe(offsets[1]);
    expect(offsets[1]).not.toBe(offsets[2]);
    expect(offsets[2]).not.toBe(offsets[3]);
  });

  it("names the node that stops compilation, and the version stays on onnxruntime", () => {
    const model = buildModel(
      [
        { op: "Conv", inputs: ["x", "w"], outputs: ["c"], attributes: { kernel_shape: [1, 1] } },
        { op: "Sin", inputs: ["c"], outputs: ["y"] },
      ],
      [{ name: "x", type: ElemType.FLOAT, dims: ["N", 2, 4, 4] }],
      [{ name: "y", type: ElemType.FLOAT, dims: ["N", 2, 4, 4] }],
      13,
      [{ name: "w", type: ElemType.FLOAT, dims: [2, 2, 1, 1], data: Float32Array.of(1, 0, 0, 1) }],
    );
    expect(compileInt8(model, kernels)).toEqual({
      ok: false,
      reason: "node 1 (Sin 'Sin_1') is an operator int8 graph plans do not run",
    });
    const dilated = buildModel(
      [
        {
          op: "Conv",
          inputs: ["x", "w"],
          outputs: ["y"],
          attributes: { kernel_shape: [1, 1], dilations: [2, 2] },
        },
      ],
      [{ name: "x", type: ElemType.FLOAT, dims: ["N", 2, 4, 4] }],
      [{ name: "y", type: ElemType.FLOAT, dims: ["N", 2, 4, 4] }],
      13,
      [{ name: "w", type: ElemType.FLOAT, dims: [2, 2, 1, 1], data: Float32Array.of(1, 0, 0, 1) }],
    );
    expect(compileInt8(dilated, kernels)).toEqual({
      ok: false,
      reason: "node 0 (Conv 'Conv_0') has dilations [2,2]; only 1 is supported",
    });
  });
});

/** One random operator graph, with its onnxruntime reference. */
interface Case {
  what: string;
  nodes: NodeSpec[];
  initializers: Initializer[];
  input: [number, number, number];
  output: number[];
}

function randomWeights(
  rng: Random,
  dims: number[],
  scale = 0.5,
): Initializer & { data: Float32Array } {
  const n = dims.reduce((a, b) => a * b, 1);
  return {
    name: `w${rng.int(0, 1e9)}`,
    type: ElemType.FLOAT,
    dims,
    data: Float32Array.from({ length: n }, () => rng.normal() * scale),
  };
}

function convCase(
  rng: Random,
  c: number,
  h: number,
  w: number,
  opts: {
    cout: number;
    k: number;
    stride: number;
    pads: number[];
    depthwise?: boolean;
    act?: string;
  },
): Case {
  const group = opts.depthwise ? c : 1;
  const cout = opts.depthwise ? c : opts.cout;
  const weight = randomWeights(
    rng,
    [cout, c / group, opts.k, opts.k],
    1 / Math.sqrt(opts.k * opts.k * (c / group)),
  );
  const bias = randomWeights(rng, [cout], 0.1);
  const nodes: NodeSpec[] = [
    {
      op: "Conv",
      inputs: ["x", weight.name, bias.name],
      outputs: [opts.act ? "c" : "y"],
      attributes: {
        kernel_shape: [opts.k, opts.k],
        strides: [opts.stride, opts.stride],
        pads: opts.pads,
        group,
      },
    },
  ];
  const initializers: Initializer[] = [weight, bias];
  if (opts.act === "Clip") {
    const lo = { name: "lo", type: ElemType.FLOAT, dims: [], data: Float32Array.of(0) };
    const hi = { name: "hi", type: ElemType.FLOAT, dims: [], data: Float32Array.of(6) };
    initializers.push(lo, hi);
    nodes.push({ op: "Clip", inputs: ["c", "lo", "hi"], outputs: ["y"] });
  } else if (opts.act) {
    nodes.push({ op: opts.act, inputs: ["c"], outputs: ["y"] });
  }
  const [top, left, bottom, right] = opts.pads as [number, number, number, number];
  const outH = Math.floor((h + top + bottom - opts.k) / opts.stride) + 1;
  const outW = Math.floor((w + left + right - opts.k) / opts.stride) + 1;
  return {
    what: `${opts.depthwise ? "depthwise" : "conv"} ${c}×${h}×${w} → ${cout}, k ${opts.k}, stride ${opts.stride}, pads [${opts.pads}]${opts.act ? `, ${opts.act}` : ""}`,
    nodes,
    initializers,
    input: [c, h, w],
    output: [cout, outH, outW],
  };
}

async function compare(rng: Random, testCase: Case, batch: number, opset = 14) {
  const model = buildModel(
    testCase.nodes,
    [{ name: "x", type: ElemType.FLOAT, dims: ["N", ...testCase.input] }],
    [{ name: "y", type: ElemType.FLOAT, dims: ["N", ...testCase.output] }],
    opset,
    testCase.initializers,
  );
  const run = await program(model);
  const x = Float32Array.from({ length: batch * testCase.input.reduce((a, b) => a * b, 1) }, () =>
    rng.normal(),
  );
  const reference = await session(model);
  try {
    const want = (
      await reference.run({ x: new ort.Tensor("float32", x, [batch, ...testCase.input]) })
    ).y!.data as Float32Array;
    const got = run.run(x, batch);
    expect(got.length, testCase.what).toBe(want.length);
    // int8 activations and weights: errors of a few per cent of the output's range.
    let range = 0;
    let worst = 0;
    for (let i = 0; i < want.length; i++) {
      range = Math.max(range, Math.abs(want[i]!));
      worst = Math.max(worst, Math.abs(want[i]! - got[i]!));
    }
    expect(worst, `${testCase.what}, batch ${batch}`).toBeLessThanOrEqual(0.05 * range + 1e-6);
  } finally {
    await reference.release();
  }
}

describe("graph plan operators against onnxruntime", () => {
  it("convolutions: 1×1, 3×3, 5×5, stride 1 and 2, symmetric and asymmetric padding, odd sizes", async () => {
    const rng = new Random(15);
    const cases = [
      convCase(rng, 3, 9, 7, { cout: 5, k: 3, stride: 1, pads: [1, 1, 1, 1] }),
      convCase(rng, 4, 8, 8, { cout: 8, k: 3, stride: 2, pads: [1, 1, 1, 1], act: "Relu" }),
      convCase(rng, 5, 11, 6, { cout: 3, k: 3, stride: 2, pads: [0, 1, 1, 0] }),
      convCase(rng, 8, 6, 6, { cout: 16, k: 1, stride: 1, pads: [0, 0, 0, 0], act: "Clip" }),
      convCase(rng, 3, 13, 13, { cout: 7, k: 5, stride: 2, pads: [2, 2, 2, 2], act: "HardSwish" }),
      convCase(rng, 1, 8, 8, { cout: 4, k: 3, stride: 1, pads: [1, 1, 1, 1], act: "Sigmoid" }),
      convCase(rng, 6, 7, 5, { cout: 6, k: 3, stride: 1, pads: [1, 1, 1, 1], depthwise: true }),
      convCase(rng, 9, 10, 10, {
        cout: 9,
        k: 3,
        stride: 2,
        pads: [1, 1, 1, 1],
        depthwise: true,
        act: "Clip",
      }),
      convCase(rng, 16, 5, 5, { cout: 16, k: 5, stride: 1, pads: [2, 1, 2, 1], depthwise: true }),
    ];
    for (const testCase of cases) for (const batch of [1, 7]) await compare(rng, testCase, batch);
  });

  it("BatchNormalization folds into the convolution before it", async () => {
    const rng = new Random(16);
    const base = convCase(rng, 4, 6, 6, { cout: 6, k: 3, stride: 1, pads: [1, 1, 1, 1] });
    const stats = ["scale", "shift", "mean", "variance"].map((name, i) => ({
      name,
      type: ElemType.FLOAT,
      dims: [6],
      data: Float32Array.from({ length: 6 }, () => (i === 3 ? 0.5 + rng.next() : rng.normal())),
    }));
    base.nodes[0]!.outputs = ["c"];
    const testCase: Case = {
      ...base,
      what: "conv + batchnorm + relu",
      nodes: [
        base.nodes[0]!,
        { op: "BatchNormalization", inputs: ["c", ...stats.map((s) => s.name)], outputs: ["bn"] },
        { op: "Relu", inputs: ["bn"], outputs: ["y"] },
      ],
      initializers: [...base.initializers, ...stats],
    };
    for (const batch of [1, 7]) await compare(rng, testCase, batch);
  });

  it("pooling, residual Add, squeeze-and-excitation Mul, Concat, HardSigmoid, Flatten + Gemm + Softmax", async () => {
    const rng = new Random(17);
    const conv = randomWeights(rng, [6, 3, 3, 3], 0.3);
    const pw = randomWeights(rng, [6, 6, 1, 1], 0.4);
    const se = randomWeights(rng, [6, 6, 1, 1], 0.4);
    const fc = randomWeights(rng, [5, 12 * 2 * 2], 0.2);
    const fcBias = randomWeights(rng, [5], 0.1);
    const nodes: NodeSpec[] = [
      {
        op: "Conv",
        inputs: ["x", conv.name],
        outputs: ["a"],
        attributes: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] },
      },
      { op: "Relu", inputs: ["a"], outputs: ["a1"] },
      {
        op: "MaxPool",
        inputs: ["a1"],
        outputs: ["p"],
        attributes: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] },
      },
      { op: "Conv", inputs: ["p", pw.name], outputs: ["b"], attributes: { kernel_shape: [1, 1] } },
      { op: "Add", inputs: ["p", "b"], outputs: ["r"] },
      { op: "GlobalAveragePool", inputs: ["r"], outputs: ["g"] },
      { op: "Conv", inputs: ["g", se.name], outputs: ["g1"], attributes: { kernel_shape: [1, 1] } },
      {
        op: "HardSigmoid",
        inputs: ["g1"],
        outputs: ["gate"],
        attributes: { alpha: { float: 0.2 }, beta: { float: 0.5 } },
      },
      { op: "Mul", inputs: ["r", "gate"], outputs: ["s"] },
      {
        op: "AveragePool",
        inputs: ["s"],
        outputs: ["q"],
        attributes: { kernel_shape: [2, 2], strides: [2, 2] },
      },
      {
        op: "AveragePool",
        inputs: ["r"],
        outputs: ["q2"],
        attributes: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] },
      },
      { op: "Concat", inputs: ["q", "q2"], outputs: ["cat"], attributes: { axis: 1 } },
      { op: "Flatten", inputs: ["cat"], outputs: ["f"], attributes: { axis: 1 } },
      {
        op: "Gemm",
        inputs: ["f", fc.name, fcBias.name],
        outputs: ["logits"],
        attributes: { transB: 1 },
      },
      { op: "Softmax", inputs: ["logits"], outputs: ["y"], attributes: { axis: 1 } },
    ];
    const testCase: Case = {
      what: "mixed graph",
      nodes,
      initializers: [conv, pw, se, fc, fcBias],
      input: [3, 8, 8],
      output: [5],
    };
    for (const batch of [1, 7]) await compare(rng, testCase, batch);
  });

  it("answers a spatial output in ONNX's NCHW order", async () => {
    const rng = new Random(18);
    const testCase = convCase(rng, 3, 5, 6, { cout: 4, k: 3, stride: 1, pads: [1, 1, 1, 1] });
    await compare(rng, testCase, 3);
  });
});
