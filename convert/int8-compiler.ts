/**
 * @module
 * The int8 compiler: recognises ONNX graphs that are chains of dense layers
 * (Gemm, or MatMul + Add, with ReLU, LeakyReLU, Sigmoid, Tanh or GELU between,
 * an optional Softmax at the end, and Flatten/Reshape that only flatten the
 * input) and compiles them into an int8 plan — per-output-channel symmetric
 * int8 weights, pre-packed for the kernels. Anything else is not compiled, and
 * the outcome names the node that stopped it.
 */
import type { Int8Kernels } from "../core/runtimes/int8/kernels";
import {
  encodePlan,
  type PlanActivation,
  type PlanBlobs,
  type PlanLayer,
} from "../core/runtimes/int8/plan";
import { compileGraph, int8Preconditions } from "./graph-compiler";
import { readGraph, type Graph, type GraphNode } from "./onnx";
import { compileText, takesTokens, type TextCompileOptions } from "./text-compiler";
import { db, quantiseWeights } from "./weight-quantisation";

export interface LayerReport {
  name: string;
  k: number;
  n: number;
  /** A chain plan's activation, or a graph plan's fused one. */
  activation: string;
  sqnrDb: number;
  absmaxSqnrDb: number;
}

/** A compiled layer's numbers, unpacked (for reports and equivalence tests). */
export interface QuantisedLayer {
  /** K×N row-major int8 weights. */
  weights: Int8Array;
  scales: Float32Array;
  bias: Float32Array | null;
}

export type CompileOutcome =
  | {
      ok: true;
      plan: Uint8Array;
      layers: LayerReport[];
      /** A chain plan's layers, unpacked (graph plans store theirs plainly in the plan). */
      quantised?: QuantisedLayer[];
      /** A text plan's longest sequence (from the model, or `maxSequence`). */
      maxSequence?: number;
    }
  | { ok: false; reason: string };

/** What publish may say about a model beyond its ONNX file. */
export type CompileOptions = TextCompileOptions;

export interface DenseLayer {
  name: string;
  k: number;
  n: number;
  /** K×N row-major (MatMul's B orientation). */
  weights: Float32Array;
  bias: Float32Array | null;
  activation: PlanActivation;
  alpha?: number;
  /** Where the weights are stored, for rewriting them (pruning): the constant's name and layout. */
  weightName: string;
  /** True when stored [N, K] (Gemm transB = 1), else [K, N]. */
  transposed: boolean;
  biasName?: string;
}

/** A graph matched as a chain of dense layers, or why it is not one. */
export type DenseChainOutcome =
  { ok: true; layers: DenseLayer[]; softmax: boolean } | { ok: false; reason: string };

class Unsupported extends Error {}

const describeNode = (node: GraphNode) =>
  `node ${node.index} (${node.op}${node.name ? ` '${node.name}'` : ""})`;

function near(value: number, target: number): boolean {
  return Math.abs(value - target) <= 1e-5 * Math.max(1, Math.abs(target));
}

