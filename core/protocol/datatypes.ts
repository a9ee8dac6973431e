/**
 * @module
 * Open Inference Protocol tensor datatypes and how Pinion stores each in memory.
 */

/** Datatypes Pinion holds in memory, as tensors reach and leave its runtimes. */
export const DATATYPES = [
  "BOOL",
  "UINT8",
  "UINT16",
  "UINT32",
  "UINT64",
  "INT8",
  "INT16",
  "INT32",
  "INT64",
  "FP32",
  "FP64",
] as const;

export type Datatype = (typeof DATATYPES)[number];

/**
 * Every OIP datatype a request may carry, as JSON or binary tensor data:
 * Pinion's in-memory datatypes plus FP16 and BF16 (rounded to the type, then
 * widened exactly to FP32 on decoding) and BYTES (strings in JSON; in binary,
 * each element a 4-byte little-endian length, then the bytes).
 */
export const WIRE_DATATYPES = [...DATATYPES, "FP16", "BF16", "BYTES"] as const;

export type WireDatatype = (typeof WIRE_DATATYPES)[number];

/** Bytes per element in binary tensor data (BYTES elements vary: see WIRE_DATATYPES). */
export const ELEMENT_BYTES: Record<Exclude<WireDatatype, "BYTES">, number> = {
  BOOL: 1,
  UINT8: 1,
  UINT16: 2,
  UINT32: 4,
  UINT64: 8,
  INT8: 1,
  INT16: 2,
  INT32: 4,
  INT64: 8,
  FP16: 2,
  BF16: 2,
  FP32: 4,
  FP64: 8,
};

export function isWireDatatype(value: string): value is WireDatatype {
  return (WIRE_DATATYPES as readonly string[]).includes(value);
}

export type TensorData =
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Float32Array
  | Float64Array;

/** A dense, row-major tensor. BOOL is stored as one byte per element (0 or 1). */
export interface Tensor {
  name: string;
  datatype: Datatype;
  shape: number[];
  data: TensorData;
}

/**
 * A BYTES tensor: row-major strings (each element's bytes are its UTF-8
 * encoding). What the classification extension answers with.
 */
export interface BytesTensor {
  name: string;
  datatype: "BYTES";
  shape: number[];
  data: string[];
}

/** A tensor's declared signature; -1 marks a dynamic dimension. */
export interface TensorSpec {
  name: string;
  datatype: Datatype;
  shape: number[];
}

export function isDatatype(value: string): value is Datatype {
  return (DATATYPES as readonly string[]).includes(value);
}

export function allocate(datatype: Datatype, length: number): TensorData {
  switch (datatype) {
    case "BOOL":
    case "UINT8":
      return new Uint8Array(length);
    case "UINT16":
      return new Uint16Array(length);
    case "UINT32":
      return new Uint32Array(length);
    case "UINT64":
      return new BigUint64Array(length);
    case "INT8":
      return new Int8Array(length);
    case "INT16":
      return new Int16Array(length);
    case "INT32":
      return new Int32Array(length);
    case "INT64":
      return new BigInt64Array(length);
    case "FP32":
      return new Float32Array(length);
    case "FP64":
      return new Float64Array(length);
  }
}

/** Inclusive integer range of each integer datatype (64-bit ones limited to JS safe integers). */
export const INTEGER_RANGE: Partial<Record<Datatype, readonly [number, number]>> = {
  UINT8: [0, 0xff],
  UINT16: [0, 0xffff],
  UINT32: [0, 0xffffffff],
  UINT64: [0, Number.MAX_SAFE_INTEGER],
  INT8: [-0x80, 0x7f],
  INT16: [-0x8000, 0x7fff],
  INT32: [-0x80000000, 0x7fffffff],
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};
