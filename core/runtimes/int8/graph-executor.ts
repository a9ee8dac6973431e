/**
 * @module
 * Runs a graph plan (`graph-plan.ts`) on the WASM kernels: at load, the
 * weights are packed into the module's memory and the arena is allocated for
 * the largest block of samples; per request, each block of samples is copied
 * into the arena and every step is one kernel call over the block (the calls,
 * with every pointer bound, and views of the block's input and output are
 * made once per block size; a one-block run allocates only its result). Each
 * sample is quantised on its own (per-sample activation ranges), so a
 * sample's answer never depends on the other samples of the request.
 */
import { invalid } from "../../errors";
import { allocateIn, copyIn } from "./kernel-memory";
import { ACTIVATION_CODES, decodeGraphPlan, type GraphPlan, type GraphStep } from "./graph-plan";
import { blobView, type BlobRef } from "./plan";

/** The kernels' flat ABI, as far as graph plans use it. */
interface GraphAbi {
  memory: WebAssembly.Memory;
  allocate(bytes: number): number;
  packColumns(
    b: number,
    k: number,
    n: number,
    signed: number,
    zeroPoints: number,
    zeroPointPerColumn: number,
    out: number,
  ): void;
  packedBytes(k: number, n: number): number;
  fusedLinear(...args: number[]): number;
  fusedScratchBytes(m: number, k: number, n: number): number;
  nchwToNhwc(x: number, batch: number, c: number, hw: number, y: number): void;
  nhwcToNchw(x: number, batch: number, c: number, hw: number, y: number): void;
  convInt8ScratchBytes(...args: number[]): number;
  convInt8(...args: number[]): number;
  depthwiseConv(...args: number[]): void;
  maxPool(...args: number[]): void;
  averagePool(...args: number[]): void;
  globalAveragePool(x: number, batch: number, hw: number, c: number, y: number): void;
  activate(x: number, count: number, act: number, p0: number, p1: number, y: number): void;
  add(a: number, b: number, count: number, act: number, p0: number, p1: number, y: number): void;
  mul(a: number, b: number, count: number, y: number): void;
  mulChannels(x: number, gate: number, batch: number, hw: number, c: number, y: number): void;
  concatChannels(
    a: number,
    ca: number,
    b: number,
    cb: number,
    batch: number,
    hw: number,
    y: number,
  ): void;
}

/** Most samples run together. Fewer when the arena of a block would pass `ARENA_BUDGET_BYTES`. */
export const MAX_GRAPH_BLOCK = 64;
/** The arena (and conv scratch) a block may take: large images run in smaller blocks. */
export const ARENA_BUDGET_BYTES = 16 * 1024 * 1024;

/** A step with its weights resident in the module's memory. */
interface Resident {
  step: GraphStep;
  weights: number;
  scales: number;
  bias: number;
}

export class GraphExecutor {
  readonly plan: GraphPlan;
  /** Samples per block. */
  readonly blockSamples: number;
  private readonly resident: Resident[];
  private readonly arena: number;
  private readonly scratch: number;
  private readonly inputElements: number;
  private readonly outputElements: number;
  /** Prepared steps by block size (1 … blockSamples). */
  private readonly blocks: (Block | undefined)[] = [];

  private constructor(
    private readonly abi: GraphAbi,
    bytes: Uint8Array,
  ) {
    this.plan = decodeGraphPlan(bytes);
    const { plan } = this;
    this.inputElements = plan.buffers[plan.input.buffer]!.elements;
    this.outputElements = plan.buffers[plan.output.buffer]!.elements;
    this.resident = plan.steps.map((step) => this.load(step, bytes));
    const perSample = plan.arenaElements * 4;
    this.blockSamples = Math.max(
      1,
      Math.min(MAX_GRAPH_BLOCK, Math.floor(ARENA_BUDGET_BYTES / perSample)),
    );
    // Scratch: the largest convolution's (per sample, reused) or a dense layer's (per block).
    let scratch = 0;
    for (const step of plan.steps) {
      if (step.op === "conv") {
        scratch = Math.max(
          scratch,
          abi.convInt8ScratchBytes(
            step.h,
            step.w,
            step.c,
            step.kh,
            step.kw,
            step.outH,
            step.outW,
            step.cout,
          ),
        );
      } else if (step.op === "dense") {
        scratch = Math.max(scratch, abi.fusedScratchBytes(this.blockSamples, step.k, step.n));
      }
    }
    this.arena = this.alloc(perSample * this.blockSamples);
    this.scratch = this.alloc(scratch);
  }

