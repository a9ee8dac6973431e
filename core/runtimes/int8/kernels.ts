/**
 * @module
 * Host side of Pinion's int8 WASM kernels (`assembly/`): typed arrays in,
 * typed arrays out, over the module's flat ABI. Takes an already compiled
 * `WebAssembly.Module`, so the same code runs in workerd (which can only
 * import precompiled modules) and in Node (which compiles the file's bytes).
 */
import { invalid } from "../../errors";
import { allocateIn, copyIn } from "./kernel-memory";

/** The module's exports, as `assembly/index.ts` declares them (booleans as 0/1). */
interface Abi {
  memory: WebAssembly.Memory;
  allocate(bytes: number): number;
  mark(): number;
  release(to: number): void;
  quantizeLinear(x: number, n: number, scale: number, zp: number, y: number, signed: number): void;
  quantizeLinearAxis(
    x: number,
    outer: number,
    channels: number,
    inner: number,
    scales: number,
    zeroPoints: number,
    y: number,
    signed: number,
  ): void;
  dequantizeLinear(
    x: number,
    n: number,
    scale: number,
    zp: number,
    y: number,
    signed: number,
  ): void;
  dequantizeLinearAxis(
    x: number,
    outer: number,
    channels: number,
    inner: number,
    scales: number,
    zeroPoints: number,
    y: number,
    signed: number,
  ): void;
  dynamicQuantizeLinear(x: number, n: number, y: number): number;
  dynamicScale(): number;
  dynamicZeroPoint(): number;
  widenRows(
    a: number,
    m: number,
    k: number,
    signed: number,
    zeroPoints: number,
    perRow: number,
    out: number,
  ): void;
  packColumns(
    b: number,
    k: number,
    n: number,
    signed: number,
    zeroPoints: number,
    perColumn: number,
    out: number,
  ): void;
  packedBytes(k: number, n: number): number;
  gemmI16(a16: number, m: number, k: number, b16: number, n: number, c: number): void;
  requantize(
    acc: number,
    m: number,
    n: number,
    aScale: number,
    bScales: number,
    perColumn: number,
    yScale: number,
    yZeroPoint: number,
    signed: number,
    y: number,
  ): void;
  dequantizeAccumulators(
    acc: number,
    m: number,
    n: number,
    aScales: number,
    wScales: number,
    bias: number,
    activation: number,
    y: number,
  ): void;
  fusedLinear(
    x: number,
    m: number,
    k: number,
    packedW: number,
    n: number,
    wScales: number,
    bias: number,
    activation: number,
    y: number,
    scratch: number,
  ): number;
  fusedScratchBytes(m: number, k: number, n: number): number;
  denseChain(
    table: number,
    count: number,
    x: number,
    m: number,
    y: number,
    scratch: number,
  ): number;
  denseChainScratchBytes(m: number, widest: number, largestFused: number): number;
}

export type Bytes = Uint8Array | Int8Array;
export type Activation = "none" | "relu";
const ACTIVATION_CODE: Record<Activation, number> = { none: 0, relu: 1 };

/** Int8 weights packed once for the GEMM; they live in the module's memory until `reset()`. */
export interface PackedWeights {
  readonly ptr: number;
  readonly k: number;
  readonly n: number;
  readonly bytes: number;
}

/** A dense layer whose weights, scales and bias live in WASM memory. */
export interface ResidentLayer {
  readonly weights: PackedWeights;
  readonly scalesPtr: number;
  /** 0 when the layer has no bias. */
  readonly biasPtr: number;
  readonly activation: number;
}

/** Resident layers plus the table `denseChain` walks. */
export interface ResidentChain {
  readonly table: number;
  readonly layers: readonly ResidentLayer[];
  /** Rows one call takes at most; `x`, `y` and `scratch` are sized for it. */
  readonly maxRows: number;
  /** Values per row in and out. */
  readonly inWidth: number;
  readonly outWidth: number;
  readonly x: number;
  readonly y: number;
  readonly scratch: number;
}

/** A quantisation zero point: one for the whole tensor, or one per row/column/channel. */
export type ZeroPoints = number | ArrayLike<number>;

const K_ALIGN = 8;
const paddedK = (k: number) => Math.ceil(k / K_ALIGN) * K_ALIGN;

export class Int8Kernels {
  /** Where the module's free memory starts; `reset()` returns here. */
  private readonly base: number;