/** Matches the graph as a chain of dense layers; throws `Unsupported` with the reason otherwise. */
function matchDenseChain(graph: Graph): { layers: DenseLayer[]; softmax: boolean; width: number } {
  const unfit = int8Preconditions(graph);
  if (unfit) throw new Unsupported(unfit);
  const input = graph.inputs[0]!;
  const output = graph.outputs[0]!;
  const consumers = new Map<string, GraphNode[]>();
  for (const node of graph.nodes) {
    for (const name of node.inputs) consumers.set(name, [...(consumers.get(name) ?? []), node]);
  }
  const constant = (name: string | undefined, node: GraphNode) => {
    const c = name ? graph.constants.get(name) : undefined;
    if (!c || !(c.values instanceof Float32Array)) {
      throw new Unsupported(
        `${describeNode(node)} takes '${name}' at run time; int8 layers need constant weights`,
      );
    }
    return c as { dims: number[]; values: Float32Array };
  };
  const fixedWidth = input.shape.slice(1);
  if (fixedWidth.some((d) => d <= 0)) {
    throw new Unsupported(
      `input '${input.name}' has dynamic feature dimensions [${input.shape.join(", ")}]`,
    );
  }
  let width = fixedWidth.reduce((a, b) => a * b, 1);
  let flat = input.shape.length === 2;
  const layers: DenseLayer[] = [];
  let softmax = false;
  let current = input.name;

  const only = (name: string): GraphNode => {
    const next = consumers.get(name) ?? [];
    if (next.length !== 1) {
      throw new Unsupported(
        `'${name}' feeds ${next.length} nodes; only a chain of layers compiles`,
      );
    }
    return next[0]!;
  };
  const setActivation = (node: GraphNode, activation: PlanActivation, alpha?: number) => {
    const last = layers.at(-1);
    if (!last || last.activation !== "none" || softmax) {
      throw new Unsupported(`${describeNode(node)} does not follow a dense layer`);
    }
    last.activation = activation;
    if (alpha !== undefined) last.alpha = alpha;
  };

  while (current !== output.name) {
    const next = consumers.get(current) ?? [];
    // GELU in erf form reads its input twice: x · 0.5 · (1 + erf(x / √2)).
    if (next.length === 2 && next.some((n) => n.op === "Div")) {
      const div = next.find((n) => n.op === "Div")!;
      const erf = only(div.outputs[0]!);
      const add = erf.op === "Erf" ? only(erf.outputs[0]!) : undefined;
      const mul = add?.op === "Add" ? only(add.outputs[0]!) : undefined;
      const half = mul?.op === "Mul" && next.includes(mul) ? only(mul.outputs[0]!) : undefined;
      const scalar = (node: GraphNode, other: string) => {
        const c = graph.constants.get(node.inputs.find((n) => n !== other) ?? "");
        return c && c.values.length === 1 ? Number(c.values[0]) : NaN;
      };
      if (
        !add ||
        !mul ||
        !half ||
        half.op !== "Mul" ||
        !near(scalar(div, current), Math.SQRT2) ||
        !near(scalar(add, erf.outputs[0]!), 1) ||
        !near(scalar(half, mul.outputs[0]!), 0.5)
      ) {
        throw new Unsupported(`${describeNode(div)} starts a pattern that is not GELU`);
      }
      setActivation(div, "gelu");
      current = half.outputs[0]!;
      continue;
    }
    const node = only(current);
    const out = node.outputs[0]!;
    switch (node.op) {
      case "Flatten": {
        if (layers.length > 0 || ((node.attributes.axis as number) ?? 1) !== 1) {
          throw new Unsupported(`${describeNode(node)} is not a flatten of the input`);
        }
        flat = true;
        break;
      }
      case "Reshape": {
        const shape = graph.constants.get(node.inputs[1] ?? "");
        const dims =
          shape && shape.values instanceof BigInt64Array ? Array.from(shape.values, Number) : [];
        const flattens =
          dims.length === 2 &&
          (dims[1] === -1 || dims[1] === width) &&
          (dims[0] === 0 || dims[0] === -1);
        if (layers.length > 0 || !flattens)
          throw new Unsupported(`${describeNode(node)} is not a flatten of the input`);
        flat = true;
        break;
      }
      case "Gemm":
      case "MatMul": {
        if (!flat) throw new Unsupported(`${describeNode(node)} multiplies a tensor of rank > 2`);
        const w = constant(node.inputs[1], node);
        const gemm = node.op === "Gemm";
        const transB = gemm && node.attributes.transB === 1;
        if (gemm && (node.attributes.transA ?? 0) !== 0)
          throw new Unsupported(`${describeNode(node)} transposes A`);
        if (gemm && !near((node.attributes.alpha as number) ?? 1, 1))
          throw new Unsupported(`${describeNode(node)} has alpha ≠ 1`);
        if (w.dims.length !== 2)
          throw new Unsupported(`${describeNode(node)} has a weight of rank ${w.dims.length}`);
        const [k, n] = transB ? [w.dims[1]!, w.dims[0]!] : [w.dims[0]!, w.dims[1]!];
        if (k !== width)
          throw new Unsupported(`${describeNode(node)} takes ${k} features but receives ${width}`);
        const weights = new Float32Array(k * n);
        for (let i = 0; i < k; i++) {
          for (let j = 0; j < n; j++)
            weights[i * n + j] = transB ? w.values[j * k + i]! : w.values[i * n + j]!;
        }
        let bias: Float32Array | null = null;
        let biasName: string | undefined;
        let layerOut = out;
        if (gemm && node.inputs[2]) {
          if (!near((node.attributes.beta as number) ?? 1, 1))
            throw new Unsupported(`${describeNode(node)} has beta ≠ 1`);
          biasName = node.inputs[2];
          bias = constant(biasName, node).values;
        } else if (!gemm) {
          const add = (consumers.get(out) ?? [])[0];
          if (add?.op === "Add" && (consumers.get(out) ?? []).length === 1) {
            biasName = add.inputs.find((name) => name !== out);
            bias = constant(biasName, add).values;
            layerOut = add.outputs[0]!;
          }
        }
        if (bias && bias.length !== n)
          throw new Unsupported(`${describeNode(node)} has a bias that is not per output`);
        layers.push({
          name: node.name || `${node.op}_${node.index}`,
          k,
          n,
          weights,
          bias,
          activation: "none",
          weightName: node.inputs[1]!,
          transposed: transB,
          ...(biasName !== undefined ? { biasName } : {}),
        });
        width = n;
        current = layerOut;
        continue;
      }
      case "Relu":
        setActivation(node, "relu");
        break;
      case "LeakyRelu":
        setActivation(node, "leaky_relu", (node.attributes.alpha as number) ?? 0.01);
        break;
      case "Sigmoid":
        setActivation(node, "sigmoid");
        break;
      case "Tanh":
        setActivation(node, "tanh");
        break;
      case "Gelu":
        if ((node.attributes.approximate ?? "none") !== "none")
          throw new Unsupported(`${describeNode(node)} is tanh-approximated`);
        setActivation(node, "gelu");
        break;
      case "Softmax": {
        const axis = (node.attributes.axis as number) ?? -1;
        if (out !== output.name || (axis !== -1 && axis !== 1) || layers.length === 0) {
          throw new Unsupported(`${describeNode(node)} is not a final softmax over the features`);
        }
        softmax = true;
        break;
      }
      default:
        throw new Unsupported(
          `${describeNode(node)} is not a dense layer or a supported activation`,
        );
    }
    current = out;
  }
  if (layers.length === 0) throw new Unsupported("the graph has no dense layers");
  return { layers, softmax, width };
}

