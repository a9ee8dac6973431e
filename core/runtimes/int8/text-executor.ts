/**
 * @module
 * Runs a text plan (`text-plan.ts`) on the WASM kernels. At load the blobs are
 * copied into the module's memory (dense weights packed for the GEMM) and the
 * arena and scratch are allocated for the longest sequence. A request's
 * samples run one after another; the steps, bound to their pointers and sizes
 * for a sequence length, are made once per length and reused.
 */
import { invalid, unavailable } from "../../errors";
import type { Tensor } from "../../protocol/datatypes";
import { allocateIn, copyIn } from "./kernel-memory";
import { metadataEnd } from "./plan";
import {
  decodeTextPlan,
  evalPoly,
  type Loc,
  type Strided,
  type TextPlan,
  type TextStep,
} from "./text-plan";

export interface TextAbi {
  memory: WebAssembly.Memory;
  allocate(bytes: number): number;
  mark(): number;
  release(to: number): void;
  packColumns(...args: number[]): void;
  packedBytes(k: number, n: number): number;
  fusedLinear(...args: number[]): number;
  fusedScratchBytes(m: number, k: number, n: number): number;
  gatherRows(
    table: number,
    rows: number,
    width: number,
    ids: number,
    count: number,
    y: number,
  ): number;
  gatherRowsI8(
    table: number,
    scales: number,
    rows: number,
    width: number,
    ids: number,
    count: number,
    y: number,
  ): number;
  layerNorm(
    x: number,
    rows: number,
    width: number,
    gamma: number,
    beta: number,
    eps: number,
    y: number,
  ): void;
  softmaxRows(
    x: number,
    rows: number,
    width: number,
    mask: number,
    maskStride: number,
    y: number,
  ): void;
  batchedMatMulStrided(...args: number[]): void;
  gelu(x: number, count: number, mode: number, y: number): void;
  erf(x: number, count: number, y: number): void;
  tanhRows(x: number, count: number, y: number): void;
  activate(x: number, count: number, act: number, p0: number, p1: number, y: number): void;
  add(a: number, b: number, count: number, act: number, p0: number, p1: number, y: number): void;
  addBias(x: number, rows: number, width: number, bias: number, y: number): void;
  meanPoolMasked(
    x: number,
    batch: number,
    seq: number,
    width: number,
    mask: number,
    y: number,
  ): void;
}

/** The int32 range: INT64 ids outside it cannot be narrowed (and are no token anyway). */
const I32_MIN = -2147483648;
const I32_MAX = 2147483647;

/**
 * A fresh kernels instance for one text plan. Synchronous (the module is
 * compiled already), so a streamed plan gets one only once its header says it
 * is a text plan.
 */
export function textAbi(module: WebAssembly.Module): TextAbi {
  return new WebAssembly.Instance(module, {}).exports as unknown as TextAbi;
}

/**
 * Places a text plan's blobs in a kernels instance as the plan's bytes arrive,
 * in order, in chunks of any size: its metadata first (`metadataEnd` tells how
 * much of the file that is), then each blob straight to its final place (a
 * dense layer's weights through one reused staging block, packed for the GEMM
 * as soon as they are complete). So a cold load writes each byte of the
 * weights once and never holds the plan twice; on this design, the cost of a
 * load is the memory it touches.
 */
export class TextPlanPlacement {
  readonly plan: TextPlan;
  private readonly blobs: number[];
  private readonly dense = new Map<number, { k: number; n: number }>();
  /** Blob indices by their offset in the file, and how far the stream has filled each. */
  private readonly order: number[];
  private readonly filled: number[];
  private next = 0;
  private readonly staging: number;
  private readonly zero: number;
  private readonly beforeStaging: number;

