/**
 * @module
 * Graph plans (plan format version 3): a compiled network as a list of steps
 * over named buffers, in topological order, for graphs that are not a chain
 * of dense layers — convolutional networks first. Same container as every
 * plan (`encodeContainer` in `plan.ts`): magic, version, JSON metadata, 16-byte
 * aligned blobs.
 *
 * Activations live in f32, NHWC, one sample after another (see the kernels'
 * README for why NHWC). Each buffer holds `elements` values per sample; the
 * compiler planned an arena from the buffers' lifetimes, so buffer `i` sits at
 * `offset` values per sample into it (for a block of B samples: at
 * `offset · B` values, all intervals scaling alike) and buffers whose
 * lifetimes do not overlap share memory. The arena's size per sample,
 * `arenaElements`, is known at compile time.
 *
 * Weights are stored as plain int8 (K×N, row-major, per-output-channel
 * symmetric scales) and packed for the kernels at load, so a graph plan never
 * depends on the kernels' packed layout.
 */
import { z } from "zod";
import { invalid } from "../../errors";
import {
  checkBlob,
  decodeContainer,
  encodeContainer,
  GRAPH_PLAN_VERSION,
  type BlobRef,
} from "./plan";

/** Activation codes the kernels apply in their epilogues (`act`, with parameters p0, p1). */
export const ACTIVATION_CODES = {
  none: 0,
  relu: 1,
  /** p0 = min, p1 = max (ReLU6 is clip(0, 6)). */
  clip: 2,
  /** x · relu6(x + 3) / 6. */
  hardswish: 3,
  /** max(0, min(1, p0 · x + p1)). */
  hardsigmoid: 4,
  sigmoid: 5,
} as const;
export type ActivationName = keyof typeof ACTIVATION_CODES;
const ACTIVATION_NAMES = Object.keys(ACTIVATION_CODES) as [ActivationName, ...ActivationName[]];

const blob = z.object({
  offset: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
});
const buffer = z.number().int().nonnegative();
const size = z.number().int().positive();
const activation = {
  act: z.enum(ACTIVATION_NAMES),
  p0: z.number(),
  p1: z.number(),
};
const window = {
  h: size,
  w: size,
  c: size,
  kh: size,
  kw: size,
  strideH: size,
  strideW: size,
  padTop: z.number().int().nonnegative(),
  padLeft: z.number().int().nonnegative(),
  outH: size,
  outW: size,
};
const quality = { sqnrDb: z.number(), absmaxSqnrDb: z.number() };

