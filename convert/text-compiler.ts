/**
 * @module
 * The text compiler: transformer encoders as `torch.onnx.export` writes them
 * (token-id inputs, embeddings, attention, LayerNorm, feed-forward, pooling,
 * a classifier head) compiled to a text plan (`core/runtimes/int8/text-plan.ts`).
 *
 * The graph is run symbolically once, one sample (the batch axis taken as
 * 1) at sequence length S: every dimension is a polynomial in S. The
 * exporter's shape arithmetic (Shape, Gather/Slice/Concat/Unsqueeze on
 * shapes, Cast, integer Add/Mul/Div) becomes compile-time values, and
 * Reshape, Transpose, Slice, Unsqueeze, Squeeze, Expand and Gather of one
 * index become views (offset and strides) of the buffers they read — no
 * copy. A view is copied only where a step needs its input contiguous; the
 * attention products read Q, K and V through their strides (head split) and a
 * scale (Q/√d) rides along a view into the product. Patterns become single
 * kernels: the decomposed LayerNorm and LayerNormalization, GELU (erf form,
 * tanh form and the Gelu op), an attention mask added right before a Softmax,
 * MatMul/Gemm with constant weights (+ bias, + ReLU) on the fused int8 layer.
 * Anything else stops compilation with the node named.
 */
import { bytesOf } from "../core/runtimes/int8/plan";
import {
  BINARY_FUNCTIONS,
  encodeTextPlan,
  evalPoly,
  textStepBuffers,
  UNARY_FUNCTIONS,
  type Loc,
  type Poly,
  type TextPlan,
  type TextStep,
} from "../core/runtimes/int8/text-plan";
import { describeNonFinite, scanValues } from "./finite";
import type { StepReport } from "./graph-compiler";
import type { Graph, GraphNode } from "./onnx";
import { db, quantiseWeights } from "./weight-quantisation";

export interface TextCompileOptions {
  /** The longest sequence a request may send, when the model's sequence axis is dynamic. */
  maxSequence?: number;
}

/** Unary functions the compiler evaluates on compile-time values. */
const COMPILE_TIME_UNARY: Partial<Record<(typeof UNARY_FUNCTIONS)[number], (x: number) => number>> =
  {
    sqrt: Math.sqrt,
    neg: (x) => -x,
    exp: Math.exp,
    reciprocal: (x) => 1 / x,
    tanh: Math.tanh,
    relu: (x) => Math.max(0, x),
  };

/** Embedding tables of at least this many values are stored int8 (per-row scales); smaller stay f32. */
export const INT8_TABLE_MIN_VALUES = 16384;

/** When a dynamic sequence axis has no `maxSequence`: BERT-style encoders' usual serving length. */
export const DEFAULT_MAX_SEQUENCE = 128;

export type TextCompileOutcome =
  | { ok: true; plan: Uint8Array; layers: StepReport[]; maxSequence: number }
  | { ok: false; reason: string };

class Unsupported extends Error {}

const describeNode = (node: GraphNode) =>
  `node ${node.index} (${node.op}${node.name ? ` '${node.name}'` : ""})`;

// ---- polynomials in S -------------------------------------------------------

const P = (c: number): Poly => [c];
const S_POLY: Poly = [0, 1];
const trim = (p: Poly): Poly => {
  const q = [...p];
  while (q.length > 1 && q[q.length - 1] === 0) q.pop();
  return q;
};
const padd = (a: Poly, b: Poly): Poly =>
  trim(Array.from({ length: Math.max(a.length, b.length) }, (_, i) => (a[i] ?? 0) + (b[i] ?? 0)));
const pneg = (a: Poly): Poly => a.map((c) => -c);
const pmul = (a: Poly, b: Poly): Poly => {
  const out = new Array<number>(a.length + b.length - 1).fill(0);
  a.forEach((x, i) => b.forEach((y, j) => (out[i + j]! += x * y)));
  return trim(out);
};
const isConst = (p: Poly) => trim(p).length === 1;
const constOf = (p: Poly) => trim(p)[0]!;
const peq = (a: Poly, b: Poly) => {
  const [x, y] = [trim(a), trim(b)];
  return x.length === y.length && x.every((c, i) => c === y[i]);
};
/** a / b when exact (b a monomial dividing every term of a), else undefined. */
function pdiv(a: Poly, b: Poly): Poly | undefined {
  const d = trim(b);
  const power = d.findIndex((c) => c !== 0);
  if (power < 0 || d.slice(power + 1).some((c) => c !== 0)) return undefined;
  const c = d[power]!;
  const x = trim(a);
  if (x.slice(0, power).some((v) => v !== 0)) return undefined;
  const out = x.slice(power).map((v) => v / c);
  return out.every(Number.isInteger) ? trim(out.length ? out : [0]) : undefined;
}
const product = (dims: Poly[]) => dims.reduce((a, d) => pmul(a, d), P(1));
const rowMajor = (shape: Poly[]): Poly[] => {
  const strides: Poly[] = new Array(shape.length);
  let acc = P(1);
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = acc;
    acc = pmul(acc, shape[i]!);
  }
  return strides;
};

// ---- symbolic values ----------------------------------------------------------

/** A small compile-time vector (shapes and what the exporter computes from them). */
interface Small {
  kind: "small";
  /** Scalar (rank 0) or vector. */
  scalar: boolean;
  values: Poly[];
  float: boolean;
}
/** A constant tensor from the graph, concrete. */
interface Const {
  kind: "const";
  name: string;
  dims: number[];
  values: Float32Array | BigInt64Array;
}
/** A tensor in memory (arena or constant blob) seen through a view. */
interface View {
  kind: "view";
  dtype: "f32" | "i32";
  shape: Poly[];
  strides: Poly[];
  at: Loc;
  /** Pending multiplier (a scale on the way into an attention product). */
  scale: number;
  /** An additive mask to apply in the Softmax that reads this value. */
  mask?: { at: Loc; stride: Poly };
}
type Sym = Small | Const | View;

export function compileText(graph: Graph, options: TextCompileOptions = {}): TextCompileOutcome {
  try {
    return new TextCompiler(graph, options).compile();
  } catch (error) {
    if (error instanceof Unsupported) return { ok: false, reason: error.message };
    throw error;
  }
}

/** Whether the graph looks like a text model (integer inputs): the text compiler's to judge. */
export const takesTokens = (graph: Graph) =>
  graph.inputs.some((i) => i.datatype === "INT64" || i.datatype === "INT32");

class TextCompiler {
  private readonly values = new Map<string, Sym>();
  private readonly buffers: Poly[] = [];
  private readonly steps: TextStep[] = [];
  private readonly blobs: Uint8Array[] = [];
  private readonly constBlobs = new Map<string, number>();
  private readonly reports: StepReport[] = [];
  private readonly int8Tables = new Map<string, { table: number; scales: number }>();
  /** The activation products by the buffer they write (a scale after one folds into it). */
  private readonly products = new Map<number, Extract<TextStep, { op: "matmul" }>>();
  /** Each activation product's ONNX output. */
  private readonly productNames = new Map<TextStep, string>();
  private readonly consumers = new Map<string, GraphNode[]>();
  private readonly done = new Set<GraphNode>();
  private readonly max: number;
  private readonly fixed: boolean;
  private node!: GraphNode;

  constructor(
    private readonly graph: Graph,
    options: TextCompileOptions,
  ) {
    for (const node of graph.nodes) {
      for (const name of node.inputs) {
        if (name) this.consumers.set(name, [...(this.consumers.get(name) ?? []), node]);
      }
    }
    const seqDims = graph.inputs.map((i) => i.shape[1]);
    const staticSeq = seqDims.find((d) => d !== undefined && d > 0);
    this.fixed = staticSeq !== undefined;
    this.max = staticSeq ?? options.maxSequence ?? DEFAULT_MAX_SEQUENCE;
    if (
      options.maxSequence !== undefined &&
      staticSeq !== undefined &&
      options.maxSequence !== staticSeq
    ) {
      throw new Unsupported(
        `the model's sequence axis is fixed at ${staticSeq}; --max-sequence ${options.maxSequence} does not apply`,
      );
    }
    if (!Number.isInteger(this.max) || this.max < 1 || this.max > 8192) {
      throw new Unsupported(`a maximum sequence of ${this.max} is outside 1…8192`);
    }
  }

  private fail(why: string): never {
    throw new Unsupported(`${describeNode(this.node)} ${why}`);
  }

