/**
 * @module
 * The graph compiler: ONNX graphs that are not a chain of dense layers —
 * convolutional networks (MobileNet-style: Conv, depthwise Conv, BatchNorm,
 * ReLU/ReLU6/HardSwish, residual Add, squeeze-and-excitation Mul, pooling,
 * Concat, Flatten, Gemm, Softmax) — compiled to a graph plan
 * (`core/runtimes/int8/graph-plan.ts`): steps in topological order over
 * buffers with static per-sample sizes (only the batch axis varies), constants
 * folded (BatchNorm into the convolution before it, activations into the step
 * that produces their input, Gemm's alpha and beta), activations in NHWC, and
 * an arena planned from the buffers' lifetimes. Group-1 convolutions and dense
 * layers get per-output-channel int8 weights; depthwise convolutions keep f32
 * weights (their kernel is f32: see assembly/README.md). Anything else is not
 * compiled, and the outcome names the node that stopped it.
 */
import {
  encodeGraphPlan,
  type ActivationName,
  type GraphPlan,
  type UnplacedStep,
} from "../core/runtimes/int8/graph-plan";
import { bytesOf } from "../core/runtimes/int8/plan";
import { describeNonFinite, scanValues } from "./finite";
import type { Graph, GraphNode } from "./onnx";
import { quantiseWeights } from "./weight-quantisation";

/** A compiled step's weight quality, for publish's report. */
export interface StepReport {
  name: string;
  /** `embedding`: a text plan's int8 embedding table (k rows of n). */
  op: "conv" | "dense" | "embedding";
  /** Weights' K×N (K = kh·kw·cin for a convolution). */
  k: number;
  n: number;
  activation: ActivationName;
  sqnrDb: number;
  absmaxSqnrDb: number;
}

export type GraphCompileOutcome =
  { ok: true; plan: Uint8Array; layers: StepReport[] } | { ok: false; reason: string };

class Unsupported extends Error {}

const describeNode = (node: GraphNode) =>
  `node ${node.index} (${node.op}${node.name ? ` '${node.name}'` : ""})`;

/** A value's per-sample layout: spatial NHWC, or flat (with the order a flatten left it in). */
type Layout =
  | { kind: "spatial"; c: number; h: number; w: number }
  | {
      kind: "flat";
      width: number;
      /** Set when flattened from NHWC with h·w > 1 and c > 1: memory order (h, w, c), ONNX's (c, h, w). */
      nhwcOf?: { c: number; h: number; w: number };
    };

interface Value {
  buffer: number;
  layout: Layout;
}

const elementsOf = (layout: Layout) =>
  layout.kind === "spatial" ? layout.c * layout.h * layout.w : layout.width;

/** Steps while compiling: weights still f32, so BatchNorm can fold into them before quantising. */
type Draft =
  | (Extract<UnplacedStep, { op: "conv" }> & { f32: Float32Array; biasF32: Float32Array | null })
  | (Extract<UnplacedStep, { op: "depthwise" }> & {
      f32: Float32Array;
      biasF32: Float32Array | null;
    })
  | (Extract<UnplacedStep, { op: "dense" }> & { f32: Float32Array; biasF32: Float32Array | null })
  | Exclude<UnplacedStep, { op: "conv" | "depthwise" | "dense" }>;

const F32_MAX = 3.4028234663852886e38;

export function compileGraph(graph: Graph): GraphCompileOutcome {
  try {
    return compile(graph);
  } catch (error) {
    if (error instanceof Unsupported) return { ok: false, reason: error.message };
    throw error;
  }
}

/**
 * What every int8 plan needs of a graph, whichever compiler takes it: one FP32
 * input and output, and finite weights (scales come from each channel's
 * absmax: one NaN or Infinity would poison the plan). The reason when not.
 */
export function int8Preconditions(graph: Graph): string | undefined {
  if (graph.inputs.length !== 1 || graph.outputs.length !== 1) {
    return `the graph has ${graph.inputs.length} inputs and ${graph.outputs.length} outputs; int8 plans take one of each`;
  }
  if (graph.inputs[0]!.datatype !== "FP32" || graph.outputs[0]!.datatype !== "FP32") {
    return "int8 plans take and return FP32 tensors";
  }
  const nonFinite = [...graph.constants]
    .map(([name, { values }]) =>
      values instanceof Float32Array ? scanValues(name, values) : undefined,
    )
    .filter((hit) => hit !== undefined);
  if (nonFinite.length > 0) {
    return `int8 cannot quantise non-finite weights: ${describeNonFinite(nonFinite)}`;
  }
  return undefined;
}