  private constructor(private readonly abi: Abi) {
    this.base = abi.mark();
  }

  static async instantiate(module: WebAssembly.Module): Promise<Int8Kernels> {
    const instance = await WebAssembly.instantiate(module, {});
    return new Int8Kernels(instance.exports as unknown as Abi);
  }

  /** Bytes of linear memory the module currently has. */
  get memoryBytes(): number {
    return this.abi.memory.buffer.byteLength;
  }

  // -- memory ------------------------------------------------------------------

  private alloc(bytes: number): number {
    return allocateIn(this.abi, bytes);
  }

  private put(data: ArrayBufferView): number {
    return copyIn(this.abi, data);
  }

  private putZeroPoints(zp: ZeroPoints, signed: boolean): number {
    const values = typeof zp === "number" ? [zp] : Array.from(zp);
    return this.put(signed ? Int8Array.from(values) : Uint8Array.from(values));
  }

  private take<T extends ArrayBufferView>(
    Type: { new (buffer: ArrayBuffer, offset: number, length: number): T } & {
      BYTES_PER_ELEMENT: number;
    },
    ptr: number,
    length: number,
  ): T {
    // Copy out: views into WASM memory are invalidated when it grows.
    const view = new Type(this.abi.memory.buffer as ArrayBuffer, ptr, length);
    return (view as unknown as { slice(): T }).slice();
  }

  /** Runs `work` with per-call scratch that is freed afterwards. */
  private scoped<T>(work: () => T): T {
    const mark = this.abi.mark();
    try {
      return work();
    } finally {
      this.abi.release(mark);
    }
  }

  // -- quantisation --------------------------------------------------------------

  /** QuantizeLinear per tensor (`signed` selects int8 vs uint8 output). */
  quantizeLinear(x: Float32Array, scale: number, zeroPoint: number, signed = false): Bytes {
    return this.scoped(() => {
      const xp = this.put(x);
      const yp = this.alloc(x.length);
      this.abi.quantizeLinear(xp, x.length, scale, zeroPoint, yp, signed ? 1 : 0);
      return signed ? this.take(Int8Array, yp, x.length) : this.take(Uint8Array, yp, x.length);
    });
  }

  /** QuantizeLinear per axis: `scales`/`zeroPoints` have one entry per slice along `axis`. */
  quantizeLinearAxis(
    x: Float32Array,
    shape: readonly number[],
    axis: number,
    scales: Float32Array,
    zeroPoints: ArrayLike<number>,
    signed = false,
  ): Bytes {
    const { outer, channels, inner } = splitAxis(shape, axis, x.length);
    if (scales.length !== channels || zeroPoints.length !== channels) {
      throw invalid(`per-axis quantisation needs ${channels} scales and zero points`);
    }
    return this.scoped(() => {
      const xp = this.put(x);
      const sp = this.put(scales);
      const zp = this.putZeroPoints(zeroPoints, signed);
      const yp = this.alloc(x.length);
      this.abi.quantizeLinearAxis(xp, outer, channels, inner, sp, zp, yp, signed ? 1 : 0);
      return signed ? this.take(Int8Array, yp, x.length) : this.take(Uint8Array, yp, x.length);
    });
  }

  /** DequantizeLinear per tensor. */
  dequantizeLinear(x: Bytes, scale: number, zeroPoint: number): Float32Array {
    return this.scoped(() => {
      const xp = this.put(x);
      const yp = this.alloc(x.length * 4);
      this.abi.dequantizeLinear(xp, x.length, scale, zeroPoint, yp, x instanceof Int8Array ? 1 : 0);
      return this.take(Float32Array, yp, x.length);
    });
  }

  /** DequantizeLinear per axis. */
  dequantizeLinearAxis(
    x: Bytes,
    shape: readonly number[],
    axis: number,
    scales: Float32Array,
    zeroPoints: ArrayLike<number>,
  ): Float32Array {
    const { outer, channels, inner } = splitAxis(shape, axis, x.length);
    const signed = x instanceof Int8Array;
    return this.scoped(() => {
      const xp = this.put(x);
      const sp = this.put(scales);
      const zp = this.putZeroPoints(zeroPoints, signed);
      const yp = this.alloc(x.length * 4);
      this.abi.dequantizeLinearAxis(xp, outer, channels, inner, sp, zp, yp, signed ? 1 : 0);
      return this.take(Float32Array, yp, x.length);
    });
  }