  /** `head` holds at least the file's first `metadataEnd(head)` bytes. */
  constructor(
    private readonly abi: TextAbi,
    head: Uint8Array,
    totalBytes: number,
    limitBytes = Infinity,
  ) {
    this.plan = decodeTextPlan(head, totalBytes);
    const { plan, dense } = this;
    for (const step of plan.steps) {
      if (step.op === "dense") dense.set(step.weights, { k: step.k, n: step.n });
    }
    for (const [i, shape] of dense) {
      if (plan.blobs[i]!.bytes !== shape.k * shape.n) {
        throw invalid(`int8 text plan blob ${i} is not ${shape.k}×${shape.n} weights`);
      }
    }
    this.order = plan.blobs
      .map((_, i) => i)
      .sort((x, y) => plan.blobs[x]!.offset - plan.blobs[y]!.offset);
    this.order.forEach((blob, i) => {
      const ref = plan.blobs[blob]!;
      const after = this.order[i + 1];
      if (ref.offset < metadataEnd(head))
        throw invalid(`int8 text plan blob ${blob} overlaps its metadata`);
      if (after !== undefined && ref.offset + ref.bytes > plan.blobs[after]!.offset) {
        throw invalid(`int8 text plan blobs ${blob} and ${after} overlap`);
      }
    });
    this.filled = plan.blobs.map(() => 0);
    // Grow the memory once for everything (weights, staging, arena, scratch): growing blob by
    // blob re-maps it dozens of times on a cold start.
    let held = 0;
    let staged = 0;
    plan.blobs.forEach((ref, i) => {
      const shape = dense.get(i);
      held += (shape ? abi.packedBytes(shape.k, shape.n) : ref.bytes) + 16;
      if (shape) staged = Math.max(staged, ref.bytes);
    });
    // The metadata is not verified yet (the digest comes at the end): never grow past what the
    // model cache would refuse anyway.
    const needed = held + staged + 32 + plan.arenaElements * 4 + (1 << 20);
    if (needed > limitBytes) {
      throw unavailable(
        `this int8 text plan needs about ${needed} bytes loaded, more than this isolate's model budget of ${limitBytes}`,
      );
    }
    const reserve = abi.mark();
    allocateIn(abi, needed);
    abi.release(reserve);
    this.blobs = plan.blobs.map((ref, i) => {
      const shape = dense.get(i);
      return allocateIn(abi, shape ? abi.packedBytes(shape.k, shape.n) : ref.bytes);
    });
    // Freed once placed, so the arena reuses these (already touched) pages.
    this.beforeStaging = abi.mark();
    this.staging = allocateIn(abi, Math.max(16, staged));
    this.zero = copyIn(abi, new Uint8Array(1));
  }

  /** Places the file's bytes `offset`… (chunks in order, no gaps). */
  place(chunk: Uint8Array, offset: number): void {
    const end = offset + chunk.byteLength;
    const { plan, order } = this;
    while (this.next < order.length) {
      const blob = order[this.next]!;
      const ref = plan.blobs[blob]!;
      if (ref.bytes > 0 && ref.offset >= end) return;
      const shape = this.dense.get(blob);
      const from = Math.max(ref.offset + this.filled[blob]!, offset);
      const to = Math.min(ref.offset + ref.bytes, end);
      if (to > from) {
        const base = shape ? this.staging : this.blobs[blob]!;
        new Uint8Array(this.abi.memory.buffer, base + (from - ref.offset), to - from).set(
          chunk.subarray(from - offset, to - offset),
        );
        this.filled[blob] = to - ref.offset;
      }
      if (this.filled[blob]! < ref.bytes) return;
      if (shape)
        this.abi.packColumns(this.staging, shape.k, shape.n, 1, this.zero, 0, this.blobs[blob]!);
      this.next++;
    }
  }

  /** The executor, once every blob is in (after the artifact's digest was checked). */
  finish(): TextExecutor {
    if (this.next < this.order.length) {
      throw invalid(`int8 text plan is truncated: blob ${this.order[this.next]} is incomplete`);
    }
    this.abi.release(this.beforeStaging);
    return new TextExecutor(this.abi, this.plan, this.blobs);
  }
}