/**
 * Compiles an fp32 ONNX model to an int8 plan, or says which node stopped it:
 * a chain of dense layers to a chain plan (one fused kernel call for the whole
 * network), a text model (integer token inputs: transformer encoders) to a
 * text plan, anything else the graph compiler takes (convolutional networks)
 * to a graph plan. When neither compiles, the reason is the graph compiler's
 * for image-shaped models and the chain compiler's otherwise.
 *
 * The entry point for publish, tests and benchmarks; `options.maxSequence`
 * bounds a text model's dynamic sequence axis.
 */
export function compileInt8(
  onnx: Uint8Array,
  kernels: Int8Kernels,
  options: CompileOptions = {},
): CompileOutcome {
  const graph = readGraph(onnx);
  if (takesTokens(graph)) return compileText(graph, options);
  const chain = compileChain(graph, kernels);
  if (chain.ok) return chain;
  const dag = compileGraph(graph);
  if (dag.ok) return dag;
  return { ok: false, reason: graph.inputs[0]?.shape.length === 4 ? dag.reason : chain.reason };
}

/** The graph as the chain compiler sees it: its dense layers in order, or the node that stops it. */
export function denseChainOf(graph: Graph): DenseChainOutcome {
  try {
    const { layers, softmax } = matchDenseChain(graph);
    return { ok: true, layers, softmax };
  } catch (error) {
    if (error instanceof Unsupported) return { ok: false, reason: error.message };
    throw error;
  }
}