  /** DynamicQuantizeLinear (uint8). NaN and ±Inf have no quantised value and are refused. */
  dynamicQuantizeLinear(x: Float32Array): { y: Uint8Array; scale: number; zeroPoint: number } {
    return this.scoped(() => {
      const xp = this.put(x);
      const yp = this.alloc(x.length);
      if (this.abi.dynamicQuantizeLinear(xp, x.length, yp) !== 0) {
        throw invalid("cannot quantise NaN or infinite values");
      }
      return {
        y: this.take(Uint8Array, yp, x.length),
        scale: this.abi.dynamicScale(),
        zeroPoint: this.abi.dynamicZeroPoint(),
      };
    });
  }

  // -- matrix multiplication -------------------------------------------------------

  /**
   * MatMulInteger for 2-D operands: (A − a_zp)·(B − b_zp) in int32. A is M×K,
   * B is K×N, both row-major; `aZeroPoint` per tensor or per row, `bZeroPoint`
   * per tensor or per column.
   */
  matMulInteger(
    a: Bytes,
    b: Bytes,
    m: number,
    k: number,
    n: number,
    aZeroPoint: ZeroPoints = 0,
    bZeroPoint: ZeroPoints = 0,
  ): Int32Array {
    checkLength(a, m * k, "A");
    checkLength(b, k * n, "B");
    return this.scoped(() => {
      const packed = this.packInto(b, k, n, bZeroPoint);
      return this.gemm(a, m, k, aZeroPoint, packed.ptr, n, (acc) =>
        this.take(Int32Array, acc, m * n),
      );
    });
  }

  /**
   * Int8 GEMM against weights packed once with `packWeights`: (A − a_zp)·W in
   * int32, A M×K row-major.
   */
  matMulPacked(a: Bytes, m: number, aZeroPoint: ZeroPoints, weights: PackedWeights): Int32Array {
    const { k, n } = weights;
    checkLength(a, m * k, "A");
    return this.scoped(() =>
      this.gemm(a, m, k, aZeroPoint, weights.ptr, n, (acc) => this.take(Int32Array, acc, m * n)),
    );
  }

  /**
   * QLinearMatMul for 2-D operands: y = saturate(nearest((A−a_zp)·(B−b_zp) ·
   * a_scale·b_scale/y_scale) + y_zp). `bScale`/`bZeroPoint` per tensor or per column.
   */
  qlinearMatMul(
    a: Bytes,
    aScale: number,
    aZeroPoint: number,
    b: Bytes,
    bScale: number | Float32Array,
    bZeroPoint: ZeroPoints,
    yScale: number,
    yZeroPoint: number,
    ySigned: boolean,
    m: number,
    k: number,
    n: number,
  ): Bytes {
    checkLength(a, m * k, "A");
    checkLength(b, k * n, "B");
    return this.scoped(() => {
      const packed = this.packInto(b, k, n, bZeroPoint);
      const scales = typeof bScale === "number" ? Float32Array.of(bScale) : bScale;
      const sp = this.put(scales);
      return this.gemm(a, m, k, aZeroPoint, packed.ptr, n, (acc) => {
        const yp = this.alloc(m * n);
        this.abi.requantize(
          acc,
          m,
          n,
          aScale,
          sp,
          scales.length > 1 ? 1 : 0,
          yScale,
          yZeroPoint,
          ySigned ? 1 : 0,
          yp,
        );
        return ySigned ? this.take(Int8Array, yp, m * n) : this.take(Uint8Array, yp, m * n);
      });
    });
  }

  /**
   * Packs K×N int8 weights (row-major, as MatMul's B; zero point 0) for
   * `fusedLinear` and `matMulPacked`. The packed copy stays in WASM memory
   * until `reset()`.
   */
  packWeights(w: Int8Array, k: number, n: number): PackedWeights {
    checkLength(w, k * n, "W");
    const packed = this.packInto(w, k, n, 0);
    this.abi.release(packed.ptr + packed.bytes); // keep the packed block, free the staging copies
    return packed;
  }

  /** Packs K×N int8 weights and returns the packed bytes (what an int8 plan stores). */
  packedWeightBytes(w: Int8Array, k: number, n: number): Uint8Array {
    return this.scoped(() => {
      const packed = this.packInto(w, k, n, 0);
      return this.take(Uint8Array, packed.ptr, packed.bytes);
    });
  }