  compile(): TextCompileOutcome {
    const { graph } = this;
    if (graph.outputs.length !== 1) {
      throw new Unsupported(
        `the graph has ${graph.outputs.length} outputs; int8 text plans return one`,
      );
    }
    const output = graph.outputs[0]!;
    if (output.datatype !== "FP32") throw new Unsupported("int8 text plans return an FP32 tensor");
    const nonFinite = [...graph.constants]
      .map(([name, { values }]) =>
        values instanceof Float32Array ? scanValues(name, values) : undefined,
      )
      .filter((hit) => hit !== undefined);
    if (nonFinite.length > 0) {
      throw new Unsupported(
        `int8 cannot quantise non-finite weights: ${describeNonFinite(nonFinite)}`,
      );
    }
    const inputs: TextPlan["inputs"] = [];
    for (const input of graph.inputs) {
      const d = input.datatype;
      if ((d !== "INT64" && d !== "INT32") || input.shape.length !== 2 || input.shape[0] !== -1) {
        throw new Unsupported(
          `input '${input.name}' is ${d} [${input.shape.join(", ")}]; int8 text plans take INT64 or INT32 [batch, sequence] inputs (token ids, attention mask, token types)`,
        );
      }
      if (input.shape[1]! > 0 && input.shape[1] !== this.max) {
        throw new Unsupported(
          `the inputs' sequence axes differ ([${graph.inputs.map((i) => i.shape[1]).join(", ")}])`,
        );
      }
      const seq = this.fixed ? P(this.max) : S_POLY;
      const buffer = this.newBuffer(seq);
      inputs.push({ name: input.name, datatype: d, shape: input.shape, buffer });
      this.values.set(input.name, this.viewOf(buffer, [P(1), seq], "i32"));
    }
    for (const node of graph.nodes) {
      this.node = node;
      if (this.done.has(node)) continue;
      if (node.domain !== "") this.fail(`is in domain '${node.domain}'`);
      this.lower(node);
    }
    const result = this.values.get(output.name);
    if (!result || result.kind !== "view") {
      throw new Unsupported(`the graph output '${output.name}' is not a tensor the plan computes`);
    }
    if (result.shape.length !== output.shape.length || !peq(result.shape[0] ?? P(0), P(1))) {
      throw new Unsupported(
        `output '${output.name}' is not [batch, …] (computed ${this.show(result.shape)})`,
      );
    }
    const final = this.contiguous(result, true);
    const sampleShape = final.shape.slice(1);
    const outBuffer = final.at.buffer!;
    const arena = this.planArena(
      inputs.map((i) => i.buffer),
      outBuffer,
    );
    const meta: Omit<TextPlan, "blobs" | "kind"> = {
      inputs,
      output: {
        name: output.name,
        datatype: "FP32",
        shape: output.shape,
        buffer: outBuffer,
        sampleShape,
      },
      sequence: { max: this.max, fixed: this.fixed },
      buffers: this.buffers.map((elements, i) => ({ elements, offset: arena.offsets[i]! })),
      arenaElements: Math.max(1, arena.size),
      steps: this.steps,
    };
    if (this.steps.length === 0)
      throw new Unsupported("the graph computes nothing an int8 plan would run");
    return {
      ok: true,
      plan: encodeTextPlan(meta, this.blobs),
      layers: this.reports,
      maxSequence: this.max,
    };
  }

  private show(shape: Poly[]) {
    return `[${shape.map((d) => (isConst(d) ? String(constOf(d)) : `${d.map((c, i) => (i ? `${c}·S${i > 1 ? `^${i}` : ""}` : c)).join("+")}`)).join(", ")}]`;
  }

  // ---- buffers, blobs, views ----

  private newBuffer(elements: Poly): number {
    return this.buffers.push(elements) - 1;
  }

  private viewOf(buffer: number, shape: Poly[], dtype: "f32" | "i32" = "f32"): View {
    return {
      kind: "view",
      dtype,
      shape,
      strides: rowMajor(shape),
      at: { buffer, offset: P(0) },
      scale: 1,
    };
  }

  private blob(data: ArrayBufferView): number {
    return this.blobs.push(new Uint8Array(bytesOf(data).slice())) - 1;
  }

  /** A constant as a tensor in a blob (f32, or i32 for integer constants). */
  private constView(c: Const): View {
    let index = this.constBlobs.get(c.name);
    const int = c.values instanceof BigInt64Array;
    if (index === undefined) {
      let data: Float32Array | Int32Array;
      if (c.values instanceof BigInt64Array) {
        data = Int32Array.from(c.values, (v) => {
          if (v < -2147483648n || v > 2147483647n)
            this.fail(`reads integer constant '${c.name}' beyond int32`);
          return Number(v);
        });
      } else data = c.values;
      index = this.blob(data.length > 0 ? data : new Float32Array(1));
      this.constBlobs.set(c.name, index);
    }
    const shape = c.dims.map(P);
    return {
      kind: "view",
      dtype: int ? "i32" : "f32",
      shape,
      strides: rowMajor(shape),
      at: { blob: index, offset: P(0) },
      scale: 1,
    };
  }

  private emit(step: TextStep) {
    this.steps.push(step);
  }

  /**
   * `v` as a contiguous tensor with no pending scale (copied when it is not
   * one); `fresh`: also at the start of an arena buffer, for the steps that
   * read a whole buffer.
   */
  private contiguous(v: View, fresh = false): View {
    const strides = rowMajor(v.shape);
    const same = v.shape.every(
      (d, i) => (isConst(d) && constOf(d) === 1) || peq(v.strides[i]!, strides[i]!),
    );
    const whole = v.at.buffer !== undefined && peq(v.at.offset, P(0));
    if (same && v.scale === 1 && !v.mask && (!fresh || whole)) {
      return { ...v, strides };
    }
    if (v.dtype !== "f32")
      this.fail("needs a strided integer tensor copied; int8 text plans copy only floats");
    const squeezed = this.squeezeForCopy(v);
    const buffer = this.newBuffer(product(v.shape));
    this.emit({
      op: "copy",
      input: { at: v.at, strides: squeezed.strides },
      shape: squeezed.shape,
      scale: v.scale,
      output: buffer,
    });
    return this.viewOf(buffer, v.shape);
  }

  /** Drops size-1 axes and merges axes contiguous with each other, to fit the 4-axis steps. */
  private squeezeForCopy(v: View): { shape: Poly[]; strides: Poly[] } {
    const shape: Poly[] = [];
    const strides: Poly[] = [];
    v.shape.forEach((d, i) => {
      if (isConst(d) && constOf(d) === 1) return;
      const last = shape.length - 1;
      if (last >= 0 && peq(strides[last]!, pmul(d, v.strides[i]!))) {
        shape[last] = pmul(shape[last]!, d);
        strides[last] = v.strides[i]!;
        return;
      }
      shape.push(d);
      strides.push(v.strides[i]!);
    });
    if (shape.length === 0) return { shape: [P(1)], strides: [P(1)] };
    if (shape.length > 4)
      this.fail(`needs a copy over ${shape.length} axes; int8 text plans copy up to 4`);
    return { shape, strides };
  }

  // ---- reading inputs ----

  private sym(name: string | undefined): Sym {
    if (!name) this.fail("has an empty input");
    const v = this.values.get(name);
    if (v) return v;
    const c = this.graph.constants.get(name);
    if (c) return { kind: "const", name, dims: c.dims, values: c.values };
    this.fail(
      `takes '${name}', which is not a value int8 text plans compute (a type they do not read?)`,
    );
  }

  /** An input as a compile-time vector, when it is one. */
  private small(name: string | undefined): Small | undefined {
    const v = this.sym(name);
    if (v.kind === "small") return v;
    if (v.kind === "const" && v.dims.length <= 1 && v.values.length <= 64) {
      return {
        kind: "small",
        scalar: v.dims.length === 0,
        values: Array.from(v.values as ArrayLike<number | bigint>, (x) => P(Number(x))),
        float: v.values instanceof Float32Array,
      };
    }
    return undefined;
  }

  private needSmall(name: string | undefined, what: string): Small {
    const s = this.small(name);
    if (!s)
      this.fail(
        `has a ${what} computed at run time; int8 text plans need it known at compile time`,
      );
    return s;
  }

  private tensor(name: string | undefined): View {
    const v = this.sym(name);
    if (v.kind === "view") return v;
    if (v.kind === "const") return this.constView(v);
    // A compile-time vector used as a tensor: store it.
    if (!v.values.every(isConst)) this.fail("uses a sequence-dependent shape value as a tensor");
    const data = v.float
      ? Float32Array.from(v.values, constOf)
      : Int32Array.from(v.values, constOf);
    const index = this.blob(data);
    const shape = v.scalar ? [] : [P(v.values.length)];
    return {
      kind: "view",
      dtype: v.float ? "f32" : "i32",
      shape,
      strides: rowMajor(shape),
      at: { blob: index, offset: P(0) },
      scale: 1,
    };
  }

  private scalarConst(name: string | undefined): number | undefined {
    const s = this.small(name);
    if (!s || s.values.length !== 1 || !isConst(s.values[0]!)) return undefined;
    return constOf(s.values[0]!);
  }