export class TextExecutor {
  private readonly arena: number;
  private readonly scratch: number;
  private readonly bound = new Map<number, { buffer: ArrayBuffer; calls: (() => void)[] }>();

  constructor(
    private readonly abi: TextAbi,
    readonly plan: TextPlan,
    private readonly blobs: number[],
  ) {
    const max = plan.sequence.max;
    let scratch = 0;
    for (const step of plan.steps) {
      if (step.op === "dense") {
        scratch = Math.max(
          scratch,
          abi.fusedScratchBytes(evalPoly(step.rows, max), step.k, step.n),
        );
      }
    }
    this.arena = allocateIn(abi, plan.arenaElements * 4);
    this.scratch = allocateIn(abi, Math.max(16, scratch));
    // Every step's reads and writes must stay inside its buffers and blobs: checked (and bound)
    // at the shortest and the longest sequence, so a plan that would not is refused at load.
    this.calls(max);
    if (!plan.sequence.fixed) this.calls(1);
  }

  /** Loads a whole plan file (publish, tests): the streaming placement, in one chunk. */
  static async instantiate(module: WebAssembly.Module, bytes: Uint8Array): Promise<TextExecutor> {
    const placement = new TextPlanPlacement(textAbi(module), bytes, bytes.byteLength);
    placement.place(bytes, 0);
    return placement.finish();
  }

  get memoryBytes(): number {
    return this.abi.memory.buffer.byteLength;
  }

  /** The sequence length of a request's inputs, checked against the plan's range. */
  sequenceOf(inputs: readonly Tensor[]): number {
    const { plan } = this;
    const first = inputs[0];
    if (!first || first.shape.length !== 2) {
      throw invalid(`the int8 text plan takes [batch, sequence] token inputs`);
    }
    const s = first.shape[1]!;
    for (const t of inputs) {
      if (t.shape.length !== 2 || t.shape[1] !== s || t.shape[0] !== first.shape[0]) {
        throw invalid(
          `input '${t.name}' has shape [${t.shape.join(", ")}]; every input must be [batch, sequence] like '${first.name}' [${first.shape.join(", ")}]`,
        );
      }
    }
    const { max, fixed } = plan.sequence;
    if (fixed ? s !== max : s < 1 || s > max) {
      throw invalid(
        fixed
          ? `this model takes sequences of exactly ${max} tokens; got ${s}`
          : `this model takes sequences of 1 to ${max} tokens (its maximum, fixed at publish); got ${s}`,
      );
    }
    return s;
  }

  /** Values per sample of the output at sequence length `s`. */
  outputElements(s: number): number {
    return this.plan.output.sampleShape.reduce((a, d) => a * evalPoly(d, s), 1);
  }

  outputShape(batch: number, s: number): number[] {
    return [batch, ...this.plan.output.sampleShape.map((d) => evalPoly(d, s))];
  }

  /** `inputs` in the plan's input order; returns [batch, output values per sample]. */
  run(inputs: readonly Tensor[]): Float32Array {
    const s = this.sequenceOf(inputs);
    const batch = inputs[0]!.shape[0]!;
    const { plan } = this;
    const calls = this.calls(s);
    const memory = this.abi.memory.buffer;
    const at = (buffer: number) => this.arena + plan.buffers[buffer]!.offset * 4;
    const per = this.outputElements(s);
    const y = new Float32Array(batch * per);
    for (let sample = 0; sample < batch; sample++) {
      plan.inputs.forEach((spec, i) => {
        const data = inputs[i]!.data;
        const from = sample * s;
        if (spec.datatype === "FP32") {
          new Float32Array(memory, at(spec.buffer), s).set(
            (data as Float32Array).subarray(from, from + s),
          );
          return;
        }
        const ids = new Int32Array(memory, at(spec.buffer), s);
        for (let j = 0; j < s; j++) {
          const v = Number(data[from + j]!);
          if (!(v >= I32_MIN && v <= I32_MAX) || !Number.isInteger(v)) {
            throw invalid(
              `input '${spec.name}' holds ${String(data[from + j])}, not an int32 token id`,
            );
          }
          ids[j] = v;
        }
      });
      for (const call of calls) call();
      y.set(new Float32Array(memory, at(plan.output.buffer), per), sample * per);
    }
    return y;
  }

