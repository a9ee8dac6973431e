/**
 * @module
 * Structured pruning of dense layers at publish: whole hidden units are removed
 * (a row of their layer's weights and bias, and the matching inputs of the next
 * layer), so the result is a smaller dense ONNX model that every runtime runs
 * faster — not sparse weights that dense kernels would multiply anyway.
 *
 * Units are ranked by their measured effect on the golden set when there is one
 * (the squared change of the outputs when that unit alone is replaced by its
 * mean activation, which pruning then folds into the next layer's bias), else
 * by weight norm (‖incoming‖ · ‖outgoing‖). A fraction removes that share of
 * every hidden layer's units, the least important first; `auto` binary-searches
 * the largest fraction whose golden-set score stays within the allowed drop.
 * Candidates are scored by onnxruntime-node on the ONNX that would be
 * published, and with `int8` also by the int8 runtime on its plan, since that
 * is what would serve.
 */
import ort from "onnxruntime-node";
import pkg from "onnx-proto";
import { invalid } from "../core/errors";
import { decodeOnnxModel, ElemType } from "../core/registry/onnx-structure";
import type { PruningRecord } from "../core/registry/manifest";
import type { Int8Kernels } from "../core/runtimes/int8/kernels";
import { erf } from "../core/runtimes/int8/executor";
import { loadProgram } from "../core/runtimes/int8/int8-runtime";
import { compileInt8, denseChainOf, type DenseLayer } from "./int8-compiler";
import { readGraph, type Graph } from "./onnx";

export type PruneMethod = PruningRecord["method"];

/** The golden cases pruning is measured on: inputs flattened per case, labels for classifiers. */
export interface PruneCases {
  inputs: Float32Array[];
  labels?: number[];
}

export interface PruneOptions {
  /** Share of each hidden layer's units to remove, in (0, 1), or `auto`. */
  fraction: number | "auto";
  cases?: PruneCases;
  /** Points (percentage points of accuracy or agreement) the pruned model may lose; default 0.5. */
  maxAccuracyDrop?: number;
  /** Score (and time) the int8 plan of each candidate too: what serves with `--quantize int8`. */
  int8?: { kernels: Int8Kernels; module: WebAssembly.Module };
  /** Multiply-adds the golden-effect ranking may spend per layer (default 4e8; see `rankByGoldenEffect`). */
  rankingBudgetMacs?: number;
  /** Batch-1 runs per timing (median); default 400. 0 skips timing. */
  timingRuns?: number;
}

/** One model in the report: the unpruned fp32, the pruned fp32, and with int8 the unpruned and pruned plans. */
export interface VariantReport {
  variant: "fp32" | "pruned" | "int8" | "pruned + int8";
  runtime: "onnxruntime-node" | "int8";
  /** Points (0–100) of `metric`, when there are golden cases. */
  score?: number;
  parameters: number;
  bytes: number;
  /** Median wall time of one batch-1 request, in-process, microseconds. */
  medianMicros?: number;
}

export interface SearchStep {
  fraction: number;
  score: number;
  int8Score?: number;
  accepted: boolean;
}

export interface PruneOutcome {
  onnx: Uint8Array;
  /** What the manifest records. */
  record: PruningRecord;
  variants: VariantReport[];
  /** The fractions `auto` tried, in order. */
  search: SearchStep[];
  /** The pruned chain's layers (weights K×N): the computation the pruned ONNX performs. */
  layers: DenseLayer[];
  softmax: boolean;
  /** The pruned model's outputs on the cases (onnxruntime-node), when there are cases. */
  outputs?: Float32Array[];
}

export const DEFAULT_MAX_ACCURACY_DROP = 0.5;

/** Most multiply-adds the golden-effect ranking may spend per layer before it ranks on fewer cases. */
const RANKING_BUDGET_MACS = 4e8;
/** Fewer cases than this would rank on noise: such layers rank by their local effect instead. */
const MIN_RANKING_ROWS = 32;

// ---------------------------------------------------------------- the dense chain

interface Chain {
  layers: DenseLayer[];
  softmax: boolean;
  /** The graph input's shape after the batch axis. */
  inputShape: number[];
  inputName: string;
  outputName: string;
}