export const graphStepSchema = z.discriminatedUnion("op", [
  /** The request's NCHW sample to NHWC. */
  z.object({ op: z.literal("toNhwc"), input: buffer, output: buffer, c: size, hw: size }),
  /** NHWC back to NCHW (a spatial output, or a flatten in ONNX's order). */
  z.object({ op: z.literal("toNchw"), input: buffer, output: buffer, c: size, hw: size }),
  /** Convolution, group 1, on the int8 GEMM: int8 weights K×N with K = (ky·kw + kx)·c + ci. */
  z.object({
    op: z.literal("conv"),
    name: z.string(),
    input: buffer,
    output: buffer,
    ...window,
    cout: size,
    weights: blob,
    scales: blob,
    bias: blob.nullable(),
    ...activation,
    ...quality,
  }),
  /** Depthwise convolution (group = channels), f32 weights [kh·kw·c], channel fastest. */
  z.object({
    op: z.literal("depthwise"),
    name: z.string(),
    input: buffer,
    output: buffer,
    ...window,
    weights: blob,
    bias: blob.nullable(),
    ...activation,
  }),
  z.object({ op: z.literal("maxPool"), input: buffer, output: buffer, ...window }),
  z.object({
    op: z.literal("averagePool"),
    input: buffer,
    output: buffer,
    ...window,
    countIncludePad: z.boolean(),
  }),
  z.object({
    op: z.literal("globalAveragePool"),
    input: buffer,
    output: buffer,
    hw: size,
    c: size,
  }),
  z.object({
    op: z.literal("activate"),
    input: buffer,
    output: buffer,
    count: size,
    ...activation,
  }),
  z.object({
    op: z.literal("add"),
    a: buffer,
    b: buffer,
    output: buffer,
    count: size,
    ...activation,
  }),
  z.object({ op: z.literal("mul"), a: buffer, b: buffer, output: buffer, count: size }),
  /** x [hw, c] times gate [c], per sample (squeeze-and-excitation). */
  z.object({
    op: z.literal("mulChannels"),
    input: buffer,
    gate: buffer,
    output: buffer,
    hw: size,
    c: size,
  }),
  z.object({
    op: z.literal("concat"),
    a: buffer,
    ca: size,
    b: buffer,
    cb: size,
    output: buffer,
    hw: size,
  }),
  /** A dense layer on the fused kernel: int8 weights K×N; `act` none or relu (fused). */
  z.object({
    op: z.literal("dense"),
    name: z.string(),
    input: buffer,
    output: buffer,
    k: size,
    n: size,
    weights: blob,
    scales: blob,
    bias: blob.nullable(),
    act: z.enum(["none", "relu"]),
    ...quality,
  }),
  z.object({ op: z.literal("softmax"), input: buffer, output: buffer, width: size }),
]);
export type GraphStep = z.infer<typeof graphStepSchema>;

export const graphPlanSchema = z.object({
  input: z.object({ name: z.string(), shape: z.array(z.number().int()), buffer }),
  output: z.object({ name: z.string(), shape: z.array(z.number().int()), buffer }),
  /** Per buffer: values per sample, and where it sits in the arena (values per sample). */
  buffers: z.array(z.object({ elements: size, offset: z.number().int().nonnegative() })),
  arenaElements: size,
  steps: z.array(graphStepSchema).min(1),
});
export type GraphPlan = z.infer<typeof graphPlanSchema>;

/** A step as the compiler builds it: blobs as data, placed by `encodeGraphPlan`. */
export type UnplacedStep = DistributiveReplace<GraphStep>;
type BlobFields = "weights" | "scales" | "bias";
type DistributiveReplace<T> = T extends unknown
  ? {
      [K in keyof T]: K extends BlobFields
        ? null extends T[K]
          ? Uint8Array | null
          : Uint8Array
        : T[K];
    }
  : never;

/** Writes a graph plan; each step's blobs (weights, scales, bias) are placed in step order. */
export function encodeGraphPlan(
  meta: Omit<GraphPlan, "steps">,
  steps: readonly UnplacedStep[],
): Uint8Array {
  const files: Uint8Array[] = [];
  const fields = ["weights", "scales", "bias"] as const;
  for (const step of steps) {
    for (const field of fields) {
      const data = (step as Partial<Record<BlobFields, Uint8Array | null>>)[field];
      if (data) files.push(data);
    }
  }
  return encodeContainer(GRAPH_PLAN_VERSION, files, (refs) => {
    let next = 0;
    const placed = steps.map((step) => {
      const out: Record<string, unknown> = { ...step };
      for (const field of fields) {
        if (!(field in step)) continue;
        out[field] = (step as Partial<Record<BlobFields, Uint8Array | null>>)[field]
          ? refs[next++]!
          : null;
      }
      return out;
    });
    return graphPlanSchema.parse({ ...meta, steps: placed });
  });
}

