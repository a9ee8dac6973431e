/**
 * @module
 * Text plans (plan format version 4): transformer encoders (BERT/MiniLM-style
 * text models) compiled to steps over buffers whose sizes depend on the
 * request's sequence length S. Same container as every plan (`plan.ts`).
 *
 * Every size, offset and stride in a step is a polynomial in S, written as
 * its coefficients (`[c0, c1, c2]` is c0 + c1·S + c2·S²): the compiler
 * resolved the exporter's shape arithmetic (Shape, Gather, Concat, Reshape…)
 * into these once, so a request only evaluates them for its S (once per
 * distinct S; the executor caches the bound calls). A plan runs one sample at
 * a time; its arena was planned for the largest S (`sequence.max`), and every
 * buffer at a shorter S fits inside its place.
 *
 * Integer inputs (token ids, attention masks, token types) arrive as INT64 or
 * INT32 and live in the arena as i32; everything else is f32. Dense layers
 * keep int8 weights (per output channel) and quantise their input per row
 * (per token) on the fused kernel; everything else runs in f32.
 */
import { z } from "zod";
import { invalid } from "../../errors";
import {
  checkBlob,
  decodeContainer,
  encodeContainer,
  TEXT_PLAN_VERSION,
  type BlobRef,
} from "./plan";

/** A polynomial in the sequence length S: coefficients, constant term first. */
const poly = z.array(z.number().int()).min(1).max(4);
export type Poly = number[];

/** Where a tensor starts: in the arena (a buffer) or in a constant blob, plus an offset in values. */
const loc = z.object({
  buffer: z.number().int().nonnegative().optional(),
  blob: z.number().int().nonnegative().optional(),
  offset: poly,
});
export type Loc = z.infer<typeof loc>;

/** A strided view of up to 4 axes (broadcast axes have stride 0). */
const strided = z.object({ at: loc, strides: z.array(poly).min(1).max(4) });
export type Strided = z.infer<typeof strided>;

const buffer = z.number().int().nonnegative();
const blobIndex = z.number().int().nonnegative();
const size = z.number().int().positive();

export const UNARY_FUNCTIONS = [
  "relu",
  "gelu",
  "geluTanh",
  "erf",
  "tanh",
  "sigmoid",
  "sqrt",
  "neg",
  "exp",
  "reciprocal",
  "toFloat",
  /** f32 (or, `nonzeroInt`, i32) to i32 0/1: a Cast to BOOL. */
  "nonzero",
  "nonzeroInt",
] as const;
export const BINARY_FUNCTIONS = ["add", "sub", "mul", "div", "pow", "max", "min"] as const;

export const textStepSchema = z.discriminatedUnion("op", [
  /**
   * Embedding rows: table [rows, width] at the i32 ids `ids` (`count` of them);
   * f32, or int8 with one f32 scale per row when `scales` is given.
   */
  z.object({
    op: z.literal("gather"),
    table: blobIndex,
    scales: blobIndex.optional(),
    rows: size,
    width: size,
    ids: loc,
    count: poly,
    output: buffer,
    /** The request input the ids come from, for the error a bad id gets. */
    input: z.string().optional(),
  }),
  /** Dense layer on the fused int8 kernel: `rows` rows of k, each quantised on its own. */
  z.object({
    op: z.literal("dense"),
    name: z.string(),
    input: buffer,
    rows: poly,
    k: size,
    n: size,
    weights: blobIndex,
    scales: blobIndex,
    bias: blobIndex.nullable(),
    act: z.enum(["none", "relu"]),
    sqnrDb: z.number(),
    absmaxSqnrDb: z.number(),
    output: buffer,
  }),
  z.object({
    op: z.literal("layerNorm"),
    input: buffer,
    rows: poly,
    width: size,
    gamma: blobIndex,
    beta: blobIndex.nullable(),
    epsilon: z.number(),
    output: buffer,
  }),
  /** Softmax over the last axis, after adding `mask` (row i at i·maskStride values) when given. */
  z.object({
    op: z.literal("softmax"),
    input: buffer,
    rows: poly,
    width: poly,
    mask: loc.nullable(),
    maskStride: poly,
    output: buffer,
  }),
  /** Per-batch A·B (or A·Bᵀ) of activations in f32, × scale; A's and B's rows may be strided. */
  z.object({
    op: z.literal("matmul"),
    a: loc,
    lda: poly,
    strideA: poly,
    b: loc,
    ldb: poly,
    strideB: poly,
    batch: poly,
    m: poly,
    k: poly,
    n: poly,
    transB: z.boolean(),
    scale: z.number(),
    output: buffer,
    /** Where rows and batches of the result go, when not packed [batch, m, n] (heads merged in place). */
    ldy: poly.optional(),
    strideY: poly.optional(),
  }),
  z.object({
    op: z.literal("unary"),
    fn: z.enum(UNARY_FUNCTIONS),
    input: loc,
    count: poly,
    output: buffer,
  }),
  /** Elementwise a ∘ b over `shape` (both broadcast by their strides), written contiguously. */
  z.object({
    op: z.literal("binary"),
    fn: z.enum(BINARY_FUNCTIONS),
    a: strided,
    b: strided,
    shape: z.array(poly).min(1).max(4),
    output: buffer,
  }),
  /** `cond` (i32, nonzero = true) ? a : b elementwise over `shape`, all three broadcast by their strides. */
  z.object({
    op: z.literal("where"),
    cond: strided,
    a: strided,
    b: strided,
    shape: z.array(poly).min(1).max(4),
    output: buffer,
  }),
  /** A strided view (a transpose, a slice) made contiguous, × scale. */
  z.object({
    op: z.literal("copy"),
    input: strided,
    shape: z.array(poly).min(1).max(4),
    scale: z.number(),
    output: buffer,
  }),
  /** Mean, sum or max over the middle axis of [outer, size, inner]. */
  z.object({
    op: z.literal("reduce"),
    fn: z.enum(["mean", "sum", "max"]),
    input: buffer,
    outer: poly,
    size: poly,
    inner: poly,
    output: buffer,
  }),
]);
export type TextStep = z.infer<typeof textStepSchema>;