  /** Copies weights packed by `packedWeightBytes` into WASM memory (until `reset()`). */
  loadPackedWeights(bytes: Uint8Array, k: number, n: number): PackedWeights {
    const expected = this.abi.packedBytes(k, n);
    if (bytes.byteLength !== expected) {
      throw invalid(`packed weights for ${k}×${n} are ${expected} bytes, not ${bytes.byteLength}`);
    }
    return { ptr: this.put(bytes), k, n, bytes: expected };
  }

  /**
   * The fused layer: act(dequant(dynamic_quant(x) · W) + bias) in f32, with
   * per-output-channel weight scales. `x` is M×K row-major.
   */
  fusedLinear(
    x: Float32Array,
    m: number,
    weights: PackedWeights,
    wScales: Float32Array,
    bias: Float32Array | undefined,
    activation: Activation,
  ): Float32Array {
    const { k, n } = weights;
    checkLength(x, m * k, "x");
    checkLength(wScales, n, "weight scales");
    if (bias) checkLength(bias, n, "bias");
    return this.scoped(() => {
      const xp = this.put(x);
      const sp = this.put(wScales);
      const bp = bias ? this.put(bias) : 0;
      const yp = this.alloc(m * n * 4);
      const scratch = this.alloc(this.abi.fusedScratchBytes(m, k, n));
      const status = this.abi.fusedLinear(
        xp,
        m,
        k,
        weights.ptr,
        n,
        sp,
        bp,
        ACTIVATION_CODE[activation],
        yp,
        scratch,
      );
      if (status !== 0) throw invalid("cannot quantise NaN or infinite values");
      return this.take(Float32Array, yp, m * n);
    });
  }

  /**
   * A dense layer kept in WASM memory (packed weights, scales and bias copied
   * once), for `runLayers`. Lives until `reset()`.
   */
  residentLayer(
    packedWeights: Uint8Array,
    k: number,
    n: number,
    scales: Float32Array,
    bias: Float32Array | undefined,
    activation: Activation,
  ): ResidentLayer {
    checkLength(scales, n, "weight scales");
    if (bias) checkLength(bias, n, "bias");
    const weights = this.loadPackedWeights(packedWeights, k, n);
    return {
      weights,
      scalesPtr: this.put(scales),
      biasPtr: bias ? this.put(bias) : 0,
      activation: ACTIVATION_CODE[activation],
    };
  }

  /**
   * Runs `x` ([batch, k₀] row-major) through resident layers without leaving
   * WASM memory between them; `after(i, values)` may rewrite layer i's output
   * in place (activations the kernel does not fuse). Returns a copy of the last output.
   */
  runLayers(
    x: Float32Array,
    batch: number,
    layers: readonly ResidentLayer[],
    after?: (index: number, values: Float32Array) => void,
  ): Float32Array {
    return this.scoped(() => {
      let input = this.put(x);
      let width = layers[0]!.weights.k;
      checkLength(x, batch * width, "x");
      let output = input;
      layers.forEach((layer, i) => {
        const { k, n, ptr } = layer.weights;
        if (k !== width) throw invalid(`layer ${i} takes ${k} values per row, not ${width}`);
        output = this.alloc(batch * n * 4);
        const scratch = this.alloc(this.abi.fusedScratchBytes(batch, k, n));
        const status = this.abi.fusedLinear(
          input,
          batch,
          k,
          ptr,
          n,
          layer.scalesPtr,
          layer.biasPtr,
          layer.activation,
          output,
          scratch,
        );
        if (status !== 0) throw invalid("cannot quantise NaN or infinite values");
        // No allocation between here and the callback: the view stays valid.
        after?.(i, new Float32Array(this.abi.memory.buffer, output, batch * n));
        input = output;
        width = n;
      });
      return this.take(Float32Array, output, batch * width);
    });
  }

