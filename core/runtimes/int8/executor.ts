/**
 * @module
 * Runs an int8 plan on the WASM kernels: per layer the fused kernel
 * (dynamic quantisation per row → int8 GEMM → per-channel dequantisation →
 * bias → ReLU), then any other activation in JS, then the optional softmax. The same
 * code runs in the worker and in the compiler's accuracy report.
 */
import { invalid } from "../../errors";
import type { Int8Kernels, ResidentChain, ResidentLayer } from "./kernels";
import {
  blobView,
  decodePlanHeader,
  f32Blob,
  type PlanActivation,
  type PlanMetadata,
  unpackV1Weights,
} from "./plan";

/** erf to ~1.5e-7 (Abramowitz & Stegun 7.1.26), plenty for int8 activations; pruning's reference computation uses it too. */
export function erf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t *
      Math.exp(-x * x);
  return x >= 0 ? y : -y;
}

function activate(values: Float32Array, activation: PlanActivation, alpha: number): void {
  switch (activation) {
    case "none":
    case "relu": // fused in the kernel
      return;
    case "leaky_relu":
      for (let i = 0; i < values.length; i++) if (values[i]! < 0) values[i]! *= alpha;
      return;
    case "sigmoid":
      for (let i = 0; i < values.length; i++) values[i] = 1 / (1 + Math.exp(-values[i]!));
      return;
    case "tanh":
      for (let i = 0; i < values.length; i++) values[i] = Math.tanh(values[i]!);
      return;
    case "gelu":
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        values[i] = 0.5 * v * (1 + erf(v / Math.SQRT2));
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

/**
 * Rows run together at most (bounding the kernels' memory). Every row is
 * quantised with its own activation range (DynamicQuantizeLinear of that row
 * alone), so neither the batch nor its blocks change a row's answer.
 */
export const MAX_BLOCK_ROWS = 256;

export class PlanExecutor {
  readonly metadata: PlanMetadata;
  private readonly layers: ResidentLayer[];
  /** Set when every activation is fused (ReLU or none): the whole plan is one WASM call. */
  private readonly chain: ResidentChain | undefined;

  /** Copies the plan's packed weights, scales and biases into the kernels' memory once. */
  constructor(
    private readonly kernels: Int8Kernels,
    plan: Uint8Array,
  ) {
    this.metadata = decodePlanHeader(plan);
    const v1 = this.metadata.formatVersion === 1;
    this.layers = this.metadata.layers.map((layer) =>
      kernels.residentLayer(
        v1
          ? kernels.packedWeightBytes(
              unpackV1Weights(blobView(plan, layer.packedWeights), layer.k, layer.n),
              layer.k,
              layer.n,
            )
          : blobView(plan, layer.packedWeights),
        layer.k,
        layer.n,
        f32Blob(plan, layer.scales),
        layer.bias ? f32Blob(plan, layer.bias) : undefined,
        layer.activation === "relu" ? "relu" : "none",
      ),
    );
    const fusable = this.metadata.layers.every(
      (l) => l.activation === "relu" || l.activation === "none",
    );
    this.chain = fusable ? kernels.residentChain(this.layers, MAX_BLOCK_ROWS) : undefined;
  }

  get inputWidth(): number {
    return this.metadata.layers[0]!.k;
  }

  get outputWidth(): number {
    return this.metadata.layers.at(-1)!.n;
  }

  /**
   * An upper bound on the kernel memory a block of rows may still add: none
   * for a fused chain (its buffers were allocated with it); otherwise input and
   * output, two activation buffers, and the fused kernel's widened input and
   * accumulators for the largest layer (rounded up per buffer).
   */
  blockScratchBytes(): number {
    if (this.chain) return 0;
    const rows = MAX_BLOCK_ROWS;
    const widest = Math.max(...this.metadata.layers.map((l) => l.n));
    const fused = Math.max(
      ...this.metadata.layers.map((l) => rows * (Math.ceil(l.k / 8) * 8 * 2 + l.n * 4)),
    );
    return rows * 4 * (this.inputWidth + this.outputWidth + 2 * widest) + fused + 16 * 8;
  }

  /** `x` is [batch, inputWidth] row-major (any trailing dims already flattened). */
  run(x: Float32Array, batch: number): Float32Array {
    if (x.length !== batch * this.inputWidth) {
      throw invalid(
        `the int8 plan takes ${this.inputWidth} values per row; got ${x.length / batch}`,
      );
    }
    if (batch <= MAX_BLOCK_ROWS) return this.runBlock(x, batch);
    // Large batches go through in blocks, so the kernels' memory (which never
    // shrinks) stays bounded; rows are quantised one by one, so the blocks
    // change no answer.
    const width = this.inputWidth;
    const y = new Float32Array(batch * this.outputWidth);
    for (let row = 0; row < batch; row += MAX_BLOCK_ROWS) {
      const rows = Math.min(MAX_BLOCK_ROWS, batch - row);
      const block = this.runBlock(x.subarray(row * width, (row + rows) * width), rows);
      y.set(block, row * this.outputWidth);
    }
    return y;
  }

  private runBlock(x: Float32Array, batch: number): Float32Array {
    const meta = this.metadata.layers;
    const y = this.chain
      ? this.kernels.runChain(x, batch, this.chain)
      : this.kernels.runLayers(x, batch, this.layers, (i, values) =>
          activate(values, meta[i]!.activation, meta[i]!.alpha ?? 0.01),
        );
    if (this.metadata.softmax) softmaxRows(y, this.outputWidth);
    return y;
  }
}