/** The model as a prunable chain, or a refusal saying why its structure is not prunable yet. */
export function prunableChain(onnx: Uint8Array): Chain {
  const graph = readGraph(onnx);
  const conv = graph.nodes.find((n) => n.op === "Conv" || n.op === "ConvTranspose");
  if (conv) {
    throw invalid(
      `this model's structure is not prunable yet: it has convolutions (node ${conv.index}, ${conv.op}${conv.name ? ` '${conv.name}'` : ""}); --prune removes hidden units of chains of dense layers (Gemm or MatMul + Add with elementwise activations between), and pruning whole output channels of convolutions is not implemented`,
    );
  }
  const chain = denseChainOf(graph);
  if (!chain.ok) {
    throw invalid(
      `this model's structure is not prunable yet: --prune takes a chain of dense layers (Gemm or MatMul + Add with elementwise activations between), and here ${chain.reason}`,
    );
  }
  if (chain.layers.length < 2) {
    throw invalid("the model has a single dense layer: it has no hidden units to prune");
  }
  checkRewritable(onnx, graph, chain.layers);
  const input = graph.inputs[0]!;
  return {
    layers: chain.layers,
    softmax: chain.softmax,
    inputShape: input.shape.slice(1),
    inputName: input.name,
    outputName: graph.outputs[0]!.name,
  };
}

/** Pruning rewrites each layer's weight and bias: they must be initializers read by that layer alone. */
function checkRewritable(model: Uint8Array, graph: Graph, layers: DenseLayer[]): void {
  const initializers = new Set(
    (decodeOnnxModel(model).graph?.initializer ?? []).map((i) => i.name ?? ""),
  );
  const readers = new Map<string, number>();
  for (const node of graph.nodes) {
    for (const name of node.inputs) readers.set(name, (readers.get(name) ?? 0) + 1);
  }
  for (const layer of layers) {
    for (const name of [layer.weightName, layer.biasName]) {
      if (name === undefined) continue;
      if (!initializers.has(name)) {
        throw invalid(
          `layer ${layer.name} takes '${name}' from a Constant node; pruning rewrites initializers only`,
        );
      }
      if ((readers.get(name) ?? 0) > 1) {
        throw invalid(
          `layer ${layer.name}'s constant '${name}' is read by ${readers.get(name)} nodes; pruning rewrites it, so it must belong to one layer`,
        );
      }
    }
  }
}

const parametersOf = (layers: readonly DenseLayer[]) =>
  layers.reduce((sum, l) => sum + l.k * l.n + (l.bias ? l.n : 0), 0);

// ---------------------------------------------------------------- the reference computation

function activate(values: Float32Array, layer: DenseLayer): void {
  const alpha = layer.alpha ?? 0.01;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    switch (layer.activation) {
      case "relu":
        values[i] = v > 0 ? v : 0;
        break;
      case "leaky_relu":
        values[i] = v < 0 ? v * alpha : v;
        break;
      case "sigmoid":
        values[i] = 1 / (1 + Math.exp(-v));
        break;
      case "tanh":
        values[i] = Math.tanh(v);
        break;
      case "gelu":
        values[i] = 0.5 * v * (1 + erf(v / Math.SQRT2));
        break;
      case "none":
        return;
    }
  }
}

function softmaxRows(values: Float32Array, width: number): void {
  for (let row = 0; row < values.length; row += width) {
    let max = -Infinity;
    for (let i = row; i < row + width; i++) max = Math.max(max, values[i]!);
    let sum = 0;
    for (let i = row; i < row + width; i++) sum += values[i] = Math.exp(values[i]! - max);
    for (let i = row; i < row + width; i++) values[i]! /= sum;
  }
}

/** x [rows, k] · W [k, n] + bias, accumulated in f64 per output, stored as f32. */
function dense(x: Float32Array, rows: number, layer: DenseLayer): Float32Array {
  const { k, n, weights, bias } = layer;
  const out = new Float32Array(rows * n);
  const acc = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    if (bias) for (let j = 0; j < n; j++) acc[j] = bias[j]!;
    else acc.fill(0);
    for (let i = 0; i < k; i++) {
      const v = x[r * k + i]!;
      if (v === 0) continue;
      const w = i * n;
      for (let j = 0; j < n; j++) acc[j]! += v * weights[w + j]!;
    }
    out.set(acc, r * n);
  }
  return out;
}

