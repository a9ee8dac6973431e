/**
 * @module
 * Runs a graph plan (`graph-plan.ts`) on the WASM kernels: at load, the
 * weights are packed into the module's memory and the arena is allocated for
 * the largest block of samples; per request, each block of samples is copied
 * into the arena and every step is one kernel call over the block. Each
 * sample is quantised on its own (per-sample activation ranges), so a
 * sample's answer never depends on the other samples of the request.
 */
import { invalid } from "../../errors";
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
    const ptr = this.abi.allocate(bytes);
    if (ptr === 0 && bytes > 0) throw invalid(`the int8 kernels could not allocate ${bytes} bytes`);
    return ptr;
  }

  private put(data: Uint8Array): number {
    const ptr = this.alloc(data.byteLength);
    new Uint8Array(this.abi.memory.buffer, ptr, data.byteLength).set(data);
    return ptr;
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
    const y = new Float32Array(batch * this.outputElements);
    for (let first = 0; first < batch; first += this.blockSamples) {
      const samples = Math.min(this.blockSamples, batch - first);
      const at = (buffer: number) => this.arena + this.plan.buffers[buffer]!.offset * samples * 4;
      const memory = () => this.abi.memory.buffer;
      new Float32Array(memory(), at(this.plan.input.buffer), samples * this.inputElements).set(
        x.subarray(first * this.inputElements, (first + samples) * this.inputElements),
      );
      for (const resident of this.resident) this.step(resident, samples, at);
      y.set(
        new Float32Array(memory(), at(this.plan.output.buffer), samples * this.outputElements),
        first * this.outputElements,
      );
    }
    return y;
  }

  private step(resident: Resident, n: number, at: (buffer: number) => number): void {
    const { abi } = this;
    const { step, weights, scales, bias } = resident;
    switch (step.op) {
      case "toNhwc":
        return abi.nchwToNhwc(at(step.input), n, step.c, step.hw, at(step.output));
      case "toNchw":
        return abi.nhwcToNchw(at(step.input), n, step.c, step.hw, at(step.output));
      case "conv": {
        const status = abi.convInt8(
          at(step.input),
          n,
          step.h,
          step.w,
          step.c,
          step.kh,
          step.kw,
          step.strideH,
          step.strideW,
          step.padTop,
          step.padLeft,
          step.outH,
          step.outW,
          weights,
          step.cout,
          scales,
          bias,
          ACTIVATION_CODES[step.act],
          step.p0,
          step.p1,
          at(step.output),
          this.scratch,
        );
        if (status !== 0) throw nonFinite();
        return;
      }
      case "depthwise":
        return abi.depthwiseConv(
          at(step.input),
          n,
          step.h,
          step.w,
          step.c,
          step.kh,
          step.kw,
          step.strideH,
          step.strideW,
          step.padTop,
          step.padLeft,
          step.outH,
          step.outW,
          weights,
          bias,
          ACTIVATION_CODES[step.act],
          step.p0,
          step.p1,
          at(step.output),
        );
      case "maxPool":
      case "averagePool": {
        const geometry = [
          at(step.input),
          n,
          step.h,
          step.w,
          step.c,
          step.kh,
          step.kw,
          step.strideH,
          step.strideW,
          step.padTop,
          step.padLeft,
          step.outH,
          step.outW,
        ];
        if (step.op === "maxPool") return abi.maxPool(...geometry, at(step.output));
        return abi.averagePool(...geometry, step.countIncludePad ? 1 : 0, at(step.output));
      }
      case "globalAveragePool":
        return abi.globalAveragePool(at(step.input), n, step.hw, step.c, at(step.output));
      case "activate":
        return abi.activate(
          at(step.input),
          n * step.count,
          ACTIVATION_CODES[step.act],
          step.p0,
          step.p1,
          at(step.output),
        );
      case "add":
        return abi.add(
          at(step.a),
          at(step.b),
          n * step.count,
          ACTIVATION_CODES[step.act],
          step.p0,
          step.p1,
          at(step.output),
        );
      case "mul":
        return abi.mul(at(step.a), at(step.b), n * step.count, at(step.output));
      case "mulChannels":
        return abi.mulChannels(at(step.input), at(step.gate), n, step.hw, step.c, at(step.output));
      case "concat":
        return abi.concatChannels(
          at(step.a),
          step.ca,
          at(step.b),
          step.cb,
          n,
          step.hw,
          at(step.output),
        );
      case "dense": {
        // fusedLinear quantises each row (sample) on its own: one call for the block.
        const status = abi.fusedLinear(
          at(step.input),
          n,
          step.k,
          weights,
          step.n,
          scales,
          bias,
          ACTIVATION_CODES[step.act],
          at(step.output),
          this.scratch,
        );
        if (status !== 0) throw nonFinite();
        return;
      }
      case "softmax": {
        const values = new Float32Array(this.abi.memory.buffer, at(step.input), n * step.width);
        const out = new Float32Array(this.abi.memory.buffer, at(step.output), n * step.width);
        for (let row = 0; row < n * step.width; row += step.width) {
          let max = -Infinity;
          for (let i = row; i < row + step.width; i++) max = Math.max(max, values[i]!);
          let sum = 0;
          for (let i = row; i < row + step.width; i++) sum += out[i] = Math.exp(values[i]! - max);
          for (let i = row; i < row + step.width; i++) out[i]! /= sum;
        }
        return;
      }
    }
  }
}

function nonFinite() {
  return invalid("cannot quantise NaN or infinite values");
}