  /**
   * Writes the table `denseChain` walks, for layers whose activations the
   * kernel fuses (ReLU or none); lives until `reset()`.
   */
  residentChain(layers: readonly ResidentLayer[], maxRows: number): ResidentChain {
    const table = new Uint32Array(layers.length * 6);
    layers.forEach((layer, i) => {
      table.set(
        [
          layer.weights.k,
          layer.weights.n,
          layer.weights.ptr,
          layer.scalesPtr,
          layer.biasPtr,
          layer.activation,
        ],
        i * 6,
      );
    });
    // Input, output and scratch for `maxRows` rows, allocated once: a request
    // then costs one copy in, one kernel call and one copy out. Smaller
    // batches fit in the same scratch (its layout only grows with the rows).
    const k = layers[0]!.weights.k;
    const n = layers.at(-1)!.weights.n;
    const widest = Math.max(...layers.map((l) => l.weights.n));
    const fused = Math.max(
      ...layers.map((l) => this.abi.fusedScratchBytes(maxRows, l.weights.k, l.weights.n)),
    );
    return {
      table: this.put(table),
      layers,
      maxRows,
      inWidth: k,
      outWidth: n,
      x: this.alloc(maxRows * k * 4),
      y: this.alloc(maxRows * n * 4),
      scratch: this.alloc(this.abi.denseChainScratchBytes(maxRows, widest, fused)),
    };
  }

  /** The module's memory as floats, re-made only when the memory has grown. */
  private floats = new Float32Array(0);
  private floatView(): Float32Array {
    // Growing the memory detaches the old buffer (length 0): only then ask for the new one.
    if (this.floats.length === 0) this.floats = new Float32Array(this.abi.memory.buffer);
    return this.floats;
  }

  /**
   * Runs `x` ([batch, k₀] row-major, batch ≤ the chain's `maxRows`) through
   * the whole chain in one kernel call. Returns a copy of the output.
   */
  runChain(x: Float32Array, batch: number, chain: ResidentChain): Float32Array {
    const { inWidth: k, outWidth: n } = chain;
    checkLength(x, batch * k, "x");
    if (batch > chain.maxRows) {
      throw invalid(`the chain runs at most ${chain.maxRows} rows per call; got ${batch}`);
    }
    // The kernel allocates nothing, so one view serves before and after the call.
    const floats = this.floatView();
    floats.set(x, chain.x >>> 2);
    if (
      this.abi.denseChain(
        chain.table,
        chain.layers.length,
        chain.x,
        batch,
        chain.y,
        chain.scratch,
      ) !== 0
    ) {
      throw invalid("cannot quantise NaN or infinite values");
    }
    const start = chain.y >>> 2;
    return floats.slice(start, start + batch * n);
  }

  /** Frees everything, packed weights included. */
  reset(): void {
    this.abi.release(this.base);
  }

  private packInto(b: Bytes, k: number, n: number, zeroPoint: ZeroPoints): PackedWeights {
    const signed = b instanceof Int8Array;
    const bytes = this.abi.packedBytes(k, n);
    const ptr = this.alloc(bytes);
    const bp = this.put(b);
    const zp = this.putZeroPoints(zeroPoint, signed);
    this.abi.packColumns(bp, k, n, signed ? 1 : 0, zp, typeof zeroPoint === "number" ? 0 : 1, ptr);
    return { ptr, k, n, bytes };
  }

  private gemm<T>(
    a: Bytes,
    m: number,
    k: number,
    zeroPoint: ZeroPoints,
    packed: number,
    n: number,
    finish: (acc: number) => T,
  ): T {
    const signed = a instanceof Int8Array;
    const ap = this.put(a);
    const zp = this.putZeroPoints(zeroPoint, signed);
    const a16 = this.alloc(m * paddedK(k) * 2);
    this.abi.widenRows(ap, m, k, signed ? 1 : 0, zp, typeof zeroPoint === "number" ? 0 : 1, a16);
    const acc = this.alloc(m * n * 4);
    this.abi.gemmI16(a16, m, k, packed, n, acc);
    return finish(acc);
  }
}

function checkLength(data: ArrayLike<number>, expected: number, what: string): void {
  if (data.length !== expected) {
    throw invalid(`${what} has ${data.length} elements; expected ${expected}`);
  }
}

function splitAxis(shape: readonly number[], axis: number, length: number) {
  const rank = shape.length;
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw invalid(`axis ${axis} is out of range for rank ${rank}`);
  const outer = shape.slice(0, a).reduce((x, y) => x * y, 1);
  const channels = shape[a]!;
  const inner = shape.slice(a + 1).reduce((x, y) => x * y, 1);
  if (outer * channels * inner !== length)
    throw invalid(`shape [${shape}] does not match ${length} elements`);
  return { outer, channels, inner };
}