function compile(graph: Graph): GraphCompileOutcome {
  const unfit = int8Preconditions(graph);
  if (unfit) throw new Unsupported(unfit);
  const input = graph.inputs[0]!;
  const output = graph.outputs[0]!;
  const [batch, ...rest] = input.shape;
  if (batch !== -1 || rest.some((d) => d <= 0) || (rest.length !== 3 && rest.length !== 1)) {
    throw new Unsupported(
      `input '${input.name}' has shape [${input.shape.join(", ")}]; graph plans take [batch, C, H, W] or [batch, K] with fixed sizes after the batch axis`,
    );
  }
  const buffers: number[] = []; // values per sample, by buffer id
  const newBuffer = (elements: number) => buffers.push(elements) - 1;
  const steps: Draft[] = [];
  /** Which step wrote each buffer last (for fusing into it). */
  const producer = new Map<number, number>();
  const emit = (step: Draft, output: number) => {
    steps.push(step);
    producer.set(output, steps.length - 1);
  };
  const values = new Map<string, Value>();
  const consumers = new Map<string, number>();
  for (const node of graph.nodes) {
    for (const name of node.inputs) consumers.set(name, (consumers.get(name) ?? 0) + 1);
  }
  consumers.set(output.name, (consumers.get(output.name) ?? 0) + 1);

  // The request's sample arrives as it is sent (NCHW) in buffer 0.
  const inputBuffer = newBuffer(rest.reduce((a, b) => a * b, 1));
  if (rest.length === 3) {
    const [c, h, w] = rest as [number, number, number];
    const layout: Layout = { kind: "spatial", c, h, w };
    if (c === 1 || h * w === 1) {
      values.set(input.name, { buffer: inputBuffer, layout }); // NCHW is NHWC here
    } else {
      const nhwc = newBuffer(c * h * w);
      emit({ op: "toNhwc", input: inputBuffer, output: nhwc, c, hw: h * w }, nhwc);
      values.set(input.name, { buffer: nhwc, layout });
    }
  } else {
    values.set(input.name, { buffer: inputBuffer, layout: { kind: "flat", width: rest[0]! } });
  }

  /** Nodes already computed by an earlier step (an Add folded into a MatMul's bias). */
  const folded = new Set<GraphNode>();
  for (const node of graph.nodes) {
    if (folded.has(node)) continue;
    if (node.op === "Constant") {
      if (!graph.constants.has(node.outputs[0] ?? "")) {
        throw new Unsupported(
          `${describeNode(node)} holds a constant of a type int8 plans do not read`,
        );
      }
      continue;
    }
    if (node.domain !== "")
      throw new Unsupported(`${describeNode(node)} is in domain '${node.domain}'`);
    const out = node.outputs[0]!;
    const valueOf = (name: string | undefined): Value => {
      const v = name !== undefined ? values.get(name) : undefined;
      if (!v) {
        throw new Unsupported(
          `${describeNode(node)} takes '${name}', which is not an activation int8 plans compute (a constant input where a tensor is expected?)`,
        );
      }
      return v;
    };
    const constant = (name: string | undefined, what: string) => {
      const c = name ? graph.constants.get(name) : undefined;
      if (!c) throw new Unsupported(`${describeNode(node)} has a non-constant ${what}`);
      return c;
    };
    const spatial = (v: Value) => {
      if (v.layout.kind !== "spatial") {
        throw new Unsupported(`${describeNode(node)} needs an image-shaped [N, C, H, W] input`);
      }
      return v.layout;
    };
    /** Fuses an activation into the step that produced `v` when nothing else reads it. */
    const fuse = (v: Value, act: ActivationName, p0 = 0, p1 = 0): boolean => {
      const source = node.inputs[0]!;
      if ((consumers.get(source) ?? 0) !== 1 || source === output.name) return false;
      const at = producer.get(v.buffer);
      const step = at !== undefined ? steps[at] : undefined;
      if (!step || !("act" in step) || step.act !== "none" || step.output !== v.buffer)
        return false;
      if (step.op === "dense" && act !== "relu") return false;
      Object.assign(step, { act, ...(step.op === "dense" ? {} : { p0, p1 }) });
      values.set(out, v);
      return true;
    };
    const activation = (act: ActivationName, p0 = 0, p1 = 0) => {
      const v = valueOf(node.inputs[0]);
      if (fuse(v, act, p0, p1)) return;
      const count = elementsOf(v.layout);
      const buffer = newBuffer(count);
      emit({ op: "activate", input: v.buffer, output: buffer, count, act, p0, p1 }, buffer);
      values.set(out, { buffer, layout: v.layout });
    };
    const window = (x: { c: number; h: number; w: number }, kernel: number[]) => {
      const {
        auto_pad: autoPad = "NOTSET",
        strides = [1, 1],
        dilations = [1, 1],
      } = node.attributes as { auto_pad?: string; strides?: number[]; dilations?: number[] };
      if ((dilations as number[]).some((d) => d !== 1)) {
        throw new Unsupported(
          `${describeNode(node)} has dilations [${dilations}]; only 1 is supported`,
        );
      }
      if (node.attributes.ceil_mode === 1) {
        throw new Unsupported(`${describeNode(node)} has ceil_mode 1; only 0 is supported`);
      }
      const [kh, kw] = kernel as [number, number];
      const [sh, sw] = strides as [number, number];
      let pads = (node.attributes.pads as number[] | undefined) ?? [0, 0, 0, 0];
      if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") {
        const total = (size: number, k: number, s: number) =>
          Math.max(0, (Math.ceil(size / s) - 1) * s + k - size);
        const th = total(x.h, kh, sh);
        const tw = total(x.w, kw, sw);
        const early = (t: number) =>
          autoPad === "SAME_UPPER" ? Math.floor(t / 2) : Math.ceil(t / 2);
        pads = [early(th), early(tw), th - early(th), tw - early(tw)];
      } else if (autoPad === "VALID") {
        pads = [0, 0, 0, 0];
      } else if (autoPad !== "NOTSET") {
        throw new Unsupported(`${describeNode(node)} has auto_pad ${autoPad}`);
      }
      const [top, left, bottom, right] = pads as [number, number, number, number];
      const outH = Math.floor((x.h + top + bottom - kh) / sh) + 1;
      const outW = Math.floor((x.w + left + right - kw) / sw) + 1;
      if (outH <= 0 || outW <= 0 || top >= kh || left >= kw || bottom >= kh || right >= kw) {
        throw new Unsupported(`${describeNode(node)} has a window that does not fit its input`);
      }
      return {
        h: x.h,
        w: x.w,
        c: x.c,
        kh,
        kw,
        strideH: sh,
        strideW: sw,
        padTop: top,
        padLeft: left,
        outH,
        outW,
      };
    };
    const name = node.name || `${node.op}_${node.index}`;

    switch (node.op) {
      case "Identity":
      case "Dropout":
        values.set(out, valueOf(node.inputs[0]));
        break;
      case "Conv": {
        const x = valueOf(node.inputs[0]);
        const xl = spatial(x);
        const w = constant(node.inputs[1], "weight");
        const b = node.inputs[2] ? constant(node.inputs[2], "bias") : undefined;
        if (!(w.values instanceof Float32Array) || w.dims.length !== 4) {
          throw new Unsupported(
            `${describeNode(node)} is not a 2-D convolution with float weights`,
          );
        }
        const [cout, cinPerGroup, kh, kw] = w.dims as [number, number, number, number];
        const group = (node.attributes.group as number | undefined) ?? 1;
        const geometry = window(xl, [kh, kw]);
        const bias = b && b.values instanceof Float32Array ? Float32Array.from(b.values) : null;
        if (b && (!(b.values instanceof Float32Array) || b.values.length !== cout)) {
          throw new Unsupported(
            `${describeNode(node)} has a bias that is not one float per output channel`,
          );
        }
        const outLayout: Layout = { kind: "spatial", c: cout, h: geometry.outH, w: geometry.outW };
        const buffer = newBuffer(elementsOf(outLayout));
        if (group === 1 && cinPerGroup === xl.c) {
          // K×N with K = (ky·kw + kx)·c + ci (the im2col order over NHWC), N = output channel.
          const k = kh * kw * xl.c;
          const f32 = new Float32Array(k * cout);
          for (let co = 0; co < cout; co++) {
            for (let ci = 0; ci < xl.c; ci++) {
              for (let ky = 0; ky < kh; ky++) {
                for (let kx = 0; kx < kw; kx++) {
                  f32[((ky * kw + kx) * xl.c + ci) * cout + co] =
                    w.values[((co * xl.c + ci) * kh + ky) * kw + kx]!;
                }
              }
            }
          }
          emit(
            {
              op: "conv",
              name,
              input: x.buffer,
              output: buffer,
              ...geometry,
              cout,
              weights: new Uint8Array(0),
              scales: new Uint8Array(0),
              bias: null,
              act: "none",
              p0: 0,
              p1: 0,
              sqnrDb: 0,
              absmaxSqnrDb: 0,
              f32,
              biasF32: bias,
            },
            buffer,
          );
        } else if (group === xl.c && cinPerGroup === 1 && cout === xl.c) {
          const f32 = new Float32Array(kh * kw * xl.c);
          for (let ch = 0; ch < xl.c; ch++) {
            for (let tap = 0; tap < kh * kw; tap++)
              f32[tap * xl.c + ch] = w.values[ch * kh * kw + tap]!;
          }
          emit(
            {
              op: "depthwise",
              name,
              input: x.buffer,
              output: buffer,
              ...geometry,
              weights: new Uint8Array(0),
              bias: null,
              act: "none",
              p0: 0,
              p1: 0,
              f32,
              biasF32: bias,
            },
            buffer,
          );
        } else {
          throw new Unsupported(
            `${describeNode(node)} has group ${group} over ${xl.c} channels; int8 plans run group 1 and depthwise (group = channels, one output per channel) convolutions`,
          );
        }
        values.set(out, { buffer, layout: outLayout });
        break;
      }
      case "BatchNormalization": {
        const x = valueOf(node.inputs[0]);
        const at = producer.get(x.buffer);
        const step = at !== undefined ? steps[at] : undefined;
        if (
          !step ||
          (step.op !== "conv" && step.op !== "depthwise") ||
          step.act !== "none" ||
          (consumers.get(node.inputs[0]!) ?? 0) !== 1 ||
          node.outputs.length > 1
        ) {
          throw new Unsupported(
            `${describeNode(node)} does not follow a convolution it can fold into`,
          );
        }
        const [scale, shift, mean, variance] = [1, 2, 3, 4].map((i) => {
          const c = constant(node.inputs[i], "statistic");
          if (!(c.values instanceof Float32Array)) {
            throw new Unsupported(`${describeNode(node)} has non-float statistics`);
          }
          return c.values;
        }) as [Float32Array, Float32Array, Float32Array, Float32Array];
        const epsilon = (node.attributes.epsilon as number | undefined) ?? 1e-5;
        const channels = step.op === "conv" ? step.cout : step.c;
        const bias = step.biasF32 ?? new Float32Array(channels);
        const factor = new Float64Array(channels);
        for (let ch = 0; ch < channels; ch++) {
          factor[ch] = scale[ch]! / Math.sqrt(variance[ch]! + epsilon);
          bias[ch] = (bias[ch]! - mean[ch]!) * factor[ch]! + shift[ch]!;
        }
        // Output channels are the fastest axis of both weight layouts.
        for (let i = 0; i < step.f32.length; i++) step.f32[i]! *= factor[i % channels]!;
        step.biasF32 = bias;
        values.set(out, x);
        break;
      }
      case "Relu":
        activation("relu");
        break;
      case "Clip": {
        const bound = (i: number, attr: string, fallback: number) => {
          if (node.inputs[i]) {
            const c = constant(node.inputs[i], i === 1 ? "min" : "max");
            return Number(c.values[0]);
          }
          return (node.attributes[attr] as number | undefined) ?? fallback;
        };
        const lo = bound(1, "min", -F32_MAX);
        const hi = bound(2, "max", F32_MAX);
        if (lo === 0 && hi >= F32_MAX) activation("relu");
        else activation("clip", lo, hi);
        break;
      }
      case "HardSwish":
        activation("hardswish");
        break;
      case "HardSigmoid":
        activation(
          "hardsigmoid",
          (node.attributes.alpha as number | undefined) ?? 0.2,
          (node.attributes.beta as number | undefined) ?? 0.5,
        );
        break;
      case "Sigmoid":
        activation("sigmoid");
        break;
      case "Add":
      case "Mul": {
        const [a, b] = [valueOf(node.inputs[0]), valueOf(node.inputs[1])];
        const same =
          elementsOf(a.layout) === elementsOf(b.layout) &&
          JSON.stringify(a.layout) === JSON.stringify(b.layout);
        if (same) {
          const count = elementsOf(a.layout);
          const buffer = newBuffer(count);
          if (node.op === "Add") {
            emit(
              {
                op: "add",
                a: a.buffer,
                b: b.buffer,
                output: buffer,
                count,
                act: "none",
                p0: 0,
                p1: 0,
              },
              buffer,
            );
          } else {
            emit({ op: "mul", a: a.buffer, b: b.buffer, output: buffer, count }, buffer);
          }
          values.set(out, { buffer, layout: a.layout });
          break;
        }
        // Squeeze-and-excitation: [N, C, H, W] · [N, C, 1, 1].
        const [x, gate] =
          a.layout.kind === "spatial" &&
          b.layout.kind === "spatial" &&
          b.layout.h * b.layout.w === 1
            ? [a, b]
            : [b, a];
        if (
          node.op === "Mul" &&
          x.layout.kind === "spatial" &&
          gate.layout.kind === "spatial" &&
          gate.layout.h * gate.layout.w === 1 &&
          gate.layout.c === x.layout.c
        ) {
          const hw = x.layout.h * x.layout.w;
          const buffer = newBuffer(hw * x.layout.c);
          emit(
            {
              op: "mulChannels",
              input: x.buffer,
              gate: gate.buffer,
              output: buffer,
              hw,
              c: x.layout.c,
            },
            buffer,
          );
          values.set(out, { buffer, layout: x.layout });
          break;
        }
        throw new Unsupported(
          `${describeNode(node)} combines tensors of different shapes; int8 plans add and multiply equal shapes, and multiply [N, C, H, W] by [N, C, 1, 1]`,
        );
      }
      case "MaxPool":
      case "AveragePool": {
        if (node.outputs.length > 1) throw new Unsupported(`${describeNode(node)} returns indices`);
        const x = valueOf(node.inputs[0]);
        const xl = spatial(x);
        const geometry = window(xl, node.attributes.kernel_shape as number[]);
        const layout: Layout = { kind: "spatial", c: xl.c, h: geometry.outH, w: geometry.outW };
        const buffer = newBuffer(elementsOf(layout));
        if (node.op === "MaxPool") {
          if ((node.attributes.storage_order as number | undefined) === 1) {
            throw new Unsupported(`${describeNode(node)} has storage_order 1`);
          }
          emit({ op: "maxPool", input: x.buffer, output: buffer, ...geometry }, buffer);
        } else {
          emit(
            {
              op: "averagePool",
              input: x.buffer,
              output: buffer,
              ...geometry,
              countIncludePad: node.attributes.count_include_pad === 1,
            },
            buffer,
          );
        }
        values.set(out, { buffer, layout });
        break;
      }
      case "GlobalAveragePool": {
        const x = valueOf(node.inputs[0]);
        const xl = spatial(x);
        const layout: Layout = { kind: "spatial", c: xl.c, h: 1, w: 1 };
        if (xl.h * xl.w === 1) {
          values.set(out, { buffer: x.buffer, layout });
          break;
        }
        const buffer = newBuffer(xl.c);
        emit(
          { op: "globalAveragePool", input: x.buffer, output: buffer, hw: xl.h * xl.w, c: xl.c },
          buffer,
        );
        values.set(out, { buffer, layout });
        break;
      }
      case "Flatten": {
        const axis = (node.attributes.axis as number | undefined) ?? 1;
        if (axis !== 1)
          throw new Unsupported(`${describeNode(node)} flattens from axis ${axis}, not 1`);
        values.set(out, flatten(valueOf(node.inputs[0])));
        break;
      }
      case "Reshape": {
        const x = valueOf(node.inputs[0]);
        const target = constant(node.inputs[1], "shape");
        const dims = Array.from(target.values, Number);
        const n = elementsOf(x.layout);
        // Resolve 0 (copy the input's dimension) and -1 (whatever is left) over [batch, ...].
        const known = dims.slice(1).reduce((a, d) => (d > 0 ? a * d : a), 1);
        const resolved = dims.slice(1).map((d) => (d === -1 ? n / known : d));
        const batchOk = dims[0] === 0 || dims[0] === -1;
        if (!batchOk || resolved.some((d) => !Number.isInteger(d) || d <= 0)) {
          throw new Unsupported(
            `${describeNode(node)} reshapes to [${dims.join(", ")}]; int8 plans reshape [batch, …] to [batch, features] or [batch, C, 1, 1]`,
          );
        }
        if (resolved.length === 1 && resolved[0] === n) {
          values.set(out, flatten(x));
        } else if (
          resolved.length === 3 &&
          resolved[1] === 1 &&
          resolved[2] === 1 &&
          resolved[0] === n
        ) {
          values.set(out, { buffer: x.buffer, layout: { kind: "spatial", c: n, h: 1, w: 1 } });
        } else {
          throw new Unsupported(
            `${describeNode(node)} reshapes to [${dims.join(", ")}]; int8 plans reshape [batch, …] to [batch, features] or [batch, C, 1, 1]`,
          );
        }
        break;
      }
      case "Concat": {
        const axis = node.attributes.axis as number;
        const parts = node.inputs.map((nameOf) => valueOf(nameOf));
        const layouts = parts.map((p) => spatial(p));
        if (axis !== 1 && axis !== -3) {
          throw new Unsupported(
            `${describeNode(node)} concatenates on axis ${axis}; only channels (1)`,
          );
        }
        const { h, w } = layouts[0]!;
        if (layouts.some((l) => l.h !== h || l.w !== w)) {
          throw new Unsupported(`${describeNode(node)} concatenates images of different sizes`);
        }
        let acc = parts[0]!;
        let channels = layouts[0]!.c;
        for (let i = 1; i < parts.length; i++) {
          const next = layouts[i]!.c;
          const buffer = newBuffer(h * w * (channels + next));
          emit(
            {
              op: "concat",
              a: acc.buffer,
              ca: channels,
              b: parts[i]!.buffer,
              cb: next,
              output: buffer,
              hw: h * w,
            },
            buffer,
          );
          channels += next;
          acc = { buffer, layout: { kind: "spatial", c: channels, h, w } };
        }
        values.set(out, acc);
        break;
      }
      case "Gemm":
      case "MatMul": {
        const x = valueOf(node.inputs[0]);
        if (x.layout.kind !== "flat") {
          throw new Unsupported(
            `${describeNode(node)} needs a flat [batch, features] input (Flatten first)`,
          );
        }
        const w = constant(node.inputs[1], "weight");
        if (!(w.values instanceof Float32Array) || w.dims.length !== 2) {
          throw new Unsupported(`${describeNode(node)} has weights that are not a float matrix`);
        }
        const attrs = node.attributes as {
          transA?: number;
          transB?: number;
          alpha?: number;
          beta?: number;
        };
        if (node.op === "Gemm" && attrs.transA)
          throw new Unsupported(`${describeNode(node)} has transA`);
        const transB = node.op === "Gemm" && attrs.transB === 1;
        const [k, n] = transB ? [w.dims[1]!, w.dims[0]!] : [w.dims[0]!, w.dims[1]!];
        if (k !== x.layout.width) {
          throw new Unsupported(
            `${describeNode(node)} takes ${k} features; its input has ${x.layout.width}`,
          );
        }
        const alpha = node.op === "Gemm" ? (attrs.alpha ?? 1) : 1;
        const beta = node.op === "Gemm" ? (attrs.beta ?? 1) : 1;
        // K×N, rows in the order the input holds its features (NHWC after a flatten).
        const order = featureOrder(x.layout);
        const f32 = new Float32Array(k * n);
        for (let row = 0; row < k; row++) {
          const src = order[row]!;
          for (let col = 0; col < n; col++) {
            f32[row * n + col] = alpha * w.values[transB ? col * k + src : src * n + col]!;
          }
        }
        let bias: Float32Array | null = null;
        if (node.op === "Gemm" && node.inputs[2]) {
          const c = constant(node.inputs[2], "bias");
          if (
            !(c.values instanceof Float32Array) ||
            (c.values.length !== n && c.values.length !== 1)
          ) {
            throw new Unsupported(`${describeNode(node)} has a bias that is not per output`);
          }
          bias = Float32Array.from(
            { length: n },
            (_, i) => beta * (c.values as Float32Array)[c.values.length === 1 ? 0 : i]!,
          );
        }
        const buffer = newBuffer(n);
        emit(
          {
            op: "dense",
            name,
            input: x.buffer,
            output: buffer,
            k,
            n,
            weights: new Uint8Array(0),
            scales: new Uint8Array(0),
            bias: null,
            act: "none",
            sqnrDb: 0,
            absmaxSqnrDb: 0,
            f32,
            biasF32: bias,
          },
          buffer,
        );
        values.set(out, { buffer, layout: { kind: "flat", width: n } });
        break;
      }
      case "Softmax": {
        const x = valueOf(node.inputs[0]);
        const axis = (node.attributes.axis as number | undefined) ?? -1;
        if (x.layout.kind !== "flat" || (axis !== -1 && axis !== 1)) {
          throw new Unsupported(
            `${describeNode(node)} is not a softmax over a flat [batch, features] tensor`,
          );
        }
        const width = x.layout.width;
        const buffer = newBuffer(width);
        emit({ op: "softmax", input: x.buffer, output: buffer, width }, buffer);
        values.set(out, { buffer, layout: { kind: "flat", width } });
        break;
      }
      default:
        throw new Unsupported(`${describeNode(node)} is an operator int8 graph plans do not run`);
    }
    // A MatMul followed by an Add of a constant is a dense layer with a bias.
    if (node.op === "MatMul") {
      const add = foldMatMulBias(graph, node, values, steps, producer, consumers);
      if (add) folded.add(add);
    }
  }

  // The answer, in ONNX's element order.
  let result = values.get(output.name);
  if (!result) throw new Unsupported(`the graph output '${output.name}' is never computed`);
  const layout = result.layout;
  const spread =
    layout.kind === "spatial"
      ? layout.c > 1 && layout.h * layout.w > 1
        ? { c: layout.c, hw: layout.h * layout.w }
        : undefined
      : layout.nhwcOf
        ? { c: layout.nhwcOf.c, hw: layout.nhwcOf.h * layout.nhwcOf.w }
        : undefined;
  if (spread) {
    const buffer = newBuffer(spread.c * spread.hw);
    emit({ op: "toNchw", input: result.buffer, output: buffer, ...spread }, buffer);
    result = { buffer, layout };
  }
  const outElements = elementsOf(layout);
  const declared = output.shape.slice(1);
  if (output.shape[0] !== -1 || declared.reduce((a, b) => a * b, 1) !== outElements) {
    throw new Unsupported(
      `output '${output.name}' is declared [${output.shape.join(", ")}] but computes ${outElements} values per sample`,
    );
  }
  if (steps.length === 0) throw new Unsupported("the graph computes nothing int8 plans would run");

  const { placed, reports } = quantise(steps);
  const arena = planArena(buffers, placed, inputBuffer, result.buffer);
  const meta: Omit<GraphPlan, "steps"> = {
    input: { name: input.name, shape: input.shape, buffer: inputBuffer },
    output: { name: output.name, shape: output.shape, buffer: result.buffer },
    buffers: buffers.map((elements, i) => ({ elements, offset: arena.offsets[i]! })),
    arenaElements: arena.size,
  };
  return { ok: true, plan: encodeGraphPlan(meta, placed), layers: reports };
}