  static async instantiate(module: WebAssembly.Module, plan: Uint8Array): Promise<GraphExecutor> {
    const instance = await WebAssembly.instantiate(module, {});
    return new GraphExecutor(instance.exports as unknown as GraphAbi, plan);
  }

  /** Bytes of linear memory the module holds: weights, arena and scratch (allocated at load). */
  get memoryBytes(): number {
    return this.abi.memory.buffer.byteLength;
  }

  get inputWidth(): number {
    return this.inputElements;
  }

  get outputWidth(): number {
    return this.outputElements;
  }

  private alloc(bytes: number): number {
    return allocateIn(this.abi, bytes);
  }

  private put(data: ArrayBufferView): number {
    return copyIn(this.abi, data);
  }

  private load(step: GraphStep, bytes: Uint8Array): Resident {
    const blob = (ref: BlobRef | null | undefined) => (ref ? this.put(blobView(bytes, ref)) : 0);
    if (step.op === "conv" || step.op === "dense") {
      const [k, n] =
        step.op === "conv" ? [step.kh * step.kw * step.c, step.cout] : [step.k, step.n];
      // Plans hold plain int8 weights; the kernels' packed layout is made here, once.
      const staging = this.put(blobView(bytes, step.weights));
      const zero = this.put(new Uint8Array(1));
      const packed = this.alloc(this.abi.packedBytes(k, n));
      this.abi.packColumns(staging, k, n, 1, zero, 0, packed);
      return { step, weights: packed, scales: blob(step.scales), bias: blob(step.bias) };
    }
    if (step.op === "depthwise") {
      return { step, weights: blob(step.weights), scales: 0, bias: blob(step.bias) };
    }
    return { step, weights: 0, scales: 0, bias: 0 };
  }

  /** `x` is [batch, input values per sample] as the request sent it (NCHW for images). */
  run(x: Float32Array, batch: number): Float32Array {
    if (x.length !== batch * this.inputElements) {
      throw invalid(
        `the int8 plan takes ${this.inputElements} values per sample; got ${x.length / batch}`,
      );
    }
    if (batch <= this.blockSamples) {
      // One block (every batch-1 request): the result is the only allocation.
      const block = this.prepared(batch);
      block.input.set(x);
      for (const call of block.calls) call();
      return block.output.slice();
    }
    const y = new Float32Array(batch * this.outputElements);
    for (let first = 0; first < batch; first += this.blockSamples) {
      const samples = Math.min(this.blockSamples, batch - first);
      const block = this.prepared(samples);
      block.input.set(
        x.subarray(first * this.inputElements, (first + samples) * this.inputElements),
      );
      for (const call of block.calls) call();
      y.set(block.output, first * this.outputElements);
    }
    return y;
  }

  /**
   * The steps of a block of `samples` as calls with every pointer and size
   * worked out, and views of the block's input and output, made once per
   * block size (and again only if the memory's buffer were replaced).
   */
  private prepared(samples: number): Block {
    const cached = this.blocks[samples];
    if (cached && cached.buffer === this.abi.memory.buffer) return cached;
    const buffer = this.abi.memory.buffer;
    const at = (buffer: number) => this.arena + this.plan.buffers[buffer]!.offset * samples * 4;
    const block: Block = {
      buffer,
      input: new Float32Array(buffer, at(this.plan.input.buffer), samples * this.inputElements),
      output: new Float32Array(buffer, at(this.plan.output.buffer), samples * this.outputElements),
      calls: this.resident.map((resident) => this.call(resident, samples, at, buffer)),
    };
    this.blocks[samples] = block;
    return block;
  }