  private calls(s: number): (() => void)[] {
    const cached = this.bound.get(s);
    if (cached && cached.buffer === this.abi.memory.buffer) return cached.calls;
    const calls = this.plan.steps.map((step, i) => {
      this.checkStep(step, s, i);
      return this.bind(step, s);
    });
    this.bound.set(s, { buffer: this.abi.memory.buffer, calls });
    return calls;
  }

  private ptr(l: Loc, s: number): number {
    const base =
      l.buffer !== undefined
        ? this.arena + this.plan.buffers[l.buffer]!.offset * 4
        : this.blobs[l.blob ?? 0]!;
    return base + evalPoly(l.offset, s) * 4;
  }

  /** Refuses a step whose reads or writes at sequence length `s` leave their buffer or blob. */
  private checkStep(step: TextStep, s: number, index: number): void {
    const p = (x: number[]) => evalPoly(x, s);
    const fits = (l: Loc, extent: number) => {
      const start = p(l.offset);
      const size =
        l.buffer !== undefined
          ? p(this.plan.buffers[l.buffer]!.elements)
          : this.plan.blobs[l.blob ?? 0]!.bytes / 4;
      return extent <= 0 || (start >= 0 && start + extent <= size);
    };
    const whole = (buffer: number, extent: number) => fits({ buffer, offset: [0] }, extent);
    const blobBytes = (i: number | null, bytes: number) =>
      i === null || this.plan.blobs[i]!.bytes === bytes;
    const span = (v: Strided, shape: number[][]) => {
      const strides = v.strides.map(p);
      const dims = shape.map(p);
      if (strides.some((d) => d < 0) || strides.length !== dims.length) return -1;
      return dims.some((d) => d === 0) ? 0 : dims.reduce((a, d, i) => a + (d - 1) * strides[i]!, 1);
    };
    let ok: boolean;
    switch (step.op) {
      case "gather":
        ok =
          fits(step.ids, p(step.count)) &&
          whole(step.output, p(step.count) * step.width) &&
          (step.scales === undefined
            ? blobBytes(step.table, step.rows * step.width * 4)
            : blobBytes(step.table, step.rows * step.width) &&
              blobBytes(step.scales, step.rows * 4));
        break;
      case "dense":
        ok =
          whole(step.input, p(step.rows) * step.k) &&
          whole(step.output, p(step.rows) * step.n) &&
          blobBytes(step.scales, step.n * 4) &&
          blobBytes(step.bias, step.n * 4);
        break;
      case "layerNorm":
        ok =
          whole(step.input, p(step.rows) * step.width) &&
          whole(step.output, p(step.rows) * step.width) &&
          blobBytes(step.gamma, step.width * 4) &&
          blobBytes(step.beta, step.width * 4);
        break;
      case "softmax": {
        const [rows, width] = [p(step.rows), p(step.width)];
        ok =
          whole(step.input, rows * width) &&
          whole(step.output, rows * width) &&
          p(step.maskStride) >= 0 &&
          (!step.mask || fits(step.mask, (rows - 1) * p(step.maskStride) + width));
        break;
      }
      case "matmul": {
        const [batch, m, k, n] = [p(step.batch), p(step.m), p(step.k), p(step.n)];
        const last = (stride: number[], ld: number[], rows: number, cols: number) =>
          p(stride) < 0 || p(ld) < 0
            ? Infinity
            : (batch - 1) * p(stride) + (rows - 1) * p(ld) + cols;
        const y = step.ldy ? last(step.strideY ?? [0], step.ldy, m, n) : batch * m * n;
        ok =
          fits(step.a, last(step.strideA, step.lda, m, k)) &&
          fits(
            step.b,
            step.transB ? last(step.strideB, step.ldb, n, k) : last(step.strideB, step.ldb, k, n),
          ) &&
          whole(step.output, y);
        break;
      }
      case "unary":
        ok = fits(step.input, p(step.count)) && whole(step.output, p(step.count));
        break;
      case "binary": {
        const [a, b] = [span(step.a, step.shape), span(step.b, step.shape)];
        const count = step.shape.reduce((acc, d) => acc * p(d), 1);
        ok =
          a >= 0 && b >= 0 && fits(step.a.at, a) && fits(step.b.at, b) && whole(step.output, count);
        break;
      }
      case "where": {
        const spans = [step.cond, step.a, step.b].map((v) => span(v, step.shape));
        const count = step.shape.reduce((acc, d) => acc * p(d), 1);
        ok =
          spans.every((n) => n >= 0) &&
          fits(step.cond.at, spans[0]!) &&
          fits(step.a.at, spans[1]!) &&
          fits(step.b.at, spans[2]!) &&
          whole(step.output, count);
        break;
      }
      case "copy": {
        const x = span(step.input, step.shape);
        const count = step.shape.reduce((acc, d) => acc * p(d), 1);
        ok = x >= 0 && fits(step.input.at, x) && whole(step.output, count);
        break;
      }
      case "reduce":
        ok =
          whole(step.input, p(step.outer) * p(step.size) * p(step.inner)) &&
          whole(step.output, p(step.outer) * p(step.inner));
        break;
    }
    if (!ok) {
      throw invalid(
        `int8 text plan step ${index} (${step.op}) reaches outside its buffers at sequence length ${s}`,
      );
    }
  }