function compileChain(graph: Graph, kernels: Int8Kernels): CompileOutcome {
  const chain = denseChainOf(graph);
  if (!chain.ok) return chain;
  const reports: LayerReport[] = [];
  const metaLayers: Omit<PlanLayer, "packedWeights" | "scales" | "bias">[] = [];
  const blobs: PlanBlobs[] = [];
  const quantised: QuantisedLayer[] = [];
  for (const layer of chain.layers) {
    const { q, scales, sqnrDb, absmaxSqnrDb } = quantiseWeights(layer.weights, layer.k, layer.n);
    const report = {
      name: layer.name,
      k: layer.k,
      n: layer.n,
      activation: layer.activation,
      sqnrDb,
      absmaxSqnrDb,
    };
    reports.push(report);
    metaLayers.push({ ...report, ...(layer.alpha !== undefined ? { alpha: layer.alpha } : {}) });
    blobs.push({
      packedWeights: kernels.packedWeightBytes(q, layer.k, layer.n),
      scales,
      bias: layer.bias,
    });
    quantised.push({ weights: q, scales, bias: layer.bias });
  }
  const input = graph.inputs[0]!;
  const output = graph.outputs[0]!;
  const plan = encodePlan(
    {
      input: { name: input.name, shape: input.shape },
      output: { name: output.name, shape: output.shape },
      layers: metaLayers,
      softmax: chain.softmax,
    },
    blobs,
  );
  return { ok: true, plan, layers: reports, quantised };
}

export interface AccuracyInput {
  /** One row per case, flattened to the model's input width. */
  inputs: Float32Array[];
  /** fp32 outputs per case, flattened. */
  fp32: Float32Array[];
  labels?: number[];
}

const argmax = (values: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
};

/**
 * Runs each case through the plan (batch 1, as a single request is served) and
 * compares with fp32: cosine similarity (over everything, and the worst case),
 * largest absolute error, output SQNR, and for classifiers top-1 agreement and
 * accuracy against the labels.
 */
export function measureAccuracy(
  run: (x: Float32Array) => Float32Array,
  data: AccuracyInput,
): NonNullable<import("../core/registry/manifest").Quantization["accuracy"]> {
  let dot = 0;
  let a2 = 0;
  let b2 = 0;
  let noise = 0;
  let maxAbsError = 0;
  let minCosine = 1;
  let agree = 0;
  let fp32Correct = 0;
  let int8Correct = 0;
  data.inputs.forEach((x, i) => {
    const want = data.fp32[i]!;
    const got = run(x);
    let d = 0;
    let wa = 0;
    let gb = 0;
    for (let j = 0; j < want.length; j++) {
      const w = want[j]!;
      const g = got[j]!;
      d += w * g;
      wa += w * w;
      gb += g * g;
      noise += (w - g) ** 2;
      maxAbsError = Math.max(maxAbsError, Math.abs(w - g));
    }
    dot += d;
    a2 += wa;
    b2 += gb;
    minCosine = Math.min(minCosine, wa === 0 && gb === 0 ? 1 : d / Math.sqrt(wa * gb));
    if (want.length > 1) {
      const top = argmax(got);
      if (top === argmax(want)) agree++;
      if (data.labels) {
        if (argmax(want) === data.labels[i]) fp32Correct++;
        if (top === data.labels[i]) int8Correct++;
      }
    }
  });
  const cases = data.inputs.length;
  const classifier = (data.fp32[0]?.length ?? 0) > 1;
  return {
    cases,
    cosine: dot / Math.sqrt(a2 * b2),
    minCosine,
    maxAbsError,
    sqnrDb: db(a2, noise),
    ...(classifier ? { top1Agreement: agree / cases } : {}),
    ...(classifier && data.labels
      ? { fp32Accuracy: fp32Correct / cases, int8Accuracy: int8Correct / cases }
      : {}),
  };
}