function flatten(v: Value): Value {
  if (v.layout.kind === "flat") return v;
  const { c, h, w } = v.layout;
  return {
    buffer: v.buffer,
    layout: {
      kind: "flat",
      width: c * h * w,
      ...(c > 1 && h * w > 1 ? { nhwcOf: { c, h, w } } : {}),
    },
  };
}

/** For each position of a flat value in memory, the ONNX feature index it holds. */
function featureOrder(layout: Extract<Layout, { kind: "flat" }>): Int32Array {
  const order = new Int32Array(layout.width);
  if (!layout.nhwcOf) {
    for (let i = 0; i < order.length; i++) order[i] = i;
    return order;
  }
  const { c, h, w } = layout.nhwcOf;
  let at = 0;
  for (let p = 0; p < h * w; p++) for (let ch = 0; ch < c; ch++) order[at++] = ch * h * w + p;
  return order;
}

/**
 * Folds `MatMul → Add(constant)` into the dense step's bias when the MatMul's
 * result has no other reader; returns the Add node, now computed.
 */
function foldMatMulBias(
  graph: Graph,
  node: GraphNode,
  values: Map<string, Value>,
  steps: Draft[],
  producer: Map<number, number>,
  consumers: Map<string, number>,
): GraphNode | undefined {
  const out = node.outputs[0]!;
  if ((consumers.get(out) ?? 0) !== 1) return undefined;
  const add = graph.nodes.find((n) => n.op === "Add" && n.inputs.includes(out));
  if (!add) return undefined;
  const other = add.inputs.find((name) => name !== out);
  const c = other ? graph.constants.get(other) : undefined;
  const v = values.get(out)!;
  const step = steps[producer.get(v.buffer)!];
  if (!c || !(c.values instanceof Float32Array) || step?.op !== "dense") return undefined;
  if (c.values.length !== step.n || step.biasF32) return undefined;
  step.biasF32 = Float32Array.from(c.values);
  values.set(add.outputs[0]!, v);
  return add;
}