  /** One step over a block of `n` samples, bound to its pointers. */
  private call(
    resident: Resident,
    n: number,
    at: (buffer: number) => number,
    memory: ArrayBuffer,
  ): () => void {
    const { abi, scratch } = this;
    const { step, weights, scales, bias } = resident;
    switch (step.op) {
      case "toNhwc": {
        const [x, c, hw, y] = [at(step.input), step.c, step.hw, at(step.output)];
        return () => abi.nchwToNhwc(x, n, c, hw, y);
      }
      case "toNchw": {
        const [x, c, hw, y] = [at(step.input), step.c, step.hw, at(step.output)];
        return () => abi.nhwcToNchw(x, n, c, hw, y);
      }
      case "conv": {
        const { h, w, c, kh, kw, strideH, strideW, padTop, padLeft, outH, outW, cout } = step;
        const [x, y, act, p0, p1] = [
          at(step.input),
          at(step.output),
          ACTIVATION_CODES[step.act],
          step.p0,
          step.p1,
        ];
        return () => {
          const status = abi.convInt8(
            x,
            n,
            h,
            w,
            c,
            kh,
            kw,
            strideH,
            strideW,
            padTop,
            padLeft,
            outH,
            outW,
            weights,
            cout,
            scales,
            bias,
            act,
            p0,
            p1,
            y,
            scratch,
          );
          if (status !== 0) throw nonFinite();
        };
      }
      case "depthwise": {
        const { h, w, c, kh, kw, strideH, strideW, padTop, padLeft, outH, outW } = step;
        const [x, y, act, p0, p1] = [
          at(step.input),
          at(step.output),
          ACTIVATION_CODES[step.act],
          step.p0,
          step.p1,
        ];
        return () =>
          abi.depthwiseConv(
            x,
            n,
            h,
            w,
            c,
            kh,
            kw,
            strideH,
            strideW,
            padTop,
            padLeft,
            outH,
            outW,
            weights,
            bias,
            act,
            p0,
            p1,
            y,
          );
      }
      case "maxPool":
      case "averagePool": {
        const { h, w, c, kh, kw, strideH, strideW, padTop, padLeft, outH, outW } = step;
        const [x, y] = [at(step.input), at(step.output)];
        if (step.op === "maxPool") {
          return () =>
            abi.maxPool(x, n, h, w, c, kh, kw, strideH, strideW, padTop, padLeft, outH, outW, y);
        }
        const countIncludePad = step.countIncludePad ? 1 : 0;
        return () =>
          abi.averagePool(
            x,
            n,
            h,
            w,
            c,
            kh,
            kw,
            strideH,
            strideW,
            padTop,
            padLeft,
            outH,
            outW,
            countIncludePad,
            y,
          );
      }
      case "globalAveragePool": {
        const [x, hw, c, y] = [at(step.input), step.hw, step.c, at(step.output)];
        return () => abi.globalAveragePool(x, n, hw, c, y);
      }
      case "activate": {
        const [x, count, act, p0, p1, y] = [
          at(step.input),
          n * step.count,
          ACTIVATION_CODES[step.act],
          step.p0,
          step.p1,
          at(step.output),
        ];
        return () => abi.activate(x, count, act, p0, p1, y);
      }
      case "add": {
        const [a, b, count, act, p0, p1, y] = [
          at(step.a),
          at(step.b),
          n * step.count,
          ACTIVATION_CODES[step.act],
          step.p0,
          step.p1,
          at(step.output),
        ];
        return () => abi.add(a, b, count, act, p0, p1, y);
      }
      case "mul": {
        const [a, b, count, y] = [at(step.a), at(step.b), n * step.count, at(step.output)];
        return () => abi.mul(a, b, count, y);
      }
      case "mulChannels": {
        const [x, gate, hw, c, y] = [
          at(step.input),
          at(step.gate),
          step.hw,
          step.c,
          at(step.output),
        ];
        return () => abi.mulChannels(x, gate, n, hw, c, y);
      }
      case "concat": {
        const [a, ca, b, cb, hw, y] = [
          at(step.a),
          step.ca,
          at(step.b),
          step.cb,
          step.hw,
          at(step.output),
        ];
        return () => abi.concatChannels(a, ca, b, cb, n, hw, y);
      }
      case "dense": {
        // fusedLinear quantises each row (sample) on its own: one call for the block.
        const [x, y, act] = [at(step.input), at(step.output), ACTIVATION_CODES[step.act]];
        const { k, n: width } = step;
        return () => {
          const status = abi.fusedLinear(x, n, k, weights, width, scales, bias, act, y, scratch);
          if (status !== 0) throw nonFinite();
        };
      }
      case "softmax": {
        const { width } = step;
        const values = new Float32Array(memory, at(step.input), n * width);
        const out = new Float32Array(memory, at(step.output), n * width);
        return () => {
          for (let row = 0; row < n * width; row += width) {
            let max = -Infinity;
            for (let i = row; i < row + width; i++) max = Math.max(max, values[i]!);
            let sum = 0;
            for (let i = row; i < row + width; i++) sum += out[i] = Math.exp(values[i]! - max);
            for (let i = row; i < row + width; i++) out[i]! /= sum;
          }
        };
      }
    }
  }
}

/** A block size's prepared steps (see `GraphExecutor.prepared`). */
interface Block {
  buffer: ArrayBuffer;
  input: Float32Array;
  output: Float32Array;
  calls: (() => void)[];
}

function nonFinite() {
  return invalid("cannot quantise NaN or infinite values");
}