/** Pre-activations (z) and activations (h) of every layer; the last h is the output. */
function forwardAll(
  layers: readonly DenseLayer[],
  softmax: boolean,
  x: Float32Array,
  rows: number,
): { z: Float32Array[]; h: Float32Array[] } {
  const z: Float32Array[] = [];
  const h: Float32Array[] = [];
  let current = x;
  layers.forEach((layer, l) => {
    const pre = dense(current, rows, layer);
    const post = pre.slice();
    activate(post, layer);
    if (l === layers.length - 1 && softmax) softmaxRows(post, layer.n);
    z.push(pre);
    h.push(post);
    current = post;
  });
  return { z, h };
}

/**
 * What the chain computes for `rows` flattened inputs `x`: the reference the
 * pruned ONNX must agree with under onnxruntime (up to summation order).
 */
export function forwardChain(
  layers: readonly DenseLayer[],
  softmax: boolean,
  x: Float32Array,
  rows: number,
): Float32Array {
  return forwardAll(layers, softmax, x, rows).h.at(-1)!;
}

// ---------------------------------------------------------------- ranking units

const concatRows = (rows: readonly Float32Array[]) => {
  const width = rows[0]?.length ?? 0;
  const out = new Float32Array(rows.length * width);
  rows.forEach((row, i) => out.set(row, i * width));
  return out;
};

/** Per case, the squared distance between outputs `y` and `reference`. */
function outputDistances(
  y: Float32Array,
  reference: Float32Array,
  width: number,
  rows: number,
): Float64Array {
  const distances = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let d = 0;
    for (let c = r * width; c < (r + 1) * width; c++) d += (y[c]! - reference[c]!) ** 2;
    distances[r] = d;
  }
  return distances;
}

const mean = (values: ArrayLike<number>) => {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  return values.length === 0 ? 0 : sum / values.length;
};

/** Each hidden layer's units, least important first, and (golden-effect) their mean activations. */
interface Ranking {
  order: number[][];
  /** Per hidden layer, each unit's mean activation on the cases: what removing it folds into the next bias. */
  means?: Float64Array[];
}

/**
 * Ranks each hidden layer's units by measured effect: the mean loss increase
 * on the cases when that unit alone is replaced by its mean activation over the
 * cases (the difference taken out of the next layer's pre-activations, the rest
 * of the network run again). The loss is the squared change of the outputs
 * (logits for classifiers): it measures what a unit contributes to the
 * function, which cross-entropy against the labels misses on the confident
 * cases (digits-mlp at 25 %: 96.1 % accuracy; ranked by cross-entropy and removed
 * without the mean folded in, 60.3 %). Large layers rank on an even sample of the cases, so the ranking
 * stays within `RANKING_BUDGET_MACS` per layer; the means use every case; a
 * layer that would get fewer than `MIN_RANKING_ROWS` cases ranks by its local
 * effect (`rankByLocalEffect`).
 */