  private consumersOf(name: string) {
    return this.consumers.get(name) ?? [];
  }

  private only(name: string): GraphNode | undefined {
    const next = this.consumersOf(name);
    return next.length === 1 && name !== this.graph.outputs[0]!.name ? next[0] : undefined;
  }

  private axis(axis: number, rank: number): number {
    const a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) this.fail(`has axis ${axis} outside rank ${rank}`);
    return a;
  }

  private set(name: string | undefined, value: Sym) {
    if (name) this.values.set(name, value);
  }

  // ---- lowering ----

  private lower(node: GraphNode) {
    const out = node.outputs[0];
    const a = node.attributes;
    switch (node.op) {
      case "Constant":
        if (!this.graph.constants.has(out ?? ""))
          this.fail("holds a constant of a type int8 plans do not read");
        return;
      case "Identity":
      case "Dropout":
        this.set(out, this.sym(node.inputs[0]));
        return;
      case "Shape": {
        const x = this.sym(node.inputs[0]);
        const dims =
          x.kind === "view"
            ? x.shape
            : x.kind === "const"
              ? x.dims.map(P)
              : x.scalar
                ? []
                : [P(x.values.length)];
        const rank = dims.length;
        const clamp = (v: number) => Math.max(0, Math.min(rank, v < 0 ? v + rank : v));
        const start = clamp((a.start as number | undefined) ?? 0);
        const end = clamp((a.end as number | undefined) ?? rank);
        this.set(out, {
          kind: "small",
          scalar: false,
          values: dims.slice(start, end),
          float: false,
        });
        return;
      }
      case "Cast": {
        const to = a.to as number;
        const x = this.sym(node.inputs[0]);
        const toFloat = to === 1;
        const toInt = to === 6 || to === 7 || to === 9; // INT32, INT64, BOOL
        if (!toFloat && !toInt)
          this.fail(`casts to type ${to}; int8 text plans cast between FP32 and integers`);
        if (x.kind !== "view") {
          const s = this.small(node.inputs[0]);
          if (!s) this.fail("casts a large constant");
          this.set(out, {
            ...s,
            float: toFloat,
            values: toFloat ? s.values : s.values.map((p) => p.map(Math.trunc)),
          });
          return;
        }
        if (to === 9) {
          // To BOOL (a mask for Where): 0/1 as i32.
          const src = this.contiguous(x);
          const count = product(src.shape);
          const buffer = this.newBuffer(count);
          const fn = src.dtype === "f32" ? "nonzero" : "nonzeroInt";
          this.emit({ op: "unary", fn, input: src.at, count, output: buffer });
          this.set(out, this.viewOf(buffer, src.shape, "i32"));
          return;
        }
        if (toFloat === (x.dtype === "f32")) {
          this.set(out, x);
          return;
        }
        if (!toFloat) this.fail("casts floats to integers at run time");
        const src = this.contiguous(x);
        const buffer = this.newBuffer(product(src.shape));
        this.emit({
          op: "unary",
          fn: "toFloat",
          input: src.at,
          count: product(src.shape),
          output: buffer,
        });
        this.set(out, this.viewOf(buffer, src.shape));
        return;
      }
      case "Unsqueeze":
      case "Squeeze": {
        const axesList = node.inputs[1]
          ? this.needSmall(node.inputs[1], "axes").values.map(constOf)
          : ((a.axes as number[] | undefined) ?? []);
        const x = this.sym(node.inputs[0]);
        if (x.kind !== "view") {
          const s = this.small(node.inputs[0]);
          if (!s) this.fail("reshapes a large constant");
          if (node.op === "Unsqueeze" && s.scalar && axesList.length === 1)
            this.set(out, { ...s, scalar: false });
          else if (node.op === "Squeeze" && !s.scalar && s.values.length === 1)
            this.set(out, { ...s, scalar: true });
          else this.fail("reshapes a shape value in a way int8 text plans do not follow");
          return;
        }
        let shape = [...x.shape];
        let strides = [...x.strides];
        if (node.op === "Unsqueeze") {
          const rank = shape.length + axesList.length;
          const axes = axesList.map((ax) => this.axis(ax, rank)).sort((p, q) => p - q);
          for (const ax of axes) {
            shape.splice(ax, 0, P(1));
            strides.splice(ax, 0, P(0));
          }
        } else {
          const axes = axesList.length
            ? axesList.map((ax) => this.axis(ax, shape.length))
            : shape.map((d, i) => (isConst(d) && constOf(d) === 1 ? i : -1)).filter((i) => i >= 0);
          for (const ax of axes)
            if (!(isConst(shape[ax]!) && constOf(shape[ax]!) === 1))
              this.fail(`squeezes axis ${ax} of size ≠ 1`);
          shape = shape.filter((_, i) => !axes.includes(i));
          strides = strides.filter((_, i) => !axes.includes(i));
        }
        this.set(out, { ...x, shape, strides });
        return;
      }
      case "Concat": {
        const parts = node.inputs.map((n) => this.small(n));
        if (parts.every((p) => p !== undefined)) {
          this.set(out, {
            kind: "small",
            scalar: false,
            values: parts.flatMap((p) => p!.values),
            float: parts.some((p) => p!.float),
          });
          return;
        }
        this.fail("concatenates tensors; int8 text plans concatenate only shape values");
        return;
      }
      case "Gather":
        return this.gather(node);
      case "Slice":
        return this.slice(node);
      case "Reshape":
        return this.reshape(node);
      case "Transpose": {
        const x = this.sym(node.inputs[0]);
        if (x.kind !== "view") return this.fail("transposes a constant");
        const perm =
          (a.perm as number[] | undefined) ?? x.shape.map((_, i) => x.shape.length - 1 - i);
        this.set(out, {
          ...x,
          shape: perm.map((p) => x.shape[p]!),
          strides: perm.map((p) => x.strides[p]!),
        });
        return;
      }
      case "Expand": {
        const x = this.tensor(node.inputs[0]);
        const target = this.needSmall(node.inputs[1], "shape").values;
        const rank = Math.max(target.length, x.shape.length);
        const xs = [...Array(rank - x.shape.length).fill(P(1)), ...x.shape] as Poly[];
        const st = [...Array(rank - x.shape.length).fill(P(0)), ...x.strides] as Poly[];
        const tg = [...Array(rank - target.length).fill(P(1)), ...target] as Poly[];
        const shape = xs.map((d, i) => (isConst(d) && constOf(d) === 1 ? tg[i]! : d));
        const strides = st.map((s, i) => (isConst(xs[i]!) && constOf(xs[i]!) === 1 ? P(0) : s));
        this.set(out, { ...x, shape, strides });
        return;
      }
      case "Add":
      case "Sub":
      case "Mul":
      case "Div":
      case "Pow":
      case "Max":
      case "Min":
        return this.binary(node);
      case "MatMul":
      case "Gemm":
        return this.matmul(node);
      case "ReduceMean":
      case "ReduceSum":
      case "ReduceMax":
        return this.reduce(node);
      case "LayerNormalization": {
        const x = this.contiguous(this.tensor(node.inputs[0]), true);
        const axis = this.axis((a.axis as number | undefined) ?? -1, x.shape.length);
        if (axis !== x.shape.length - 1) this.fail("normalises over more than the last axis");
        if (node.outputs.slice(1).some((o) => o && this.consumersOf(o).length > 0))
          this.fail("has its mean or variance read");
        return this.layerNorm(
          x,
          node.inputs[1],
          node.inputs[2],
          (a.epsilon as number | undefined) ?? 1e-5,
          out,
        );
      }
      case "Softmax": {
        const v = this.tensor(node.inputs[0]);
        const axis = this.axis((a.axis as number | undefined) ?? -1, v.shape.length);
        if (axis !== v.shape.length - 1) this.fail("is not over the last axis");
        const mask = v.mask;
        const x = this.contiguous({ ...v, mask: undefined }, true);
        const width = x.shape.at(-1)!;
        const rows = product(x.shape.slice(0, -1));
        const buffer = this.newBuffer(product(x.shape));
        this.emit({
          op: "softmax",
          input: x.at.buffer!,
          rows,
          width,
          mask: mask?.at ?? null,
          maskStride: mask?.stride ?? P(0),
          output: buffer,
        });
        this.set(out, this.viewOf(buffer, x.shape));
        return;
      }
      case "Where": {
        const cond = this.tensor(node.inputs[0]);
        if (cond.dtype !== "i32") this.fail("selects by a float condition");
        const [x, y] = [node.inputs[1], node.inputs[2]].map((n) => {
          const v = this.tensor(n);
          if (v.dtype !== "f32") this.fail("selects between integer tensors");
          return v.scale === 1 ? v : this.contiguous(v);
        }) as [View, View];
        const views = [cond, x, y];
        const rank = Math.max(1, ...views.map((v) => v.shape.length));
        if (rank > 4)
          this.fail(`selects over rank ${rank}; int8 text plans select over up to 4 axes`);
        const lifted = views.map((v) => ({
          shape: [...Array(rank - v.shape.length).fill(P(1)), ...v.shape] as Poly[],
          strides: [...Array(rank - v.shape.length).fill(P(0)), ...v.strides] as Poly[],
        }));
        const one = (d: Poly) => isConst(d) && constOf(d) === 1;
        const shape = Array.from({ length: rank }, (_, i) => {
          const dims = lifted.map((l) => l.shape[i]!).filter((d) => !one(d));
          if (dims.some((d) => !peq(d, dims[0]!))) this.fail("broadcasts shapes that do not match");
          return dims[0] ?? P(1);
        });
        const strided = (l: { shape: Poly[]; strides: Poly[] }, v: View) => ({
          at: v.at,
          strides: l.strides.map((st, i) => (one(l.shape[i]!) ? P(0) : st)),
        });
        const buffer = this.newBuffer(product(shape));
        this.emit({
          op: "where",
          cond: strided(lifted[0]!, cond),
          a: strided(lifted[1]!, x),
          b: strided(lifted[2]!, y),
          shape,
          output: buffer,
        });
        this.set(out, this.viewOf(buffer, shape));
        return;
      }
      case "Clip": {
        // Bounds from inputs (opset ≥ 11) or attributes; each a max/min against a scalar.
        const bound = (i: number, attr: string) => {
          const name = node.inputs[i];
          if (name) {
            const v = this.scalarConst(name);
            if (v === undefined) this.fail("has a bound that is not a constant scalar");
            return v;
          }
          return a[attr] as number | undefined;
        };
        const [lo, hi] = [bound(1, "min"), bound(2, "max")];
        let x = this.tensor(node.inputs[0]);
        for (const [fn, v] of [
          ["max", lo],
          ["min", hi],
        ] as const) {
          if (v === undefined) continue;
          x = this.elementwise(fn, this.contiguous(x), this.scalarView(v));
        }
        this.set(out, x);
        return;
      }
      case "Relu":
        return this.unary(node, "relu");
      case "Tanh":
        return this.unary(node, "tanh");
      case "Erf":
        return this.unary(node, "erf");
      case "Sigmoid":
        return this.unary(node, "sigmoid");
      case "Sqrt":
        return this.unary(node, "sqrt");
      case "Neg":
        return this.unary(node, "neg");
      case "Exp":
        return this.unary(node, "exp");
      case "Reciprocal":
        return this.unary(node, "reciprocal");
      case "Gelu":
        return this.unary(node, (a.approximate ?? "none") === "tanh" ? "geluTanh" : "gelu");
      default:
        this.fail("is an operator int8 text plans do not run");
    }
  }

  /** A scalar float as a tensor in a blob. */
  private scalarView(v: number): View {
    return {
      kind: "view",
      dtype: "f32",
      shape: [],
      strides: [],
      at: { blob: this.blob(Float32Array.of(v)), offset: P(0) },
      scale: 1,
    };
  }

  /** `x ∘ y` elementwise with broadcasting, into a new buffer. */
  private elementwise(fn: (typeof BINARY_FUNCTIONS)[number], x: View, y: View): View {
    const rank = Math.max(x.shape.length, y.shape.length, 1);
    const lift = (v: View) => ({
      shape: [...Array(rank - v.shape.length).fill(P(1)), ...v.shape] as Poly[],
      strides: [...Array(rank - v.shape.length).fill(P(0)), ...v.strides] as Poly[],
    });
    const [lx, ly] = [lift(x), lift(y)];
    const shape: Poly[] = lx.shape.map((d, i) => {
      const e = ly.shape[i]!;
      if (peq(d, e)) return d;
      if (isConst(d) && constOf(d) === 1) return e;
      if (isConst(e) && constOf(e) === 1) return d;
      return this.fail(`broadcasts ${this.show(x.shape)} with ${this.show(y.shape)}`);
    });
    if (rank > 4)
      this.fail(`combines tensors of rank ${rank}; int8 text plans combine up to 4 axes`);
    const bstr = (l: { shape: Poly[]; strides: Poly[] }) =>
      l.strides.map((s, i) => (isConst(l.shape[i]!) && constOf(l.shape[i]!) === 1 ? P(0) : s));
    const buffer = this.newBuffer(product(shape));
    this.emit({
      op: "binary",
      fn,
      a: { at: x.at, strides: bstr(lx) },
      b: { at: y.at, strides: bstr(ly) },
      shape,
      output: buffer,
    });
    return this.viewOf(buffer, x.shape.length === 0 && y.shape.length === 0 ? [] : shape);
  }

  private unary(
    node: GraphNode,
    fn: (typeof UNARY_FUNCTIONS)[number],
    input = node.inputs[0],
    out = node.outputs[0],
  ) {
    // On a compile-time value (1/√d computed from a shape, as SDPA exports write it): evaluated here.
    const known = this.sym(input).kind !== "view" ? this.small(input) : undefined;
    const at = COMPILE_TIME_UNARY[fn];
    if (known && at && known.values.every(isConst)) {
      const values = known.values.map((v) => P(at(constOf(v))));
      this.set(out, { ...known, values, float: true });
      return;
    }
    const x = this.contiguous(this.tensor(input));
    if (x.dtype !== "f32") this.fail("applies a float function to integers");
    const count = product(x.shape);
    const buffer = this.newBuffer(count);
    this.emit({ op: "unary", fn, input: x.at, count, output: buffer });
    this.set(out, this.viewOf(buffer, x.shape));
  }

  private gather(node: GraphNode) {
    const out = node.outputs[0];
    const data = this.sym(node.inputs[0]);
    const axisAttr = (node.attributes.axis as number | undefined) ?? 0;
    const indexSmall = this.small(node.inputs[1]);
    if (
      data.kind === "small" ||
      (data.kind === "const" && indexSmall && this.small(node.inputs[0]))
    ) {
      const d = this.small(node.inputs[0])!;
      if (!indexSmall) this.fail("indexes a shape value at run time");
      const pick = indexSmall.values.map((i) => {
        let k = constOf(i);
        if (k < 0) k += d.values.length;
        if (k < 0 || k >= d.values.length) this.fail(`indexes position ${k} of ${d.values.length}`);
        return d.values[k]!;
      });
      this.set(out, { kind: "small", scalar: indexSmall.scalar, values: pick, float: d.float });
      return;
    }
    // One index (or a constant list of one) on an activation: a view ([CLS] selection, a head).
    if (
      data.kind === "view" &&
      indexSmall &&
      indexSmall.values.length === 1 &&
      isConst(indexSmall.values[0]!)
    ) {
      const ax = this.axis(axisAttr, data.shape.length);
      let k = constOf(indexSmall.values[0]!);
      if (k < 0) {
        if (!isConst(data.shape[ax]!)) this.fail("counts from the end of a sequence-long axis");
        k += constOf(data.shape[ax]!);
      }
      if (k < 0 || evalPoly(data.shape[ax]!, this.fixed ? this.max : 1) <= k)
        this.fail(`picks index ${k} beyond its axis`);
      const at = { ...data.at, offset: padd(data.at.offset, pmul(P(k), data.strides[ax]!)) };
      const shape = [...data.shape];
      const strides = [...data.strides];
      if (indexSmall.scalar) {
        shape.splice(ax, 1);
        strides.splice(ax, 1);
      } else shape[ax] = P(1);
      this.set(out, { ...data, at, shape, strides });
      return;
    }
    // An embedding table (constant) at token ids.
    if (data.kind !== "const" || !(data.values instanceof Float32Array) || data.dims.length !== 2) {
      this.fail("gathers from something other than a constant float table [rows, width]");
    }
    if (axisAttr !== 0) this.fail("gathers on an axis other than 0 of its table");
    const ids = this.contiguous(this.tensor(node.inputs[1]));
    if (ids.dtype !== "i32") this.fail("indexes with floats");
    const [rows, width] = data.dims as [number, number];
    const count = product(ids.shape);
    const buffer = this.newBuffer(pmul(count, P(width)));
    const fromInput =
      ids.at.buffer !== undefined
        ? this.graph.inputs.find(
            (i) =>
              this.values.get(i.name) &&
              (this.values.get(i.name) as View).at.buffer === ids.at.buffer,
          )?.name
        : undefined;
    const table =
      rows * width >= INT8_TABLE_MIN_VALUES
        ? this.int8Table(data.name, data.values, rows, width, node)
        : { table: this.constView(data).at.blob! };
    this.emit({
      op: "gather",
      ...table,
      rows,
      width,
      ids: ids.at,
      count,
      output: buffer,
      ...(fromInput ? { input: fromInput } : {}),
    });
    this.set(out, this.viewOf(buffer, [...ids.shape, P(width)]));
  }

  /**
   * A large embedding table as int8 rows with one f32 scale per row (absmax / 127,
   * values rounded to nearest): a quarter of the f32 table's bytes, and reported
   * like a dense layer's weights.
   */
  private int8Table(
    name: string,
    values: Float32Array,
    rows: number,
    width: number,
    node: GraphNode,
  ) {
    const cached = this.int8Tables.get(name);
    if (cached) return cached;
    const q = new Int8Array(rows * width);
    const scales = new Float32Array(rows);
    let signal = 0;
    let noise = 0;
    for (let r = 0; r < rows; r++) {
      let absmax = 0;
      for (let j = r * width; j < (r + 1) * width; j++)
        absmax = Math.max(absmax, Math.abs(values[j]!));
      const scale = absmax > 0 ? absmax / 127 : 1;
      scales[r] = scale;
      for (let j = r * width; j < (r + 1) * width; j++) {
        const v = values[j]!;
        const k = Math.max(-127, Math.min(127, Math.round(v / scale)));
        q[j] = k;
        signal += v * v;
        noise += (v - k * Math.fround(scale)) ** 2;
      }
    }
    const sqnrDb = db(signal, noise);
    this.reports.push({
      name: `${node.name || `Gather_${node.index}`} (embedding table ${name})`,
      op: "embedding",
      k: rows,
      n: width,
      activation: "none",
      sqnrDb,
      absmaxSqnrDb: sqnrDb,
    });
    const refs = { table: this.blob(q), scales: this.blob(scales) };
    this.int8Tables.set(name, refs);
    return refs;
  }

  private slice(node: GraphNode) {
    const out = node.outputs[0];
    const raw = this.sym(node.inputs[0]);
    // A constant too large for a shape value (position ids) is sliced as a tensor in a blob.
    const x = raw.kind === "const" && !this.small(node.inputs[0]) ? this.constView(raw) : raw;
    const starts = this.needSmall(node.inputs[1], "start").values;
    const ends = this.needSmall(node.inputs[2], "end").values;
    const rank = x.kind === "view" ? x.shape.length : x.kind === "const" ? x.dims.length : 1;
    const axes = node.inputs[3]
      ? this.needSmall(node.inputs[3], "axes").values.map((v) => this.axis(constOf(v), rank))
      : starts.map((_, i) => i);
    const steps = node.inputs[4]
      ? this.needSmall(node.inputs[4], "steps").values.map(constOf)
      : axes.map(() => 1);
    if (steps.some((s) => s !== 1)) this.fail("slices with a step other than 1");
    const resolve = (p: Poly, dim: Poly): Poly => {
      if (!isConst(p)) return p;
      const c = constOf(p);
      if (c >= 2 ** 31 - 1) return dim;
      if (c < 0) return padd(dim, P(c));
      if (isConst(dim)) return P(Math.min(c, constOf(dim)));
      return P(c);
    };
    if (x.kind !== "view") {
      const s = this.small(node.inputs[0]);
      if (!s || s.scalar) this.fail("slices a large constant at run time");
      if (axes.length !== 1 || axes[0] !== 0) this.fail("slices a shape value oddly");
      const n = P(s.values.length);
      const [b, e] = [resolve(starts[0]!, n), resolve(ends[0]!, n)];
      if (!isConst(b) || !isConst(e))
        this.fail("slices a shape value at a sequence-dependent place");
      this.set(out, { ...s, values: s.values.slice(constOf(b), constOf(e)) });
      return;
    }
    const shape = [...x.shape];
    let offset = x.at.offset;
    axes.forEach((ax, i) => {
      const dim = shape[ax]!;
      const b = resolve(starts[i]!, dim);
      const e = resolve(ends[i]!, dim);
      const len = padd(e, pneg(b));
      const atMax = (p: Poly) => evalPoly(p, this.max);
      if (atMax(len) < 0 || atMax(e) > atMax(dim) || atMax(b) < 0)
        this.fail(`slices ${this.show([b])}…${this.show([e])} of an axis of ${this.show([dim])}`);
      shape[ax] = len;
      offset = padd(offset, pmul(b, x.strides[ax]!));
    });
    this.set(out, { ...x, shape, at: { ...x.at, offset } });
  }

  private reshape(node: GraphNode) {
    const out = node.outputs[0];
    const x = this.sym(node.inputs[0]);
    if (x.kind !== "view") {
      const s = this.small(node.inputs[0]);
      if (s) {
        this.set(out, {
          ...s,
          scalar: this.needSmall(node.inputs[1], "shape").values.length === 0,
        });
        return;
      }
      this.fail("reshapes a large constant");
    }
    const target = this.needSmall(node.inputs[1], "shape").values;
    const allowzero = node.attributes.allowzero === 1;
    const total = product(x.shape);
    let dims = target.map((d, i) =>
      !allowzero && isConst(d) && constOf(d) === 0 ? x.shape[i]! : d,
    );
    const unknown = dims.findIndex((d) => isConst(d) && constOf(d) === -1);
    if (unknown >= 0) {
      const rest = product(dims.filter((_, i) => i !== unknown));
      const inferred = pdiv(total, rest);
      if (!inferred)
        this.fail(
          `reshapes ${this.show(x.shape)} to ${this.show(dims)}: the −1 is not a whole size`,
        );
      dims = dims.map((d, i) => (i === unknown ? inferred : d));
    }
    if (!peq(product(dims), total))
      this.fail(`reshapes ${this.show(x.shape)} to ${this.show(dims)}`);
    const strides = this.reshapeStrides(x, dims);
    if (strides) {
      this.set(out, { ...x, shape: dims, strides });
      return;
    }
    const c = this.productInOrder(x, node) ?? this.contiguous(x);
    this.set(out, { ...c, shape: dims, strides: rowMajor(dims) });
  }

  /**
   * Heads merged without a copy: when `x` is a transposed view of an
   * activation product read by nothing else (MatMul → Transpose → this
   * Reshape), the product writes its rows straight into `x`'s order instead.
   */
  private productInOrder(x: View, reshape: GraphNode): View | undefined {
    const step = x.at.buffer !== undefined ? this.products.get(x.at.buffer) : undefined;
    const source = step ? this.productNames.get(step) : undefined;
    if (!step || !source || x.scale !== 1 || !peq(x.at.offset, P(0))) return undefined;
    // Shape nodes read only the shape, so they do not count as readers.
    const readers = (name: string) => this.consumersOf(name).filter((n) => n.op !== "Shape");
    const [transpose, ...others] = readers(source);
    if (transpose?.op !== "Transpose" || others.length > 0) return undefined;
    const after = readers(transpose.outputs[0]!);
    if (after.length !== 1 || after[0] !== reshape) return undefined;
    const { m, n } = step;
    const target = rowMajor(x.shape);
    let ldy: Poly | undefined;
    let strideY: Poly = P(0);
    let cols = false;
    const mn = pmul(m, n);
    for (const [k, d] of x.shape.entries()) {
      if (isConst(d) && constOf(d) === 1) continue;
      const s = x.strides[k]!;
      if (peq(s, P(1)) && peq(d, n)) {
        if (!peq(target[k]!, P(1))) return undefined;
        cols = true;
      } else if (peq(s, n) && peq(d, m) && !peq(n, mn)) ldy = target[k]!;
      else if (peq(s, mn) && peq(d, step.batch) && !peq(mn, n)) strideY = target[k]!;
      else return undefined;
    }
    if (!cols || !ldy) return undefined;
    const buffer = this.newBuffer(product(x.shape));
    Object.assign(step, { output: buffer, ldy, strideY });
    this.products.delete(x.at.buffer!);
    return this.viewOf(buffer, x.shape);
  }

  /** Strides for `dims` over the same memory as `x` without a copy, when there are. */
  private reshapeStrides(x: View, dims: Poly[]): Poly[] | undefined {
    const one = (d: Poly) => isConst(d) && constOf(d) === 1;
    const old = x.shape.map((d, i) => ({ d, s: x.strides[i]! })).filter((e) => !one(e.d));
    const strides: Poly[] = dims.map(() => P(0));
    let i = 0;
    let j = 0;
    const targets = dims.map((d, k) => ({ d, k })).filter((e) => !one(e.d));
    while (i < old.length && j < targets.length) {
      // Grow a group on each side until the sizes match.
      let oi = i + 1;
      let tj = j + 1;
      let po = old[i]!.d;
      let pt = targets[j]!.d;
      for (let guard = 0; !peq(po, pt) && guard < 16; guard++) {
        const a = evalPoly(po, 7);
        const b = evalPoly(pt, 7);
        if (a < b && oi < old.length) po = pmul(po, old[oi++]!.d);
        else if (tj < targets.length) pt = pmul(pt, targets[tj++]!.d);
        else if (oi < old.length) po = pmul(po, old[oi++]!.d);
        else return undefined;
      }
      if (!peq(po, pt)) return undefined;
      // The old group must be contiguous within itself.
      for (let k = i; k < oi - 1; k++) {
        if (!peq(old[k]!.s, pmul(old[k + 1]!.d, old[k + 1]!.s))) return undefined;
      }
      let stride = old[oi - 1]!.s;
      for (let k = tj - 1; k >= j; k--) {
        strides[targets[k]!.k] = stride;
        stride = pmul(stride, targets[k]!.d);
      }
      i = oi;
      j = tj;
    }
    if (i !== old.length || j !== targets.length) return undefined;
    return strides;
  }

  private binary(node: GraphNode) {
    const out = node.outputs[0];
    const [an, bn] = node.inputs;
    if (this.matchLayerNormAt(node) || this.matchGeluAt(node)) return;
    const sa = this.sym(an);
    const sb = this.sym(bn);
    // Shape arithmetic.
    if (sa.kind !== "view" && sb.kind !== "view") {
      const x = this.small(an);
      const y = this.small(bn);
      if (x && y) return this.set(out, this.smallArith(node.op, x, y));
    }
    if (node.op === "Pow") {
      const e = this.scalarConst(bn);
      if (e === 2 && sa.kind === "view") {
        const x = this.contiguous(sa);
        const buffer = this.newBuffer(product(x.shape));
        this.emit({
          op: "binary",
          fn: "mul",
          a: { at: x.at, strides: x.strides.length ? x.strides : [P(1)] },
          b: { at: x.at, strides: x.strides.length ? x.strides : [P(1)] },
          shape: x.shape.length ? x.shape : [P(1)],
          output: buffer,
        });
        return this.set(out, this.viewOf(buffer, x.shape));
      }
    }
    // Scale a view by a constant scalar: rides along to the product that reads it,
    // or into the product that wrote it (scores / √d after Q·Kᵀ).
    if ((node.op === "Mul" || node.op === "Div") && sa.kind === "view" && sa.dtype === "f32") {
      const c = this.scalarConst(bn);
      if (c !== undefined && c !== 0) {
        const factor = node.op === "Mul" ? c : 1 / c;
        const writer = sa.at.buffer !== undefined ? this.products.get(sa.at.buffer) : undefined;
        if (writer && sa.scale === 1 && this.consumersOf(an!).length === 1) {
          writer.scale *= factor;
          return this.set(out, sa);
        }
        const feedsProduct = this.consumersOf(out!).every(
          (n) => n.op === "MatMul" || n.op === "Transpose" || n.op === "Reshape",
        );
        if (feedsProduct)
          return this.set(out, { ...sa, scale: sa.scale * (node.op === "Mul" ? c : 1 / c) });
      }
    }
    if (node.op === "Mul" && sb.kind === "view" && sb.dtype === "f32") {
      const c = this.scalarConst(an);
      if (c !== undefined && this.consumersOf(out!).every((n) => n.op === "MatMul")) {
        return this.set(out, { ...sb, scale: sb.scale * c });
      }
    }
    let x = this.tensor(an);
    let y = this.tensor(bn);
    if (x.dtype !== "f32" || y.dtype !== "f32")
      this.fail("does arithmetic on integer tensors at run time (Cast to float first)");
    if (x.scale !== 1) x = this.contiguous(x);
    if (y.scale !== 1) y = this.contiguous(y);
    // An attention mask added to the scores right before their Softmax: the Softmax adds it.
    const next = this.only(out!);
    if (node.op === "Add" && next?.op === "Softmax") {
      const masked = this.maskedScores(x, y) ?? this.maskedScores(y, x);
      if (masked) return this.set(out, masked);
    }
    const fn = node.op.toLowerCase() as (typeof BINARY_FUNCTIONS)[number];
    this.set(out, this.elementwise(fn, x, y));
  }

  /**
   * Scores plus a mask that is one row broadcast over all rows of the scores
   * (HF's [batch, 1, 1, S] additive mask): the scores, carrying the mask to
   * the Softmax's kernel.
   */
  private maskedScores(scores: View, mask: View): View | undefined {
    const rank = scores.shape.length;
    if (rank < 1 || mask.shape.length > rank) return undefined;
    const ms = [...Array(rank - mask.shape.length).fill(P(1)), ...mask.shape] as Poly[];
    const mst = [...Array(rank - mask.shape.length).fill(P(0)), ...mask.strides] as Poly[];
    const one = (d: Poly) => isConst(d) && constOf(d) === 1;
    const rowsBroadcast = ms.slice(0, -1).every(one);
    const lastOk = peq(ms.at(-1)!, scores.shape.at(-1)!) && peq(mst.at(-1)!, P(1));
    if (!rowsBroadcast || !lastOk) return undefined;
    return { ...this.contiguous(scores), mask: { at: mask.at, stride: P(0) } };
  }

  private smallArith(op: string, x: Small, y: Small): Small {
    const n = Math.max(x.values.length, y.values.length);
    const float = x.float || y.float;
    const values = Array.from({ length: n }, (_, i) => {
      const a = x.values[x.values.length === 1 ? 0 : i]!;
      const b = y.values[y.values.length === 1 ? 0 : i]!;
      switch (op) {
        case "Add":
          return padd(a, b);
        case "Sub":
          return padd(a, pneg(b));
        case "Mul":
          return pmul(a, b);
        case "Div": {
          if (isConst(a) && isConst(b)) {
            const q = constOf(a) / constOf(b);
            return P(float ? q : Math.trunc(q));
          }
          const q = pdiv(a, b);
          if (!q) return this.fail("divides a sequence-dependent size unevenly");
          return q;
        }
        case "Pow":
          if (isConst(a) && isConst(b)) return P(Math.pow(constOf(a), constOf(b)));
          return this.fail("raises a sequence-dependent size to a power");
        case "Max":
        case "Min":
          if (isConst(a) && isConst(b))
            return P((op === "Max" ? Math.max : Math.min)(constOf(a), constOf(b)));
          return this.fail("compares sequence-dependent sizes");
      }
      return this.fail("does shape arithmetic int8 text plans do not follow");
    });
    return { kind: "small", scalar: x.scalar && y.scalar, values, float };
  }

  // ---- patterns ----

  /** x − mean(x) … → LayerNorm, matched from the Sub of the decomposed form (the first ReduceMean is pending). */
  private pendingMeans = new Set<GraphNode>();

  private reduce(node: GraphNode) {
    const out = node.outputs[0]!;
    // The first ReduceMean of a decomposed LayerNorm: wait for the Sub that reads it.
    if (
      node.op === "ReduceMean" &&
      this.consumersOf(out).length === 1 &&
      this.consumersOf(out)[0]!.op === "Sub"
    ) {
      const sub = this.consumersOf(out)[0]!;
      if (sub.inputs[0] === node.inputs[0] && sub.inputs[1] === out && this.layerNormShape(sub)) {
        this.pendingMeans.add(node);
        return;
      }
    }
    const x = this.contiguous(this.tensor(node.inputs[0]), true);
    const rank = x.shape.length;
    const axesList = node.inputs[1]
      ? this.needSmall(node.inputs[1], "axes").values.map(constOf)
      : (node.attributes.axes as number[] | undefined);
    if (!axesList || axesList.length !== 1) this.fail("reduces over other than one axis");
    const ax = this.axis(axesList[0]!, rank);
    const keep = ((node.attributes.keepdims as number | undefined) ?? 1) === 1;
    const outer = product(x.shape.slice(0, ax));
    const inner = product(x.shape.slice(ax + 1));
    const buffer = this.newBuffer(pmul(outer, inner));
    const fn = node.op === "ReduceMean" ? "mean" : node.op === "ReduceSum" ? "sum" : "max";
    this.emit({
      op: "reduce",
      fn,
      input: x.at.buffer!,
      outer,
      size: x.shape[ax]!,
      inner,
      output: buffer,
    });
    const shape = keep
      ? x.shape.map((d, i) => (i === ax ? P(1) : d))
      : x.shape.filter((_, i) => i !== ax);
    this.set(out, this.viewOf(buffer, shape));
  }

  /**
   * The decomposed LayerNorm from its Sub: d = x − mean(x); d² (Pow 2);
   * mean; + ε; √; d / that; × γ; + β — every intermediate read only inside.
   */
  private layerNormShape(sub: GraphNode) {
    const d = sub.outputs[0]!;
    const users = this.consumersOf(d);
    const pow = users.find(
      (n) => n.op === "Pow" || (n.op === "Mul" && n.inputs[0] === d && n.inputs[1] === d),
    );
    const div = users.find((n) => n.op === "Div" && n.inputs[0] === d);
    if (users.length !== 2 || !pow || !div) return undefined;
    if (pow.op === "Pow" && this.scalarConst(pow.inputs[1]) !== 2) return undefined;
    const mean2 = this.only(pow.outputs[0]!);
    if (mean2?.op !== "ReduceMean") return undefined;
    const addEps = this.only(mean2.outputs[0]!);
    if (addEps?.op !== "Add") return undefined;
    const eps = this.scalarConst(addEps.inputs.find((n) => n !== mean2.outputs[0]));
    const sqrt = this.only(addEps.outputs[0]!);
    if (
      eps === undefined ||
      sqrt?.op !== "Sqrt" ||
      this.only(sqrt.outputs[0]!) !== div ||
      div.inputs[1] !== sqrt.outputs[0]
    )
      return undefined;
    const mul = this.only(div.outputs[0]!);
    const gamma = mul?.op === "Mul" ? mul.inputs.find((n) => n !== div.outputs[0]) : undefined;
    const add = mul ? this.only(mul.outputs[0]!) : undefined;
    const beta = add?.op === "Add" ? add.inputs.find((n) => n !== mul!.outputs[0]) : undefined;
    if (!mul || !gamma || !this.graph.constants.has(gamma)) return undefined;
    const hasBeta = beta !== undefined && this.graph.constants.has(beta);
    return {
      eps,
      gamma,
      beta: hasBeta ? beta : undefined,
      out: hasBeta ? add!.outputs[0]! : mul.outputs[0]!,
      nodes: [pow, mean2, addEps, sqrt, div, mul, ...(hasBeta ? [add!] : [])],
      axes: mean2,
    };
  }

  private matchLayerNormAt(node: GraphNode): boolean {
    if (node.op !== "Sub") return false;
    const mean = this.graph.nodes.find((n) => n.outputs[0] === node.inputs[1]);
    if (!mean || !this.pendingMeans.has(mean)) return false;
    const m = this.layerNormShape(node)!;
    const x = this.contiguous(this.tensor(node.inputs[0]), true);
    const lastAxis = (n: GraphNode) => {
      const axes = n.inputs[1]
        ? this.needSmall(n.inputs[1], "axes").values.map(constOf)
        : (n.attributes.axes as number[] | undefined);
      return axes?.length === 1 && this.axis(axes[0]!, x.shape.length) === x.shape.length - 1;
    };
    if (!lastAxis(mean) || !lastAxis(m.axes))
      this.fail("starts a LayerNorm over other than the last axis");
    for (const n of m.nodes) this.done.add(n);
    this.layerNorm(x, m.gamma, m.beta, m.eps, m.out);
    return true;
  }

  private layerNorm(
    x: View,
    gammaName: string | undefined,
    betaName: string | undefined,
    epsilon: number,
    out: string | undefined,
  ) {
    const width = x.shape.at(-1)!;
    if (!isConst(width)) this.fail("normalises a sequence-long axis");
    const w = constOf(width);
    const vec = (name: string | undefined, what: string) => {
      if (!name) return null;
      const c = this.graph.constants.get(name);
      if (!c || !(c.values instanceof Float32Array))
        this.fail(`has a ${what} that is not a constant`);
      if (c.values.length === w) return this.blob(c.values);
      if (c.values.length === 1) return this.blob(new Float32Array(w).fill(c.values[0]!));
      return this.fail(`has a ${what} of ${c.values.length} values for rows of ${w}`);
    };
    const gamma = vec(gammaName, "scale") ?? this.blob(new Float32Array(w).fill(1));
    const beta = vec(betaName, "bias");
    const buffer = this.newBuffer(product(x.shape));
    this.emit({
      op: "layerNorm",
      input: x.at.buffer!,
      rows: product(x.shape.slice(0, -1)),
      width: w,
      gamma,
      beta,
      epsilon,
      output: buffer,
    });
    this.set(out, this.viewOf(buffer, x.shape));
  }

  /**
   * GELU as the exporter writes it: erf form x·0.5·(1 + erf(x/√2)) (the
   * halving on either side), or tanh form 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
   * matched from its first node (the Div, or the Mul by 0.5 / Pow of the tanh form).
   */
  private matchGeluAt(node: GraphNode): boolean {
    const near = (v: number | undefined, t: number) =>
      v !== undefined && Math.abs(v - t) <= 1e-4 * Math.abs(t);
    const other = (n: GraphNode, name: string) => n.inputs.find((i) => i !== name);
    // x³ as Pow(x, 3), or as x·x then ·x.
    const square =
      node.op === "Mul" && node.inputs[0] === node.inputs[1]
        ? this.only(node.outputs[0]!)
        : undefined;
    const cubed =
      node.op === "Pow" && this.scalarConst(node.inputs[1]) === 3
        ? node
        : square?.op === "Mul" &&
            square.inputs.includes(node.outputs[0]!) &&
            square.inputs.includes(node.inputs[0]!)
          ? square
          : undefined;
    if (cubed) {
      // x³ · 0.044715 + x, · √(2/π), tanh, + 1, · x, · 0.5 (or · (0.5·x)).
      const x = node.inputs[0]!;
      const scaled = (n: GraphNode | undefined, input: string, value: number) =>
        n?.op === "Mul" && near(this.scalarConst(other(n, input)), value) ? n : undefined;
      const k = scaled(this.only(cubed.outputs[0]!), cubed.outputs[0]!, 0.044715);
      const sum = k ? this.only(k.outputs[0]!) : undefined;
      if (!k || sum?.op !== "Add" || other(sum, k.outputs[0]!) !== x) return false;
      const c = scaled(this.only(sum.outputs[0]!), sum.outputs[0]!, Math.sqrt(2 / Math.PI));
      const tanh = c ? this.only(c.outputs[0]!) : undefined;
      const plus = tanh?.op === "Tanh" ? this.only(tanh.outputs[0]!) : undefined;
      if (!c || plus?.op !== "Add" || !near(this.scalarConst(other(plus, tanh!.outputs[0]!)), 1))
        return false;
      const mul = this.only(plus.outputs[0]!);
      if (mul?.op !== "Mul") return false;
      const withX = other(mul, plus.outputs[0]!);
      let nodes: GraphNode[];
      let end: GraphNode | undefined;
      if (withX === x) {
        end = scaled(this.only(mul.outputs[0]!), mul.outputs[0]!, 0.5);
        nodes = [k, sum, c, tanh!, plus, mul, ...(end ? [end] : [])];
        if (cubed !== node) nodes.push(cubed);
      } else {
        const half = this.graph.nodes.find((n) => n.outputs[0] === withX);
        if (!scaled(half, x, 0.5) || !half!.inputs.includes(x)) return false;
        end = mul;
        nodes = [half!, k, sum, c, tanh!, plus, mul, ...(cubed !== node ? [cubed] : [])];
      }
      if (!end) return false;
      for (const n of nodes) this.done.add(n);
      this.unary(node, "geluTanh", x, end.outputs[0]);
      return true;
    }
    if (node.op === "Div" || node.op === "Mul") {
      const x = node.inputs[0]!;
      const c = this.scalarConst(node.inputs[1]);
      const isScale = node.op === "Div" ? near(c, Math.SQRT2) : near(c, Math.SQRT1_2);
      if (!isScale) return false;
      const erf = this.only(node.outputs[0]!);
      const add = erf?.op === "Erf" ? this.only(erf.outputs[0]!) : undefined;
      if (add?.op !== "Add" || !near(this.scalarConst(other(add, erf!.outputs[0]!)), 1))
        return false;
      const mul = this.only(add.outputs[0]!);
      if (mul?.op !== "Mul") return false;
      const withX = other(mul, add.outputs[0]!);
      let end: GraphNode | undefined;
      let nodes: GraphNode[];
      if (withX === x) {
        // x·(1+erf) then ·0.5
        end = this.only(mul.outputs[0]!);
        if (end?.op !== "Mul" || !near(this.scalarConst(other(end, mul.outputs[0]!)), 0.5))
          return false;
        nodes = [erf!, add, mul, end];
      } else {
        // (x·0.5)·(1+erf)
        const half = this.graph.nodes.find((n) => n.outputs[0] === withX);
        if (
          half?.op !== "Mul" ||
          !half.inputs.includes(x) ||
          !near(this.scalarConst(other(half, x)), 0.5)
        )
          return false;
        end = mul;
        nodes = [half, erf!, add, mul];
      }
      const users = this.consumersOf(x).filter((n) => n !== node && !nodes.includes(n));
      if (users.length > 0 && this.consumersOf(x).length !== 2 + (withX === x ? 0 : 0)) {
        // x is read elsewhere too: fine, GELU only reads it.
      }
      for (const n of nodes) this.done.add(n);
      this.unary(node, "gelu", x, end!.outputs[0]);
      return true;
    }
    return false;
  }

  // ---- products ----

  private matmul(node: GraphNode) {
    const out = node.outputs[0]!;
    const a = node.attributes;
    const wc = this.graph.constants.get(node.inputs[1] ?? "");
    if (wc && wc.values instanceof Float32Array && wc.dims.length === 2) {
      return this.dense(node, wc as { dims: number[]; values: Float32Array });
    }
    if (node.op === "Gemm") this.fail("multiplies two activations with Gemm");
    let x = this.tensor(node.inputs[0]);
    let y = this.tensor(node.inputs[1]);
    if (x.shape.length < 2 || y.shape.length < 2) this.fail("multiplies vectors");
    const scale = x.scale * y.scale;
    x = { ...x, scale: 1 };
    y = { ...y, scale: 1 };
    const [m, k] = x.shape.slice(-2) as [Poly, Poly];
    const [k2, n] = y.shape.slice(-2) as [Poly, Poly];
    if (!peq(k, k2)) this.fail(`multiplies ${this.show(x.shape)} by ${this.show(y.shape)}`);
    const bx = x.shape.slice(0, -2);
    const by = y.shape.slice(0, -2);
    const rank = Math.max(bx.length, by.length);
    const liftB = (v: View, b: Poly[]) => ({
      shape: [...Array(rank - b.length).fill(P(1)), ...b] as Poly[],
      strides: [...Array(rank - b.length).fill(P(0)), ...v.strides.slice(0, -2)] as Poly[],
    });
    const [lx, ly] = [liftB(x, bx), liftB(y, by)];
    const batchShape = lx.shape.map((d, i) => (isConst(d) && constOf(d) === 1 ? ly.shape[i]! : d));
    if (
      batchShape.some(
        (d, i) => !peq(d, ly.shape[i]!) && !(isConst(ly.shape[i]!) && constOf(ly.shape[i]!) === 1),
      )
    ) {
      this.fail(`multiplies batches ${this.show(bx)} and ${this.show(by)}`);
    }
    /** One stride for all batch axes (they must merge), 0 when broadcast. */
    const batchStride = (l: { shape: Poly[]; strides: Poly[] }): Poly | undefined => {
      let stride: Poly | undefined;
      let expect: Poly | undefined;
      for (let i = rank - 1; i >= 0; i--) {
        const d = batchShape[i]!;
        if (isConst(d) && constOf(d) === 1) continue;
        const broadcast = isConst(l.shape[i]!) && constOf(l.shape[i]!) === 1;
        const s = broadcast ? P(0) : l.strides[i]!;
        if (stride === undefined) stride = s;
        else if (!peq(s, expect!)) return undefined;
        expect = pmul(s, d);
      }
      return stride ?? P(0);
    };
    // A's rows may be strided; its columns must be contiguous.
    const rowsOk = (v: View) =>
      peq(v.strides.at(-1)!, P(1)) || (isConst(v.shape.at(-1)!) && constOf(v.shape.at(-1)!) === 1);
    if (!rowsOk(x) || batchStride(lx) === undefined) {
      x = this.contiguous(x);
      Object.assign(lx, liftB(x, bx));
    }
    let transB = false;
    if (peq(y.strides.at(-1)!, P(1)) && batchStride(ly) !== undefined) transB = false;
    else if (peq(y.strides.at(-2)!, P(1)) && batchStride(ly) !== undefined) transB = true;
    else {
      y = this.contiguous(y);
      Object.assign(ly, liftB(y, by));
    }
    const batch = product(batchShape);
    const buffer = this.newBuffer(pmul(batch, pmul(m, n)));
    this.emit({
      op: "matmul",
      a: x.at,
      lda: x.strides.at(-2)!,
      strideA: batchStride(lx)!,
      b: y.at,
      ldb: transB ? y.strides.at(-1)! : y.strides.at(-2)!,
      strideB: batchStride(ly)!,
      batch,
      m,
      k,
      n,
      transB,
      scale,
      output: buffer,
    });
    const step = this.steps.at(-1) as Extract<TextStep, { op: "matmul" }>;
    this.products.set(buffer, step);
    this.productNames.set(step, out);
    this.set(out, this.viewOf(buffer, [...batchShape, m, n]));
  }

  private dense(node: GraphNode, w: { dims: number[]; values: Float32Array }) {
    const a = node.attributes;
    const gemm = node.op === "Gemm";
    if (gemm && a.transA) this.fail("has transA");
    const transB = gemm && a.transB === 1;
    const [k, n] = transB ? [w.dims[1]!, w.dims[0]!] : [w.dims[0]!, w.dims[1]!];
    const alpha = gemm ? ((a.alpha as number | undefined) ?? 1) : 1;
    const beta = gemm ? ((a.beta as number | undefined) ?? 1) : 1;
    const x = this.contiguous(this.tensor(node.inputs[0]), true);
    if (x.dtype !== "f32") this.fail("multiplies integers");
    if (!peq(x.shape.at(-1)!, P(k)))
      this.fail(`takes ${k} features; its input is ${this.show(x.shape)}`);
    const f32 = new Float32Array(k * n);
    for (let i = 0; i < k; i++)
      for (let j = 0; j < n; j++)
        f32[i * n + j] = alpha * w.values[transB ? j * k + i : i * n + j]!;
    let bias: Float32Array | null = null;
    let out = node.outputs[0]!;
    const biasFrom = (name: string | undefined, factor: number) => {
      const c = name ? this.graph.constants.get(name) : undefined;
      if (
        !c ||
        !(c.values instanceof Float32Array) ||
        (c.values.length !== n && c.values.length !== 1)
      )
        return null;
      return Float32Array.from(
        { length: n },
        (_, i) => factor * (c.values as Float32Array)[c.values.length === 1 ? 0 : i]!,
      );
    };
    if (gemm && node.inputs[2]) {
      bias = biasFrom(node.inputs[2], beta);
      if (!bias) this.fail("has a bias that is not a constant per output");
    } else if (!gemm) {
      const add = this.only(out);
      if (add?.op === "Add") {
        const b = biasFrom(
          add.inputs.find((i) => i !== out),
          1,
        );
        if (b) {
          bias = b;
          this.done.add(add);
          out = add.outputs[0]!;
        }
      }
    }
    let act: "none" | "relu" = "none";
    const relu = this.only(out);
    if (relu?.op === "Relu") {
      act = "relu";
      this.done.add(relu);
      out = relu.outputs[0]!;
    }
    const { q, scales, sqnrDb, absmaxSqnrDb } = quantiseWeights(f32, k, n);
    const name = node.name || `${node.op}_${node.index}`;
    this.reports.push({ name, op: "dense", k, n, activation: act, sqnrDb, absmaxSqnrDb });
    const rows = product(x.shape.slice(0, -1));
    const buffer = this.newBuffer(pmul(rows, P(n)));
    this.emit({
      op: "dense",
      name,
      input: x.at.buffer!,
      rows,
      k,
      n,
      weights: this.blob(q),
      scales: this.blob(scales),
      bias: bias ? this.blob(bias) : null,
      act,
      sqnrDb,
      absmaxSqnrDb,
      output: buffer,
    });
    this.set(out, this.viewOf(buffer, [...x.shape.slice(0, -1), P(n)]));
  }

  // ---- arena ----

  /** Greedy placement at the longest sequence: buffers alive at once never overlap. */
  private planArena(inputs: number[], output: number): { offsets: number[]; size: number } {
    const sizes = this.buffers.map((p) => evalPoly(p, this.max));
    const first = sizes.map(() => Infinity);
    const last = sizes.map(() => -Infinity);
    const touch = (id: number, at: number) => {
      first[id] = Math.min(first[id]!, at);
      last[id] = Math.max(last[id]!, at);
    };
    for (const id of inputs) touch(id, -1);
    touch(output, this.steps.length);
    this.steps.forEach((step, at) => {
      for (const id of textStepBuffers(step)) touch(id, at);
    });
    // Inputs stay whole for the whole run: each sample's ids are written before its steps.
    for (const id of inputs) touch(id, this.steps.length);
    const order = sizes.map((_, i) => i).filter((i) => first[i] !== Infinity);
    order.sort((a, b) => sizes[b]! - sizes[a]! || a - b);
    const offsets = sizes.map(() => 0);
    const placed: number[] = [];
    let size = 0;
    for (const id of order) {
      // 4-value alignment keeps every buffer 16-byte aligned for the SIMD kernels.
      const need = Math.ceil(sizes[id]! / 4) * 4;
      const overlapping = placed
        .filter((o) => first[o]! <= last[id]! && first[id]! <= last[o]!)
        .map((o) => [offsets[o]!, offsets[o]! + Math.ceil(sizes[o]! / 4) * 4] as const)
        .sort((p, q) => p[0] - q[0]);
      let at = 0;
      for (const [start, end] of overlapping) {
        if (at + need <= start) break;
        at = Math.max(at, end);
      }
      offsets[id] = at;
      placed.push(id);
      size = Math.max(size, at + need);
    }
    return { offsets, size };
  }
}