/** Quantises the drafts' weights and returns placed-ready steps plus the report per weighted step. */
function quantise(drafts: Draft[]): { placed: UnplacedStep[]; reports: StepReport[] } {
  const reports: StepReport[] = [];
  const placed = drafts.map((draft): UnplacedStep => {
    if (draft.op === "conv" || draft.op === "dense") {
      const { f32, biasF32, ...step } = draft;
      const [k, n] =
        draft.op === "conv" ? [draft.kh * draft.kw * draft.c, draft.cout] : [draft.k, draft.n];
      const { q, scales, sqnrDb, absmaxSqnrDb } = quantiseWeights(f32, k, n);
      reports.push({
        name: draft.name,
        op: draft.op,
        k,
        n,
        activation: draft.act,
        sqnrDb,
        absmaxSqnrDb,
      });
      return {
        ...step,
        weights: bytesOf(q),
        scales: bytesOf(scales),
        bias: biasF32 ? bytesOf(Float32Array.from(biasF32)) : null,
        sqnrDb,
        absmaxSqnrDb,
      } as UnplacedStep;
    }
    if (draft.op === "depthwise") {
      const { f32, biasF32, ...step } = draft;
      return {
        ...step,
        weights: bytesOf(Float32Array.from(f32)),
        bias: biasF32 ? bytesOf(Float32Array.from(biasF32)) : null,
      };
    }
    return draft;
  });
  return { placed, reports };
}