  private bind(step: TextStep, s: number): () => void {
    const { abi } = this;
    const p = (x: number[]) => evalPoly(x, s);
    const out = (buffer: number) => this.ptr({ buffer, offset: [0] }, s);
    const blob = (i: number | null) => (i === null ? 0 : this.blobs[i]!);
    const memory = abi.memory.buffer;
    switch (step.op) {
      case "gather": {
        const [table, rows, width, ids, count, y] = [
          blob(step.table),
          step.rows,
          step.width,
          this.ptr(step.ids, s),
          p(step.count),
          out(step.output),
        ];
        const scales = step.scales === undefined ? 0 : blob(step.scales);
        return () => {
          const bad = scales
            ? abi.gatherRowsI8(table, scales, rows, width, ids, count, y)
            : abi.gatherRows(table, rows, width, ids, count, y);
          if (bad !== 0) {
            const id = new Int32Array(memory, ids, count)[bad - 1];
            throw invalid(
              `${step.input ? `input '${step.input}'` : "a token id"} holds ${id} at position ${bad - 1}; ids must lie in [0, ${rows})`,
            );
          }
        };
      }
      case "dense": {
        const [x, m, y, act] = [
          out(step.input),
          p(step.rows),
          out(step.output),
          step.act === "relu" ? 1 : 0,
        ];
        const [w, scales, bias, scratch] = [
          blob(step.weights),
          blob(step.scales),
          blob(step.bias),
          this.scratch,
        ];
        const { k, n } = step;
        return () => {
          if (abi.fusedLinear(x, m, k, w, n, scales, bias, act, y, scratch) !== 0) {
            throw invalid("cannot quantise NaN or infinite values");
          }
        };
      }
      case "layerNorm": {
        const [x, rows, y, gamma, beta] = [
          out(step.input),
          p(step.rows),
          out(step.output),
          blob(step.gamma),
          blob(step.beta),
        ];
        const { width, epsilon } = step;
        return () => abi.layerNorm(x, rows, width, gamma, beta, epsilon, y);
      }
      case "softmax": {
        const [x, rows, width, mask, stride, y] = [
          out(step.input),
          p(step.rows),
          p(step.width),
          step.mask ? this.ptr(step.mask, s) : 0,
          p(step.maskStride),
          out(step.output),
        ];
        return () => abi.softmaxRows(x, rows, width, mask, stride, y);
      }
      case "matmul": {
        const args = [
          this.ptr(step.a, s),
          p(step.lda),
          p(step.strideA),
          this.ptr(step.b, s),
          p(step.ldb),
          p(step.strideB),
          p(step.batch),
          p(step.m),
          p(step.k),
          p(step.n),
          step.transB ? 1 : 0,
          step.scale,
          out(step.output),
          step.ldy ? p(step.ldy) : p(step.n),
          step.strideY ? p(step.strideY) : p(step.m) * p(step.n),
        ];
        return () => abi.batchedMatMulStrided(...args);
      }
      case "unary": {
        const [x, count, y] = [this.ptr(step.input, s), p(step.count), out(step.output)];
        switch (step.fn) {
          case "relu":
            return () => abi.activate(x, count, 1, 0, 0, y);
          case "sigmoid":
            return () => abi.activate(x, count, 5, 0, 0, y);
          case "gelu":
            return () => abi.gelu(x, count, 0, y);
          case "geluTanh":
            return () => abi.gelu(x, count, 1, y);
          case "erf":
            return () => abi.erf(x, count, y);
          case "tanh":
            return () => abi.tanhRows(x, count, y);
        }
        const xs = new Float32Array(memory, x, count);
        const ys = new Float32Array(memory, y, count);
        switch (step.fn) {
          case "nonzero": {
            const flags = new Int32Array(memory, y, count);
            return () => {
              for (let i = 0; i < count; i++) flags[i] = xs[i] !== 0 ? 1 : 0;
            };
          }
          case "nonzeroInt": {
            const [ints, flags] = [
              new Int32Array(memory, x, count),
              new Int32Array(memory, y, count),
            ];
            return () => {
              for (let i = 0; i < count; i++) flags[i] = ints[i] !== 0 ? 1 : 0;
            };
          }
          case "toFloat": {
            const ints = new Int32Array(memory, x, count);
            return () => {
              for (let i = 0; i < count; i++) ys[i] = ints[i]!;
            };
          }
          case "sqrt":
            return () => {
              for (let i = 0; i < count; i++) ys[i] = Math.sqrt(xs[i]!);
            };
          case "neg":
            return () => {
              for (let i = 0; i < count; i++) ys[i] = -xs[i]!;
            };
          case "exp":
            return () => {
              for (let i = 0; i < count; i++) ys[i] = Math.exp(xs[i]!);
            };
          case "reciprocal":
            return () => {
              for (let i = 0; i < count; i++) ys[i] = 1 / xs[i]!;
            };
        }
        throw invalid(`int8 text plan: unknown unary function ${String(step.fn)}`);
      }
      case "binary": {
        const shape = pad4(step.shape.map(p), 1);
        const count = shape.reduce((a, b) => a * b, 1);
        const [a, sa] = this.view(step.a, s, memory);
        const [b, sb] = this.view(step.b, s, memory);
        const y = new Float32Array(memory, out(step.output), count);
        const whole = (v: Strided) => contiguous(v.strides.map(p), step.shape.map(p));
        if (step.fn === "add" && whole(step.a) && whole(step.b)) {
          const [pa, pb, py] = [this.ptr(step.a.at, s), this.ptr(step.b.at, s), out(step.output)];
          return () => abi.add(pa, pb, count, 0, 0, 0, py);
        }
        const f = BINARY[step.fn]!;
        return () => strided4(shape, (o, i, j) => (y[o] = f(a[i]!, b[j]!)), sa, sb);
      }
      case "where": {
        const shape = pad4(step.shape.map(p), 1);
        const count = shape.reduce((a, b) => a * b, 1);
        const start = this.ptr(step.cond.at, s);
        const cond = new Int32Array(memory, start, (memory.byteLength - start) >> 2);
        const sc = pad4(step.cond.strides.map(p), 0);
        const [a, sa] = this.view(step.a, s, memory);
        const [b, sb] = this.view(step.b, s, memory);
        const y = new Float32Array(memory, out(step.output), count);
        return () => {
          let o = 0;
          for (let i0 = 0; i0 < shape[0]!; i0++)
            for (let i1 = 0; i1 < shape[1]!; i1++)
              for (let i2 = 0; i2 < shape[2]!; i2++)
                for (let i3 = 0; i3 < shape[3]!; i3++) {
                  const at = (st: number[]) =>
                    i0 * st[0]! + i1 * st[1]! + i2 * st[2]! + i3 * st[3]!;
                  y[o++] = cond[at(sc)] ? a[at(sa)]! : b[at(sb)]!;
                }
        };
      }
      case "copy": {
        const shape = pad4(step.shape.map(p), 1);
        const count = shape.reduce((a, b) => a * b, 1);
        const [x, sx] = this.view(step.input, s, memory);
        const y = new Float32Array(memory, out(step.output), count);
        const scale = step.scale;
        return () => strided4(shape, (o, i) => (y[o] = x[i]! * scale), sx, sx);
      }
      case "reduce": {
        const [outer, size, inner] = [p(step.outer), p(step.size), p(step.inner)];
        if (step.fn === "mean") {
          // The pooling kernel with no mask: the mean over the middle axis, SIMD over `inner`.
          const [x, y] = [out(step.input), out(step.output)];
          return () => abi.meanPoolMasked(x, outer, size, inner, 0, y);
        }
        const x = new Float32Array(memory, out(step.input), outer * size * inner);
        const y = new Float32Array(memory, out(step.output), outer * inner);
        const fn = step.fn;
        return () => {
          for (let o = 0; o < outer; o++) {
            for (let i = 0; i < inner; i++) {
              let acc = fn === "max" ? -Infinity : 0;
              for (let r = 0; r < size; r++) {
                const v = x[(o * size + r) * inner + i]!;
                acc = fn === "max" ? Math.max(acc, v) : acc + v;
              }
              y[o * inner + i] = acc;
            }
          }
        };
      }
    }
  }

