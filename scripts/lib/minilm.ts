/**
 * @module
 * A MiniLM-L6-shaped sentence encoder as ONNX, with synthetic weights, for
 * benchmarks: the architecture of sentence-transformers' all-MiniLM-L6-v2 (a
 * BERT encoder: 6 layers, d_model 384, 12 heads of 32, feed-forward 1536,
 * vocabulary 30522, 512 positions; inputs `input_ids` and `attention_mask`,
 * INT64, batch and sequence dynamic) followed by masked mean pooling, written
 * node for node the way `torch.onnx.export` (torch 1.13, opset 14,
 * constant folding on) writes a HuggingFace BERT layer: LayerNorm decomposed
 * (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add), the head split
 * as Shape/Gather/Unsqueeze/Concat/Reshape/Transpose computed from the
 * activations' shapes, scores divided by √d_head, the mask added as
 * `(1 - mask) * -10000`, Softmax, GELU in its erf form, and constants as
 * `Constant` nodes. `test/scripts/minilm.test.ts` checks the pattern against
 * the fixture exported by PyTorch (`fixtures/text-masked`).
 *
 * Weights come from a fixed seed and are scaled as in a trained model so
 * activations stay in range: Linear weights N(0, 1/fan_in) (variance kept
 * through each layer, attention scores of unit scale), embeddings N(0, 0.02²)
 * as BERT initialises them, biases N(0, 0.02²), LayerNorm gains near 1. Nothing
 * is trained: it measures speed and int8 fidelity, not accuracy.
 */
import { ElemType, buildModel, type Initializer, type NodeSpec } from "../../convert/onnx";
import { normals } from "./mobilenet";

export interface EncoderShape {
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  vocab: number;
  /** Rows of the position embedding table: the longest sequence the model takes. */
  maxPositions: number;
}

/** all-MiniLM-L6-v2's dimensions. */
export const MINILM_L6: EncoderShape = {
  layers: 6,
  hidden: 384,
  heads: 12,
  intermediate: 1536,
  vocab: 30522,
  maxPositions: 512,
};

export interface SentenceEncoder {
  onnx: Uint8Array;
  shape: EncoderShape;
  parameters: number;
  /** Multiply-accumulates per sequence of `length` tokens in the weight GEMMs (Q, K, V, output, FFN). */
  gemmMacs(length: number): number;
  /** Multiply-accumulates per sequence in the activation products (Q·Kᵀ and attention·V). */
  attentionMacs(length: number): number;
}

export const OUTPUT_NAME = "sentence_embedding";