const io = z.object({
  name: z.string(),
  datatype: z.enum(["INT64", "INT32", "FP32"]),
  /** As the model declares it (−1 for dynamic axes). */
  shape: z.array(z.number().int()),
  buffer,
});

export const textPlanSchema = z.object({
  kind: z.literal("text"),
  inputs: z.array(io).min(1).max(8),
  output: io.extend({
    /** Per sample, resolved (polynomials in S). */
    sampleShape: z.array(poly),
  }),
  /** The sequence lengths a request may send: `max`, or anything up to it unless `fixed`. */
  sequence: z.object({ max: size, fixed: z.boolean() }),
  /** Per buffer: values per sample (a polynomial in S) and its offset in the arena (values). */
  buffers: z.array(z.object({ elements: poly, offset: z.number().int().nonnegative() })),
  arenaElements: size,
  blobs: z.array(z.object({ offset: z.number().int().nonnegative(), bytes: z.number().int() })),
  steps: z.array(textStepSchema).min(1),
});
export type TextPlan = z.infer<typeof textPlanSchema>;

export const evalPoly = (p: readonly number[], s: number): number => {
  let v = 0;
  for (let i = p.length - 1; i >= 0; i--) v = v * s + p[i]!;
  return v;
};

/** Writes a text plan; `blobs[i]` is the data the steps' blob index i names. */
export function encodeTextPlan(
  meta: Omit<TextPlan, "blobs" | "kind">,
  blobs: readonly Uint8Array[],
): Uint8Array {
  return encodeContainer(TEXT_PLAN_VERSION, blobs, (refs: BlobRef[]) =>
    textPlanSchema.parse({ kind: "text", ...meta, blobs: refs }),
  );
}

/** Every buffer and blob a step names. */
function stepRefs(step: TextStep): { buffers: number[]; blobs: number[] } {
  const buffers: number[] = [];
  const blobs: number[] = [];
  const fromLoc = (l: Loc | null) => {
    if (!l) return;
    if (l.buffer !== undefined) buffers.push(l.buffer);
    if (l.blob !== undefined) blobs.push(l.blob);
  };
  for (const [key, value] of Object.entries(step)) {
    if (["input", "output"].includes(key) && typeof value === "number") buffers.push(value);
    else if (["table", "weights", "scales", "bias", "gamma", "beta"].includes(key)) {
      if (typeof value === "number") blobs.push(value);
    } else if (value && typeof value === "object" && !Array.isArray(value)) {
      fromLoc("at" in value ? (value as Strided).at : (value as Loc));
    }
  }
  return { buffers, blobs };
}

/** Buffers each step reads or writes (for the arena's lifetimes). */
export const textStepBuffers = (step: TextStep): number[] => stepRefs(step).buffers;

/** Reads and checks a text plan's metadata: blobs inside the file, buffers and blobs named exist. */
export function decodeTextPlan(bytes: Uint8Array, totalBytes = bytes.byteLength): TextPlan {
  const { metadata } = decodeContainer(bytes, [TEXT_PLAN_VERSION]);
  let plan: TextPlan;
  try {
    plan = textPlanSchema.parse(metadata);
  } catch (error) {
    throw invalid(`int8 text plan metadata is invalid: ${(error as Error).message.slice(0, 200)}`);
  }
  plan.blobs.forEach((ref, i) => checkBlob(ref, totalBytes, `blob ${i}`));
  const max = plan.sequence.max;
  for (const [i, b] of plan.buffers.entries()) {
    const elements = evalPoly(b.elements, max);
    if (elements < 0 || b.offset + elements > plan.arenaElements) {
      throw invalid(`int8 text plan buffer ${i} lies outside the arena`);
    }
  }
  const known = (id: number, count: number, what: string) => {
    if (id >= count) throw invalid(`int8 text plan names ${what} ${id} of ${count}`);
  };
  for (const io of [...plan.inputs, plan.output]) known(io.buffer, plan.buffers.length, "buffer");
  for (const step of plan.steps) {
    const refs = stepRefs(step);
    for (const id of refs.buffers) known(id, plan.buffers.length, "buffer");
    for (const id of refs.blobs) known(id, plan.blobs.length, "blob");
  }
  return plan;
}