  /** The whole memory as f32 from a view's start, and its strides padded to 4 axes. */
  private view(v: Strided, s: number, memory: ArrayBuffer): [Float32Array, number[]] {
    const start = this.ptr(v.at, s);
    return [
      new Float32Array(memory, start),
      pad4(
        v.strides.map((d) => evalPoly(d, s)),
        0,
      ),
    ];
  }
}

const BINARY: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: (a, b) => Math.pow(a, b),
  max: (a, b) => Math.max(a, b),
  min: (a, b) => Math.min(a, b),
};

const pad4 = (values: number[], fill: number) => [
  ...Array(4 - values.length).fill(fill),
  ...values,
];

/** Row-major strides of `shape` (axes of size 1 may hold any stride). */
function contiguous(strides: number[], shape: number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && strides[i] !== expect) return false;
    expect *= shape[i]!;
  }
  return true;
}

/** Visits a 4-axis shape in row-major order: output index, and the offsets in two strided views. */
function strided4(
  shape: number[],
  visit: (o: number, i: number, j: number) => void,
  sa: number[],
  sb: number[],
): void {
  const [n0, n1, n2, n3] = shape as [number, number, number, number];
  let o = 0;
  for (let a = 0; a < n0; a++) {
    for (let b = 0; b < n1; b++) {
      for (let c = 0; c < n2; c++) {
        let i = a * sa[0]! + b * sa[1]! + c * sa[2]!;
        let j = a * sb[0]! + b * sb[1]! + c * sb[2]!;
        for (let d = 0; d < n3; d++, i += sa[3]!, j += sb[3]!) visit(o++, i, j);
      }
    }
  }
}