function rankByGoldenEffect(chain: Chain, cases: PruneCases, budget: number): Ranking {
  const { layers, softmax } = chain;
  const last = layers.length - 1;
  const all = forwardAll(layers, softmax, concatRows(cases.inputs), cases.inputs.length);
  const means = layers.slice(0, last).map((layer, l) => {
    const sums = new Float64Array(layer.n);
    const h = all.h[l]!;
    for (let i = 0; i < h.length; i++) sums[i % layer.n]! += h[i]!;
    return sums.map((v) => v / cases.inputs.length);
  });
  const order: number[][] = [];
  for (let l = 0; l < last; l++) {
    const next = layers[l + 1]!;
    let rest = next.n;
    for (let m = l + 2; m <= last; m++) rest += layers[m]!.k * layers[m]!.n;
    const budgetRows = Math.floor(budget / (layers[l]!.n * rest));
    if (budgetRows < MIN_RANKING_ROWS) {
      order.push(rankByLocalEffect(all.h[l]!, means[l]!, next));
      continue;
    }
    const rows = Math.min(cases.inputs.length, budgetRows);
    const stride = cases.inputs.length / rows;
    const picked = Array.from({ length: rows }, (_, i) => Math.floor(i * stride));
    const x = concatRows(picked.map((i) => cases.inputs[i]!));
    const { z, h } = forwardAll(layers, softmax, x, rows);
    const y = h[last]!;
    const width = layers[last]!.n;
    const hidden = h[l]!;
    const units = layers[l]!.n;
    const effects = new Float64Array(units);
    for (let j = 0; j < units; j++) {
      const pre = z[l + 1]!.slice();
      let touched = false;
      for (let r = 0; r < rows; r++) {
        const d = hidden[r * units + j]! - means[l]![j]!;
        if (d === 0) continue;
        touched = true;
        for (let c = 0; c < next.n; c++) pre[r * next.n + c]! -= d * next.weights[j * next.n + c]!;
      }
      if (!touched) continue; // constant on these cases: its mean stands in for it exactly
      let current: Float32Array = pre;
      activate(current, next);
      if (l + 1 === last && softmax) softmaxRows(current, next.n);
      for (let m = l + 2; m <= last; m++) {
        current = dense(current, rows, layers[m]!);
        activate(current, layers[m]!);
        if (m === last && softmax) softmaxRows(current, layers[m]!.n);
      }
      effects[j] = mean(outputDistances(current, y, width, rows));
    }
    order.push(ascending(effects));
  }
  return { order, means };
}

/**
 * The ranking of a layer too large to run the rest of the network once per
 * unit: the effect on the next layer's pre-activations only, Σ over cases of
 * (h − mean)² · ‖outgoing weights‖², still measured on the golden set.
 */
function rankByLocalEffect(hidden: Float32Array, means: Float64Array, next: DenseLayer): number[] {
  const units = means.length;
  const effects = new Float64Array(units);
  for (let i = 0; i < hidden.length; i++)
    effects[i % units]! += (hidden[i]! - means[i % units]!) ** 2;
  for (let j = 0; j < units; j++) {
    let outgoing = 0;
    for (let c = 0; c < next.n; c++) outgoing += next.weights[j * next.n + c]! ** 2;
    effects[j]! *= outgoing;
  }
  return ascending(effects);
}

/** Each hidden layer's units, smallest ‖incoming weights and bias‖ · ‖outgoing weights‖ first. */
function rankByWeightNorm(layers: readonly DenseLayer[]): Ranking {
  const order = layers.slice(0, -1).map((layer, l) => {
    const next = layers[l + 1]!;
    const scores = new Float64Array(layer.n);
    for (let j = 0; j < layer.n; j++) {
      let incoming = layer.bias ? layer.bias[j]! ** 2 : 0;
      for (let i = 0; i < layer.k; i++) incoming += layer.weights[i * layer.n + j]! ** 2;
      let outgoing = 0;
      for (let c = 0; c < next.n; c++) outgoing += next.weights[j * next.n + c]! ** 2;
      scores[j] = Math.sqrt(incoming) * Math.sqrt(outgoing);
    }
    return ascending(scores);
  });
  return { order };
}

/** Indices sorted by score, ties by index (so rankings are deterministic). */
const ascending = (scores: Float64Array) =>
  Array.from(scores.keys()).sort((a, b) => scores[a]! - scores[b]! || a - b);

// ---------------------------------------------------------------- candidates

interface Candidate {
  fraction: number;
  /** Kept units per hidden layer, ascending. */
  keep: number[][];
  layers: DenseLayer[];
  onnx: Uint8Array;
}

/** Units a fraction removes from a layer of `units`: rounded down, and never the last one. */
const removedCount = (fraction: number, units: number) =>
  Math.min(units - 1, Math.floor(fraction * units + 1e-9));

/**
 * The layers without the removed units: their columns (outputs) go, and so do
 * the next layer's rows (inputs). With `means`, each removed unit's mean
 * activation times its outgoing weights is added to the next layer's bias, so
 * the unit is replaced by its average rather than by zero.
 */