/**
 * Offsets (values per sample) for every buffer such that buffers alive at the
 * same time never overlap: a buffer lives from the step that writes it (the
 * input before the first) to the last step that reads it (the output past the
 * last). Greedy, largest first, each at the lowest offset free for its whole
 * lifetime.
 */
export function planArena(
  sizes: readonly number[],
  steps: readonly UnplacedStep[],
  input: number,
  output: number,
): { offsets: number[]; size: number } {
  const first = sizes.map(() => Infinity);
  const last = sizes.map(() => -Infinity);
  const touch = (id: number, at: number) => {
    first[id] = Math.min(first[id]!, at);
    last[id] = Math.max(last[id]!, at);
  };
  touch(input, -1);
  touch(output, steps.length);
  steps.forEach((step, at) => {
    for (const [key, id] of Object.entries(step)) {
      if (["input", "output", "a", "b", "gate"].includes(key) && typeof id === "number")
        touch(id, at);
    }
  });
  const order = sizes.map((_, i) => i).filter((i) => first[i] !== Infinity);
  order.sort((a, b) => sizes[b]! - sizes[a]! || a - b);
  const offsets = sizes.map(() => 0);
  const placed: number[] = [];
  let size = 0;
  for (const id of order) {
    const overlapping = placed
      .filter((other) => first[other]! <= last[id]! && first[id]! <= last[other]!)
      .map((other) => [offsets[other]!, offsets[other]! + sizes[other]!] as const)
      .sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [start, end] of overlapping) {
      if (at + sizes[id]! <= start) break;
      at = Math.max(at, end);
    }
    offsets[id] = at;
    placed.push(id);
    size = Math.max(size, at + sizes[id]!);
  }
  return { offsets, size };
}