/** Reads and checks a graph plan's metadata: blobs inside the file, buffers in range, sizes consistent. */
export function decodeGraphPlan(bytes: Uint8Array, totalBytes = bytes.byteLength): GraphPlan {
  const { metadata } = decodeContainer(bytes, [GRAPH_PLAN_VERSION]);
  let plan: GraphPlan;
  try {
    plan = graphPlanSchema.parse(metadata);
  } catch (error) {
    throw invalid(`int8 graph plan metadata is invalid: ${(error as Error).message.slice(0, 200)}`);
  }
  const count = plan.buffers.length;
  for (const [i, b] of plan.buffers.entries()) {
    if (b.offset + b.elements > plan.arenaElements) {
      throw invalid(`int8 graph plan buffer ${i} lies outside the arena`);
    }
  }
  const checkBuffer = (id: number, elements: number, what: string) => {
    if (id >= count) throw invalid(`int8 graph plan ${what} names buffer ${id} of ${count}`);
    if (plan.buffers[id]!.elements !== elements) {
      throw invalid(
        `int8 graph plan ${what}: buffer ${id} holds ${plan.buffers[id]!.elements} values per sample, not ${elements}`,
      );
    }
  };
  const perSample = (shape: number[]) => shape.slice(1).reduce((a, b) => a * b, 1);
  checkBuffer(plan.input.buffer, perSample(plan.input.shape), "input");
  checkBuffer(plan.output.buffer, perSample(plan.output.shape), "output");
  for (const [i, step] of plan.steps.entries()) {
    const what = `step ${i} (${step.op})`;
    for (const [ref, elements] of stepBuffers(step)) checkBuffer(ref, elements, what);
    const blobs = step as unknown as Partial<Record<BlobFields, BlobRef | null>>;
    for (const field of ["weights", "scales", "bias"] as const) {
      const ref = blobs[field];
      if (ref) checkBlob(ref, totalBytes, `${what} ${field}`);
    }
    const bytesOfBlob = (field: BlobFields) => blobs[field]?.bytes;
    const expect = (field: BlobFields, bytes: number) => {
      const got = bytesOfBlob(field);
      if (got !== undefined && got !== bytes) {
        throw invalid(`int8 graph plan ${what} ${field} is ${got} bytes, not ${bytes}`);
      }
    };
    if (step.op === "conv") {
      expect("weights", step.kh * step.kw * step.c * step.cout);
      expect("scales", step.cout * 4);
      expect("bias", step.cout * 4);
    } else if (step.op === "depthwise") {
      expect("weights", step.kh * step.kw * step.c * 4);
      expect("bias", step.c * 4);
    } else if (step.op === "dense") {
      expect("weights", step.k * step.n);
      expect("scales", step.n * 4);
      expect("bias", step.n * 4);
    }
  }
  return plan;
}

/** Every buffer a step reads or writes, with the values per sample it must hold. */
export function stepBuffers(step: GraphStep): [number, number][] {
  switch (step.op) {
    case "toNhwc":
    case "toNchw":
      return [
        [step.input, step.c * step.hw],
        [step.output, step.c * step.hw],
      ];
    case "conv":
      return [
        [step.input, step.h * step.w * step.c],
        [step.output, step.outH * step.outW * step.cout],
      ];
    case "depthwise":
    case "maxPool":
    case "averagePool":
      return [
        [step.input, step.h * step.w * step.c],
        [step.output, step.outH * step.outW * step.c],
      ];
    case "globalAveragePool":
      return [
        [step.input, step.hw * step.c],
        [step.output, step.c],
      ];
    case "activate":
      return [
        [step.input, step.count],
        [step.output, step.count],
      ];
    case "add":
    case "mul":
      return [
        [step.a, step.count],
        [step.b, step.count],
        [step.output, step.count],
      ];
    case "mulChannels":
      return [
        [step.input, step.hw * step.c],
        [step.gate, step.c],
        [step.output, step.hw * step.c],
      ];
    case "concat":
      return [
        [step.a, step.hw * step.ca],
        [step.b, step.hw * step.cb],
        [step.output, step.hw * (step.ca + step.cb)],
      ];
    case "dense":
      return [
        [step.input, step.k],
        [step.output, step.n],
      ];
    case "softmax":
      return [
        [step.input, step.width],
        [step.output, step.width],
      ];
  }
}