function pruneLayers(
  layers: readonly DenseLayer[],
  keep: readonly number[][],
  means: readonly Float64Array[] | undefined,
): DenseLayer[] {
  return layers.map((layer, l) => {
    const rows = l > 0 ? keep[l - 1]! : undefined;
    let fullBias = layer.bias;
    if (rows && means && layer.bias) {
      const kept = new Set(rows);
      const shift = new Float64Array(layer.n);
      for (let i = 0; i < layer.k; i++) {
        const m = means[l - 1]![i]!;
        if (kept.has(i) || m === 0) continue;
        for (let j = 0; j < layer.n; j++) shift[j]! += m * layer.weights[i * layer.n + j]!;
      }
      fullBias = layer.bias.map((b, j) => b + shift[j]!);
    }
    const cols = l < layers.length - 1 ? keep[l]! : undefined;
    const k = rows?.length ?? layer.k;
    const n = cols?.length ?? layer.n;
    const weights = new Float32Array(k * n);
    for (let i = 0; i < k; i++) {
      const from = (rows ? rows[i]! : i) * layer.n;
      for (let j = 0; j < n; j++) weights[i * n + j] = layer.weights[from + (cols ? cols[j]! : j)]!;
    }
    const bias = fullBias
      ? cols
        ? Float32Array.from(cols, (c) => fullBias![c]!)
        : fullBias.slice()
      : null;
    return { ...layer, k, n, weights, bias };
  });
}

const { onnx: proto } = pkg;

function setFloats(init: pkg.onnx.ITensorProto, dims: number[], values: Float32Array): void {
  init.dims = dims;
  init.dataType = ElemType.FLOAT;
  init.rawData = new Uint8Array(
    values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength),
  );
  init.floatData = [];
}

/** The original model with the pruned layers' initializers rewritten; everything else as it was. */
function writePruned(
  model: Uint8Array,
  original: readonly DenseLayer[],
  pruned: readonly DenseLayer[],
): Uint8Array {
  const decoded = decodeOnnxModel(model);
  const graph = decoded.graph!;
  const byName = new Map((graph.initializer ?? []).map((i) => [i.name ?? "", i]));
  pruned.forEach((layer, l) => {
    const before = original[l]!;
    if (layer.k === before.k && layer.n === before.n) return;
    const weight = byName.get(layer.weightName)!;
    if (layer.transposed) {
      const stored = new Float32Array(layer.k * layer.n);
      for (let i = 0; i < layer.k; i++) {
        for (let j = 0; j < layer.n; j++) stored[j * layer.k + i] = layer.weights[i * layer.n + j]!;
      }
      setFloats(weight, [layer.n, layer.k], stored);
    } else {
      setFloats(weight, [layer.k, layer.n], layer.weights);
    }
    if (layer.biasName !== undefined && layer.bias) {
      const bias = byName.get(layer.biasName)!;
      const dims = (bias.dims ?? []).map(Number);
      dims[Math.max(0, dims.length - 1)] = layer.n;
      setFloats(bias, dims, layer.bias);
    }
  });
  // Shapes recorded for intermediate values would now be wrong; they are optional hints.
  graph.valueInfo = [];
  return new Uint8Array(proto.ModelProto.encode(decoded).finish());
}

function candidateAt(
  model: Uint8Array,
  chain: Chain,
  ranking: Ranking,
  fraction: number,
): Candidate {
  const keep = ranking.order.map((ranked, l) => {
    const removed = new Set(ranked.slice(0, removedCount(fraction, chain.layers[l]!.n)));
    return Array.from({ length: ranked.length }, (_, j) => j).filter((j) => !removed.has(j));
  });
  if (keep.every((units, l) => units.length === chain.layers[l]!.n)) {
    return { fraction, keep, layers: chain.layers, onnx: model };
  }
  const layers = pruneLayers(chain.layers, keep, ranking.means);
  return { fraction, keep, layers, onnx: writePruned(model, chain.layers, layers) };
}

// ---------------------------------------------------------------- measuring

