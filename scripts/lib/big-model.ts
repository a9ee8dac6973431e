/**
 * @module
 * An oversized ONNX model made on demand (never committed): one `MatMul` of an
 * input `[batch, K]` by a float32 initializer `W` of `[K, N]`, by default
 * 8192 × 9216 (302 MB of weights), far over the edge budget, so `pinion
 * publish` places it on the GPU origin.
 *
 * The weights come from a closed formula whose values are small integers over
 * 4096, exact in float32 and in JSON; a one-hot input at index k therefore
 * yields exactly row k of W (every other product is an exact zero), which
 * `bigModelRow` computes without the file.
 *
 * The file is written as protobuf by hand: the small parts (model, graph,
 * tensor headers) are encoded by onnx-proto, and the nested lengths are
 * computed up front, so the 300 MB of raw data is streamed to disk a few MB at
 * a time and never held whole (one copy of a chunk, not of the model).
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { endianness } from "node:os";
import pkg from "onnx-proto";
import { ElemType } from "../../convert/onnx";

const { onnx } = pkg;

export interface BigModelShape {
  /** Input features: rows of W. */
  k: number;
  /** Output features: columns of W. */
  n: number;
}

/** 8192 × 9216 float32 weights: 301,989,888 bytes. */
export const BIG_MODEL_SHAPE: BigModelShape = { k: 8192, n: 9216 };
export const BIG_MODEL_INPUT = "input";
export const BIG_MODEL_OUTPUT = "output";

const MODULUS = 65521; // the largest prime below 2^16
const ROW_FACTOR = 7919;
const COLUMN_FACTOR = 104729;

/**
 * W[k][n] = ((7919·k + 104729·n) mod 65521 − 32760) / 4096: an integer in
 * [−32760, 32760] over a power of two, so exact in float32 (and printed exactly
 * by JSON), distinct enough that a wrong row or column cannot go unnoticed.
 */
export function bigModelWeight(k: number, n: number): number {
  return (
    (((((ROW_FACTOR * k) % MODULUS) + ((COLUMN_FACTOR * n) % MODULUS)) % MODULUS) - 32760) / 4096
  );
}

/** Row k of W: exactly what the model answers for a one-hot input at index k. */
export function bigModelRow(k: number, shape: BigModelShape = BIG_MODEL_SHAPE): Float32Array {
  const row = new Float32Array(shape.n);
  fillRow(row, k, columnTerms(shape.n));
  return row;
}

/** A one-hot input row of length K (1 at index k), as the OIP `data` of one row. */
export function oneHot(k: number, shape: BigModelShape = BIG_MODEL_SHAPE): number[] {
  const row = new Array<number>(shape.k).fill(0);
  row[k] = 1;
  return row;
}

function columnTerms(n: number): Uint32Array {
  const terms = new Uint32Array(n);
  for (let j = 0; j < n; j++) terms[j] = (COLUMN_FACTOR * j) % MODULUS;
  return terms;
}

function fillRow(target: Float32Array, k: number, terms: Uint32Array, offset = 0): void {
  const base = (ROW_FACTOR * k) % MODULUS;
  for (let j = 0; j < terms.length; j++) {
    let v = base + terms[j]!;
    if (v >= MODULUS) v -= MODULUS;
    target[offset + j] = (v - 32760) / 4096;
  }
}

function varint(value: number): Uint8Array {
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return Uint8Array.from(bytes);
}

/** A length-delimited field's tag (wire type 2). */
const lengthDelimited = (field: number) => varint((field << 3) | 2);

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
};

// Field numbers in onnx.proto.
const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const TENSOR_RAW_DATA = 9;

export interface BigModelFile {
  path: string;
  bytes: number;
  sha256: string;
  shape: BigModelShape;
}

export interface WriteBigModelOptions {
  shape?: BigModelShape;
  /** Rows of W per write (default: about 4 MB worth). */
  rowsPerChunk?: number;
}

/**
 * Writes the model to `path` (created, or replaced) and returns its size and
 * sha256, computed on the way. Deterministic: the same shape always gives the
 * same bytes.
 */
export async function writeBigModel(
  path: string,
  options: WriteBigModelOptions = {},
): Promise<BigModelFile> {
  const shape = options.shape ?? BIG_MODEL_SHAPE;
  const { k, n } = shape;
  if (!Number.isInteger(k) || !Number.isInteger(n) || k < 1 || n < 1) {
    throw new Error(`the big model's shape must be positive integers, not ${k} × ${n}`);
  }
  // Float32Array writes host byte order; ONNX raw data is little-endian.
  if (endianness() !== "LE") throw new Error("writing the big model needs a little-endian host");
  const rawBytes = k * n * 4;
  if (rawBytes >= 2 ** 31) throw new Error("protobuf messages must stay under 2 GiB");

  const tensorHead = onnx.TensorProto.encode({
    name: "W",
    dataType: ElemType.FLOAT,
    dims: [k, n],
  }).finish();
  const rawHead = concat(lengthDelimited(TENSOR_RAW_DATA), varint(rawBytes));
  const tensorBytes = tensorHead.byteLength + rawHead.byteLength + rawBytes;

  const tensorType = (dims: (number | string)[]) => ({
    tensorType: {
      elemType: ElemType.FLOAT,
      shape: {
        dim: dims.map((d) => (typeof d === "string" ? { dimParam: d } : { dimValue: d })),
      },
    },
  });
  const graphHead = onnx.GraphProto.encode({
    name: "big_matmul",
    node: [
      {
        name: "matmul",
        opType: "MatMul",
        input: [BIG_MODEL_INPUT, "W"],
        output: [BIG_MODEL_OUTPUT],
      },
    ],
    input: [{ name: BIG_MODEL_INPUT, type: tensorType(["batch", k]) }],
    output: [{ name: BIG_MODEL_OUTPUT, type: tensorType(["batch", n]) }],
  }).finish();
  const initializerHead = concat(lengthDelimited(GRAPH_INITIALIZER), varint(tensorBytes));
  const graphBytes = graphHead.byteLength + initializerHead.byteLength + tensorBytes;

  const modelHead = onnx.ModelProto.encode({
    irVersion: 7,
    producerName: "pinion-big-model",
    opsetImport: [{ domain: "", version: 13 }],
  }).finish();
  const header = concat(
    modelHead,
    lengthDelimited(MODEL_GRAPH),
    varint(graphBytes),
    graphHead,
    initializerHead,
    tensorHead,
    rawHead,
  );

  const hash = createHash("sha256");
  const file = await open(path, "w");
  try {
    hash.update(header);
    await file.write(header);
    const rowsPerChunk = Math.max(1, options.rowsPerChunk ?? Math.floor((4 << 20) / (n * 4)));
    const chunk = new Float32Array(rowsPerChunk * n);
    const terms = columnTerms(n);
    for (let row = 0; row < k; row += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, k - row);
      for (let r = 0; r < rows; r++) fillRow(chunk, row + r, terms, r * n);
      const bytes = new Uint8Array(chunk.buffer, 0, rows * n * 4);
      hash.update(bytes);
      await file.write(bytes);
    }
  } finally {
    await file.close();
  }
  return {
    path,
    bytes: header.byteLength + rawBytes,
    sha256: hash.digest("hex"),
    shape,
  };
}