export function sentenceEncoder(shape: EncoderShape = MINILM_L6, seed = 2020): SentenceEncoder {
  const { layers, hidden, heads, intermediate, vocab, maxPositions } = shape;
  if (hidden % heads !== 0) throw new Error(`hidden ${hidden} is not a multiple of heads ${heads}`);
  const headSize = hidden / heads;
  const normal = normals(seed);
  const nodes: NodeSpec[] = [];
  const initializers: Initializer[] = [];
  let parameters = 0;
  let constants = 0;
  let matmulWeights = 0;

  const sample = (count: number, std: number, mean = 0) => {
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = mean + normal() * std;
    return data;
  };
  const weight = (name: string, dims: number[], std: number, mean = 0) => {
    const count = dims.reduce((a, b) => a * b, 1);
    initializers.push({ name, type: ElemType.FLOAT, dims, data: sample(count, std, mean) });
    parameters += count;
    return name;
  };
  const node = (
    op: string,
    name: string,
    inputs: string[],
    attributes?: NodeSpec["attributes"],
  ) => {
    const output = `${name}_output_0`;
    nodes.push({ op, name, inputs, outputs: [output], ...(attributes ? { attributes } : {}) });
    return output;
  };
  // The exporter's constants: Constant nodes named `{scope}/Constant_{n}` (or, for the
  // Unsqueeze axes it creates itself, `Constant_{index}` outside any scope).
  const constant = (name: string, data: Float32Array | BigInt64Array, dims: number[]) => {
    const type = data instanceof Float32Array ? ElemType.FLOAT : ElemType.INT64;
    return node("Constant", name, [], { value: { tensor: { type, dims, data } } });
  };
  const scalarF = (name: string, value: number) => constant(name, Float32Array.of(value), []);
  const scalarI = (name: string, value: number) =>
    constant(name, BigInt64Array.of(BigInt(value)), []);
  const listI = (name: string, values: number[]) =>
    constant(name, BigInt64Array.from(values.map(BigInt)), [values.length]);
  const unscoped = () => `Constant_${nodes.length}`;

  /** `torch.nn.LayerNorm` as opset 14 writes it. */
  const layerNorm = (x: string, scope: string, prefix: string) => {
    const mean = node("ReduceMean", `${scope}/ReduceMean`, [x], { axes: [-1] });
    const centred = node("Sub", `${scope}/Sub`, [x, mean]);
    const two = scalarF(`${scope}/Constant`, 2);
    const squared = node("Pow", `${scope}/Pow`, [centred, two]);
    const variance = node("ReduceMean", `${scope}/ReduceMean_1`, [squared], { axes: [-1] });
    const eps = scalarF(`${scope}/Constant_1`, 1e-12);
    const shifted = node("Add", `${scope}/Add`, [variance, eps]);
    const std = node("Sqrt", `${scope}/Sqrt`, [shifted]);
    const normalised = node("Div", `${scope}/Div`, [centred, std]);
    const gamma = weight(`${prefix}.weight`, [hidden], 0.05, 1);
    const scaled = node("Mul", `${scope}/Mul`, [normalised, gamma]);
    const beta = weight(`${prefix}.bias`, [hidden], 0.02);
    return node("Add", `${scope}/Add_1`, [scaled, beta]);
  };

  /** `nn.Linear` on a 3-D input: MatMul with the transposed weight, then the bias added first. */
  const linear = (x: string, scope: string, prefix: string, k: number, n: number) => {
    const w = weight(`onnx::MatMul_${matmulWeights++}`, [k, n], 1 / Math.sqrt(k));
    const product = node("MatMul", `${scope}/MatMul`, [x, w]);
    const bias = weight(`${prefix}.bias`, [n], 0.02);
    return node("Add", `${scope}/Add`, [bias, product]);
  };

  /** `x.view(x.size()[:-1] + (heads, head_size))`, with shape indices from Constant nodes. */
  let views = 0;
  const splitHeads = (x: string, scope: string) => {
    const v = views;
    views += 2;
    const c = (i: number) => `${scope}/Constant_${i}`;
    const suffix = (i: number) => (i === 0 ? "" : `_${i}`);
    const shape0 = node("Shape", `${scope}/Shape${suffix(v)}`, [x]);
    const batch = node(
      "Gather",
      `${scope}/Gather${suffix(v)}`,
      [shape0, scalarI(c(constants++), 0)],
      { axis: 0 },
    );
    const shape1 = node("Shape", `${scope}/Shape${suffix(v + 1)}`, [x]);
    const length = node(
      "Gather",
      `${scope}/Gather${suffix(v + 1)}`,
      [shape1, scalarI(c(constants++), 1)],
      { axis: 0 },
    );
    const batch1 = node("Unsqueeze", `${scope}/Unsqueeze${suffix(v)}`, [
      batch,
      listI(unscoped(), [0]),
    ]);
    const length1 = node("Unsqueeze", `${scope}/Unsqueeze${suffix(v + 1)}`, [
      length,
      listI(unscoped(), [0]),
    ]);
    const h = listI(c(constants++), [heads]);
    const d = listI(c(constants++), [headSize]);
    const target = node("Concat", `${scope}/Concat${suffix(v / 2)}`, [batch1, length1, h, d], {
      axis: 0,
    });
    return node("Reshape", `${scope}/Reshape${suffix(v / 2)}`, [x, target], { allowzero: 0 });
  };

  // Embeddings: word + position (positions a buffer sliced to the input's length), LayerNorm.
  const E = "/embeddings";
  const idsShape = node("Shape", `${E}/Shape`, ["input_ids"]);
  const length = node("Gather", `${E}/Gather`, [idsShape, scalarI(`${E}/Constant`, 1)], {
    axis: 0,
  });
  const positionIds = constant(
    `${E}/Constant_1`,
    BigInt64Array.from({ length: maxPositions }, (_, i) => BigInt(i)),
    [1, maxPositions],
  );
  const starts = listI(`${E}/Constant_2`, [0]);
  const ends = node("Unsqueeze", `${E}/Unsqueeze`, [length, listI(`${E}/Constant_3`, [0])]);
  const sliceAxes = listI(`${E}/Constant_4`, [1]);
  const steps = listI(`${E}/Constant_5`, [1]);
  const positions = node("Slice", `${E}/Slice`, [positionIds, starts, ends, sliceAxes, steps]);
  const words = node("Gather", `${E}/word_embeddings/Gather`, [
    weight("embeddings.word_embeddings.weight", [vocab, hidden], 0.02),
    "input_ids",
  ]);
  const placed = node("Gather", `${E}/position_embeddings/Gather`, [
    weight("embeddings.position_embeddings.weight", [maxPositions, hidden], 0.02),
    positions,
  ]);
  const summed = node("Add", `${E}/Add`, [words, placed]);
  let x = layerNorm(summed, `${E}/LayerNorm`, "embeddings.LayerNorm");

  // HuggingFace's extended attention mask: 0 where attended, -10000 on padding.
  const mask1 = node("Unsqueeze", "/Unsqueeze", ["attention_mask", listI("/Constant", [1])]);
  const mask2 = node("Unsqueeze", "/Unsqueeze_1", [mask1, listI("/Constant_1", [2])]);
  const maskF = node("Cast", "/Cast", [mask2], { to: ElemType.FLOAT });
  const inverted = node("Sub", "/Sub", [scalarF("/Constant_2", 1), maskF]);
  const maskBias = node("Mul", "/Mul", [inverted, scalarF("/Constant_3", -10000)]);

  for (let l = 0; l < layers; l++) {
    const L = `/encoder/layer.${l}`;
    const A = `${L}/attention/self`;
    const P = `encoder.layer.${l}`;
    constants = 0;
    views = 0;
    const q = linear(x, `${A}/query`, `${P}.attention.self.query`, hidden, hidden);
    const qHeads = node("Transpose", `${A}/Transpose`, [splitHeads(q, A)], { perm: [0, 2, 1, 3] });
    const k = linear(x, `${A}/key`, `${P}.attention.self.key`, hidden, hidden);
    const kHeads = splitHeads(k, A);
    const v = linear(x, `${A}/value`, `${P}.attention.self.value`, hidden, hidden);
    const vHeads = node("Transpose", `${A}/Transpose_1`, [splitHeads(v, A)], {
      perm: [0, 2, 1, 3],
    });
    // k.transpose(-1, -2) after the permute: one Transpose straight to [B, H, Dh, S].
    const kT = node("Transpose", `${A}/Transpose_2`, [kHeads], { perm: [0, 2, 3, 1] });
    const scores = node("MatMul", `${A}/MatMul`, [qHeads, kT]);
    const scaled = node("Div", `${A}/Div`, [
      scores,
      scalarF(`${A}/Constant_${constants++}`, Math.sqrt(headSize)),
    ]);
    const masked = node("Add", `${A}/Add`, [scaled, maskBias]);
    const probs = node("Softmax", `${A}/Softmax`, [masked], { axis: -1 });
    const context = node("MatMul", `${A}/MatMul_1`, [probs, vHeads]);
    const merged = node("Transpose", `${A}/Transpose_3`, [context], { perm: [0, 2, 1, 3] });
    // context.view(context.size()[:-2] + (hidden,))
    const shapeB = node("Shape", `${A}/Shape_6`, [merged]);
    const batch = node(
      "Gather",
      `${A}/Gather_6`,
      [shapeB, scalarI(`${A}/Constant_${constants++}`, 0)],
      { axis: 0 },
    );
    const shapeS = node("Shape", `${A}/Shape_7`, [merged]);
    const len = node(
      "Gather",
      `${A}/Gather_7`,
      [shapeS, scalarI(`${A}/Constant_${constants++}`, 1)],
      { axis: 0 },
    );
    const batch1 = node("Unsqueeze", `${A}/Unsqueeze_6`, [batch, listI(unscoped(), [0])]);
    const len1 = node("Unsqueeze", `${A}/Unsqueeze_7`, [len, listI(unscoped(), [0])]);
    const width = listI(`${A}/Constant_${constants++}`, [hidden]);
    const target = node("Concat", `${A}/Concat_3`, [batch1, len1, width], { axis: 0 });
    const flat = node("Reshape", `${A}/Reshape_3`, [merged, target], { allowzero: 0 });
    const O = `${L}/attention/output`;
    const projected = linear(flat, `${O}/dense`, `${P}.attention.output.dense`, hidden, hidden);
    const residual = node("Add", `${O}/Add`, [projected, x]);
    x = layerNorm(residual, `${O}/LayerNorm`, `${P}.attention.output.LayerNorm`);
    const I = `${L}/intermediate`;
    const up = linear(x, `${I}/dense`, `${P}.intermediate.dense`, hidden, intermediate);
    // GELU, erf form: x * (1 + erf(x / √2)) * 0.5.
    const G = `${I}/intermediate_act_fn`;
    const divided = node("Div", `${G}/Div`, [up, scalarF(`${G}/Constant`, Math.SQRT2)]);
    const erf = node("Erf", `${G}/Erf`, [divided]);
    const plusOne = node("Add", `${G}/Add`, [erf, scalarF(`${G}/Constant_1`, 1)]);
    const gated = node("Mul", `${G}/Mul`, [up, plusOne]);
    const gelu = node("Mul", `${G}/Mul_1`, [gated, scalarF(`${G}/Constant_2`, 0.5)]);
    const Out = `${L}/output`;
    const down = linear(gelu, `${Out}/dense`, `${P}.output.dense`, intermediate, hidden);
    const residual2 = node("Add", `${Out}/Add`, [down, x]);
    x = layerNorm(residual2, `${Out}/LayerNorm`, `${P}.output.LayerNorm`);
  }

  // Masked mean pooling, as sentence-transformers computes it.
  const weights = node(
    "Cast",
    "/Cast_1",
    [node("Unsqueeze", "/Unsqueeze_2", ["attention_mask", listI("/Constant_4", [-1])])],
    { to: ElemType.FLOAT },
  );
  const kept = node("Mul", "/Mul_1", [x, weights]);
  const axis = listI(unscoped(), [1]);
  const total = node("ReduceSum", "/ReduceSum", [kept, axis], { keepdims: 0 });
  const count = node("ReduceSum", "/ReduceSum_1", [weights, axis], { keepdims: 0 });
  const clamped = node("Clip", "/Clip", [count, scalarF("/Constant_5", 1e-9), ""]);
  nodes.push({ op: "Div", name: "/Div", inputs: [total, clamped], outputs: [OUTPUT_NAME] });

  const onnx = buildModel(
    nodes,
    [
      { name: "input_ids", type: ElemType.INT64, dims: ["batch", "sequence"] },
      { name: "attention_mask", type: ElemType.INT64, dims: ["batch", "sequence"] },
    ],
    [{ name: OUTPUT_NAME, type: ElemType.FLOAT, dims: ["batch", hidden] }],
    14,
    initializers,
    "pytorch",
  );
  const perToken = layers * (4 * hidden * hidden + 2 * hidden * intermediate);
  return {
    onnx,
    shape,
    parameters,
    gemmMacs: (length) => length * perToken,
    attentionMacs: (length) => layers * 2 * length * length * hidden,
  };
}