/** Points (0–100): accuracy against the labels, or agreement (R², floored at 0) with the unpruned outputs. */
function scoreOf(
  outputs: readonly Float32Array[],
  reference: readonly Float32Array[],
  labels: readonly number[] | undefined,
): number {
  if (labels) {
    let correct = 0;
    outputs.forEach((row, i) => {
      if (argmax(row) === labels[i]) correct++;
    });
    return (100 * correct) / outputs.length;
  }
  const width = reference[0]!.length;
  const means = new Float64Array(width);
  for (const row of reference)
    for (let c = 0; c < width; c++) means[c]! += row[c]! / reference.length;
  let noise = 0;
  let spread = 0;
  reference.forEach((row, i) => {
    for (let c = 0; c < width; c++) {
      noise += (outputs[i]![c]! - row[c]!) ** 2;
      spread += (row[c]! - means[c]!) ** 2;
    }
  });
  if (spread === 0) return noise === 0 ? 100 : 0;
  return Math.max(0, 100 * (1 - noise / spread)); // R² below 0 is no agreement at all
}

const argmax = (values: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
};

/** A model in onnxruntime-node, one thread (as a request is served), for scoring and timing. */
class OrtModel {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly chain: Chain,
  ) {}

  static async load(model: Uint8Array, chain: Chain): Promise<OrtModel> {
    const session = await ort.InferenceSession.create(model, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    return new OrtModel(session, chain);
  }

  async runOne(x: Float32Array): Promise<Float32Array> {
    const out = await this.session.run({
      [this.chain.inputName]: new ort.Tensor("float32", x, [1, ...this.chain.inputShape]),
    });
    return out[this.chain.outputName]!.data as Float32Array;
  }

  /** Outputs per case, in blocks of 1024 cases. */
  async run(inputs: readonly Float32Array[]): Promise<Float32Array[]> {
    const outputs: Float32Array[] = [];
    for (let start = 0; start < inputs.length; start += 1024) {
      const block = inputs.slice(start, start + 1024);
      const out = await this.session.run({
        [this.chain.inputName]: new ort.Tensor("float32", concatRows(block), [
          block.length,
          ...this.chain.inputShape,
        ]),
      });
      const all = out[this.chain.outputName]!.data as Float32Array;
      const width = all.length / block.length;
      for (let i = 0; i < block.length; i++) outputs.push(all.slice(i * width, (i + 1) * width));
    }
    return outputs;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/**
 * Median wall time of `runs` batch-1 calls of each runner after a warm-up, in
 * microseconds. The runners take turns in rounds of 20 calls, so a slow spell
 * on a shared machine weighs on all of them alike.
 */
async function interleavedMedians(
  runners: readonly ((x: Float32Array) => unknown)[],
  inputs: readonly Float32Array[],
  runs: number,
): Promise<number[]> {
  const call = async (runOne: (x: Float32Array) => unknown, i: number) => {
    const result = runOne(inputs[i % inputs.length]!);
    if (result instanceof Promise) await result;
  };
  for (const runOne of runners) for (let i = 0; i < Math.min(50, runs); i++) await call(runOne, i);
  const times = runners.map(() => [] as number[]);
  for (let done = 0; done < runs; done += 20) {
    for (const [r, runOne] of runners.entries()) {
      for (let i = done; i < Math.min(runs, done + 20); i++) {
        const start = process.hrtime.bigint();
        await call(runOne, i);
        times[r]!.push(Number(process.hrtime.bigint() - start) / 1000);
      }
    }
  }
  return times.map((t) => t.sort((a, b) => a - b)[Math.floor(t.length / 2)]!);
}

interface Int8Candidate {
  plan: Uint8Array;
  run: (x: Float32Array) => Float32Array;
}

async function int8Of(
  model: Uint8Array,
  int8: NonNullable<PruneOptions["int8"]>,
): Promise<Int8Candidate | undefined> {
  const outcome = compileInt8(model, int8.kernels);
  if (!outcome.ok) return undefined;
  const program = await loadProgram(int8.module, outcome.plan);
  return { plan: outcome.plan, run: (x) => program.run(x, 1) };
}

/** Deterministic inputs in [0, 1) for timing a model published without golden cases. */
function syntheticInputs(width: number, count: number): Float32Array[] {
  let state = 0x9e3779b9;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  return Array.from({ length: count }, () => Float32Array.from({ length: width }, next));
}

// ---------------------------------------------------------------- pruning

const percent = (fraction: number) => `${(fraction * 100).toFixed(1)}%`;

/**
 * Prunes the hidden units of a dense chain: a given fraction of each hidden
 * layer, or (`auto`) the largest fraction whose golden-set score — and, with
 * `int8`, the int8 plan's score — stays within `maxAccuracyDrop` points of the
 * unpruned fp32 model's. Refuses a fixed fraction that loses more than that,
 * and models whose structure is not a dense chain, saying why.
 */
export async function pruneDenseModel(
  model: Uint8Array,
  options: PruneOptions,
): Promise<PruneOutcome> {
  const { fraction: requested, cases, int8 } = options;
  const drop = options.maxAccuracyDrop ?? DEFAULT_MAX_ACCURACY_DROP;
  if (requested !== "auto" && !(requested > 0 && requested < 1)) {
    throw invalid(`--prune takes a fraction between 0 and 1 (exclusive) or auto, not ${requested}`);
  }
  if (!(drop >= 0 && drop <= 100)) {
    throw invalid(`--max-accuracy-drop takes points between 0 and 100, not ${drop}`);
  }
  if (requested === "auto" && !cases) {
    throw invalid("--prune auto needs golden cases (--golden) to measure the accuracy it keeps");
  }
  const chain = prunableChain(model);
  const width = chain.inputShape.reduce((a, b) => a * b, 1);
  if (cases) {
    if (cases.inputs.length === 0) throw invalid("pruning needs at least one golden case");
    const wrong = cases.inputs.findIndex((row) => row.length !== width);
    if (wrong >= 0) {
      throw invalid(
        `golden case ${wrong} has ${cases.inputs[wrong]!.length} values; the model takes ${width}`,
      );
    }
    if (cases.labels && cases.labels.length !== cases.inputs.length) {
      throw invalid("the golden set has a label count other than its case count");
    }
    const classes = chain.layers.at(-1)!.n;
    const bad = cases.labels?.findIndex((label) => !(label >= 0 && label < classes)) ?? -1;
    if (bad >= 0) {
      throw invalid(
        `golden label ${bad} is ${cases.labels![bad]}; the model has ${classes} classes`,
      );
    }
  }
  const method: PruneMethod = cases ? "golden-effect" : "weight-norm";
  const ranking = cases
    ? rankByGoldenEffect(chain, cases, options.rankingBudgetMacs ?? RANKING_BUDGET_MACS)
    : rankByWeightNorm(chain.layers);

  const original = await OrtModel.load(model, chain);
  const reference = cases ? await original.run(cases.inputs) : undefined;
  const labels = cases?.labels;
  const baseline = reference ? scoreOf(reference, reference, labels) : undefined;

  const search: SearchStep[] = [];
  const scores = new Map<
    Candidate,
    { score: number; int8Score?: number; outputs: Float32Array[] }
  >();
  const evaluate = async (candidate: Candidate) => {
    const pruned = await OrtModel.load(candidate.onnx, chain);
    const outputs = await pruned.run(cases!.inputs);
    await pruned.release();
    const score = scoreOf(outputs, reference!, labels);
    let int8Score: number | undefined;
    if (int8) {
      const program = await int8Of(candidate.onnx, int8);
      if (program) int8Score = scoreOf(cases!.inputs.map(program.run), reference!, labels);
    }
    const floor = baseline! - drop - 1e-9;
    const accepted = score >= floor && (int8Score === undefined || int8Score >= floor);
    scores.set(candidate, { score, ...(int8Score !== undefined ? { int8Score } : {}), outputs });
    search.push({
      fraction: candidate.fraction,
      score,
      ...(int8Score !== undefined ? { int8Score } : {}),
      accepted,
    });
    return accepted;
  };

  let chosen: Candidate;
  if (requested === "auto") {
    // Binary search over the widest layer's unit count: the fractions that change what is removed.
    const widest = Math.max(...chain.layers.slice(0, -1).map((l) => l.n));
    let [lo, hi] = [0, widest - 1];
    chosen = candidateAt(model, chain, ranking, 0);
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      const candidate = candidateAt(model, chain, ranking, mid / widest);
      if (await evaluate(candidate)) {
        lo = mid;
        chosen = candidate;
      } else {
        hi = mid - 1;
      }
    }
    if (!scores.has(chosen)) await evaluate(chosen);
  } else {
    chosen = candidateAt(model, chain, ranking, requested);
    if (cases && !(await evaluate(chosen))) {
      const { score, int8Score } = scores.get(chosen)!;
      const metric = labels ? "accuracy" : "agreement";
      const lost =
        int8Score !== undefined && int8Score < score
          ? `${int8Score.toFixed(2)} with int8`
          : score.toFixed(2);
      throw invalid(
        `pruning ${percent(requested)} of the hidden units takes golden-set ${metric} from ${baseline!.toFixed(2)} to ${lost}, more than --max-accuracy-drop ${drop} points; prune less, use --prune auto, or allow a larger drop`,
      );
    }
  }

  // The report: sizes, scores and batch-1 compute of fp32, pruned, pruned + int8 — and, for
  // comparison, the unpruned int8 plan, so pruning's own gain on the int8 runtime shows.
  const prunedModel = await OrtModel.load(chosen.onnx, chain);
  const measured = scores.get(chosen);
  const program = int8 ? await int8Of(chosen.onnx, int8) : undefined;
  const unprunedProgram = program ? await int8Of(model, int8!) : undefined;
  const unprunedInt8Score =
    unprunedProgram && cases
      ? scoreOf(cases.inputs.map(unprunedProgram.run), reference!, labels)
      : undefined;
  const runners: ((x: Float32Array) => unknown)[] = [
    (x) => original.runOne(x),
    (x) => prunedModel.runOne(x),
    ...(unprunedProgram ? [unprunedProgram.run] : []),
    ...(program ? [program.run] : []),
  ];
  const runs = options.timingRuns ?? 400;
  const medians =
    runs > 0
      ? await interleavedMedians(runners, cases?.inputs ?? syntheticInputs(width, 64), runs)
      : [];
  await original.release();
  await prunedModel.release();
  const timing = (i: number) => (medians[i] !== undefined ? { medianMicros: medians[i] } : {});
  const variants: VariantReport[] = [
    {
      variant: "fp32",
      runtime: "onnxruntime-node",
      ...(baseline !== undefined ? { score: baseline } : {}),
      parameters: parametersOf(chain.layers),
      bytes: model.byteLength,
      ...timing(0),
    },
    {
      variant: "pruned",
      runtime: "onnxruntime-node",
      ...(measured ? { score: measured.score } : {}),
      parameters: parametersOf(chosen.layers),
      bytes: chosen.onnx.byteLength,
      ...timing(1),
    },
  ];
  if (unprunedProgram && program) {
    variants.push(
      {
        variant: "int8",
        runtime: "int8",
        ...(unprunedInt8Score !== undefined ? { score: unprunedInt8Score } : {}),
        parameters: parametersOf(chain.layers),
        bytes: unprunedProgram.plan.byteLength,
        ...timing(2),
      },
      {
        variant: "pruned + int8",
        runtime: "int8",
        ...(measured?.int8Score !== undefined ? { score: measured.int8Score } : {}),
        parameters: parametersOf(chosen.layers),
        bytes: program.plan.byteLength,
        ...timing(3),
      },
    );
  }

  const record: PruningRecord = {
    method,
    fraction: chosen.fraction,
    requested,
    layers: chain.layers.slice(0, -1).map((layer, l) => ({
      name: layer.name,
      units: layer.n,
      kept: chosen.keep[l]!.length,
      removed: layer.n - chosen.keep[l]!.length,
    })),
    parameters: { before: parametersOf(chain.layers), after: parametersOf(chosen.layers) },
    ...(cases
      ? {
          maxAccuracyDrop: drop,
          accuracy: {
            metric: labels ? "accuracy" : "agreement",
            cases: cases.inputs.length,
            fp32: baseline!,
            pruned: measured!.score,
            ...(measured!.int8Score !== undefined ? { prunedInt8: measured!.int8Score } : {}),
          },
        }
      : {}),
  };
  return {
    onnx: chosen.onnx,
    record,
    variants,
    search: requested === "auto" ? search : [],
    layers: chosen.layers,
    softmax: chain.softmax,
    ...(measured ? { outputs: measured.outputs } : {}),
  };
}
