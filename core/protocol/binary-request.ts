/**
 * @module
 * Triton's binary tensor data extension (`extension_binary_data.md`): a body
 * that is a JSON inference header of `Inference-Header-Content-Length` bytes
 * followed by the tensors' bytes, in the order of the inputs that carry
 * `parameters.binary_data_size`; the raw binary request (header length 0: the
 * whole body is the single input's tensor); and binary outputs in the answer.
 *
 * Every size here comes from the caller and is checked against the body before
 * anything is read or allocated: nothing is read past the body, and the sizes
 * must account for every byte of it. Numeric tensors are copied straight into
 * typed arrays (little-endian, as the extension and every platform Pinion runs
 * on are); FP16 and BF16 are widened exactly to FP32.
 */
import { echo, internal, invalid } from "../errors";
import {
  ELEMENT_BYTES,
  WIRE_DATATYPES,
  isWireDatatype,
  type BytesTensor,
  type Tensor,
  type TensorData,
  type TensorSpec,
  type WireDatatype,
} from "./datatypes";
import { responseJson } from "./response-json";
import type { InferenceRequest, InferenceResponse, Parameters, ResponseOutput } from "./types";

/** The header naming the JSON part's length (HTTP header names are case-insensitive). */
export const HEADER_LENGTH_HEADER = "Inference-Header-Content-Length";

/** Typed arrays view memory in the platform's byte order; the extension's is little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** An input's tensor bytes, cut from the body (a view: nothing is copied until decoded). */
export class BinaryData {
  constructor(readonly bytes: Uint8Array) {}
}

/** A request body split by its header length: the parsed JSON header, then the binary section. */
export interface BinaryBody {
  header: unknown;
  binary: Uint8Array;
}

/** Parses the `Inference-Header-Content-Length` value: a decimal integer ≥ 0. */
export function parseHeaderLength(value: string): number {
  const trimmed = value.trim();
  const length = /^\d{1,15}$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!Number.isSafeInteger(length)) {
    throw invalid(
      `${HEADER_LENGTH_HEADER} is '${echo(value)}'; it must be the JSON header's length in bytes (an integer >= 0)`,
    );
  }
  return length;
}

/** Splits a body into its JSON inference header (`headerLength` > 0 bytes) and the binary rest. */
export function splitBinaryBody(body: Uint8Array, headerLength: number): BinaryBody {
  if (headerLength > body.length) {
    throw invalid(
      `${HEADER_LENGTH_HEADER} is ${headerLength} but the body has only ${body.length} bytes`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(
      body.subarray(0, headerLength),
    );
  } catch {
    throw invalid(`the inference header (the body's first ${headerLength} bytes) is not UTF-8`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (error) {
    throw invalid(
      `the inference header (the body's first ${headerLength} bytes, per ${HEADER_LENGTH_HEADER}) is not valid JSON: ${(error as Error).message}`,
    );
  }
  return { header, binary: body.subarray(headerLength) };
}

/**
 * Gives each input with `parameters.binary_data_size` its bytes from the
 * binary section, in order; the sizes must add up to the section exactly.
 * Without a binary section (no header length), any `binary_data_size` is refused.
 */
export function bindBinaryInputs(request: InferenceRequest, binary: Uint8Array | undefined): void {
  let offset = 0;
  for (const input of request.inputs) {
    const size = input.parameters?.binary_data_size;
    if (size === undefined) continue;
    const what = `input '${echo(input.name)}'`;
    if (binary === undefined) {
      throw invalid(
        `${what} has binary_data_size but the request has no ${HEADER_LENGTH_HEADER} header; send the JSON header's length in it`,
      );
    }
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
      throw invalid(
        `${what} has binary_data_size ${JSON.stringify(size)}; expected an integer >= 0`,
      );
    }
    if (input.data !== undefined) {
      throw invalid(`${what} has both data and binary_data_size; send its tensor one way`);
    }
    if (size > binary.length - offset) {
      throw invalid(
        `${what} has binary_data_size ${size} but only ${binary.length - offset} bytes of binary data remain after the inference header`,
      );
    }
    input.data = new BinaryData(binary.subarray(offset, offset + size));
    offset += size;
  }
  if (binary !== undefined && offset !== binary.length) {
    throw invalid(
      `the body has ${binary.length - offset} bytes after the inference header and the inputs' binary_data_size (${offset} bytes in all) that no input accounts for`,
    );
  }
}

/**
 * A raw binary request (`Inference-Header-Content-Length: 0`): the whole body
 * is the tensor of the model's only input. Its shape is the model's, with at
 * most one dynamic dimension deduced from the byte count (so a batching model
 * [-1, 10] gets as many rows as the body holds); all outputs come back binary.
 */
export function rawBinaryRequest(
  label: string,
  inputs: readonly TensorSpec[],
  body: Uint8Array,
): InferenceRequest {
  if (inputs.length !== 1) {
    throw invalid(
      `a raw binary request (${HEADER_LENGTH_HEADER}: 0) needs a model with one input; ${label} takes ${inputs.length}: send an inference header`,
    );
  }
  const spec = inputs[0]!;
  const size = ELEMENT_BYTES[spec.datatype];
  const dynamic = spec.shape.filter((dim) => dim === -1).length;
  if (dynamic > 1) {
    throw invalid(
      `a raw binary request cannot give ${label}'s input '${spec.name}' a shape: [${spec.shape.join(", ")}] has ${dynamic} dynamic dimensions (at most 1); send an inference header`,
    );
  }
  const fixed = spec.shape.reduce((product, dim) => (dim === -1 ? product : product * dim), 1);
  const rowBytes = fixed * size;
  const fits =
    dynamic === 0
      ? body.length === rowBytes
      : rowBytes === 0
        ? body.length === 0
        : body.length % rowBytes === 0;
  if (!fits) {
    throw invalid(
      `a raw binary request for ${label} has ${body.length} bytes, but input '${spec.name}' [${spec.shape.join(", ")}] of ${spec.datatype} needs ${dynamic === 0 ? "exactly" : "a multiple of"} ${rowBytes}`,
    );
  }
  const rows = rowBytes === 0 ? 0 : body.length / rowBytes;
  const shape = spec.shape.map((dim) => (dim === -1 ? rows : dim));
  return {
    inputs: [
      {
        name: spec.name,
        shape,
        datatype: spec.datatype,
        parameters: { binary_data_size: body.length },
        data: new BinaryData(body),
      },
    ],
    parameters: { binary_data_output: true },
  };
}

/** FP16 bits → FP32 value, for all 65536 patterns (every FP16 value is exactly an FP32 one). */
let halfTable: Float32Array | undefined;
function halves(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    halfTable[h] =
      exponent === 0
        ? sign * mantissa * 2 ** -24
        : exponent === 31
          ? mantissa
            ? NaN
            : sign * Infinity
          : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  return halfTable;
}

/**
 * A fresh, aligned copy of `bytes` (views into the body need not be aligned).
 * `ArrayBuffer.prototype.slice` is one memory copy; in V8 it is about ten times
 * faster than `Uint8Array.prototype.slice` or `set` on a view.
 */
function aligned(bytes: Uint8Array): ArrayBuffer {
  return (bytes.buffer as ArrayBuffer).slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

/**
 * Decodes one input's binary tensor data. `count` is the shape's element
 * count (already checked to be a safe integer); the byte size must match it
 * exactly. FP16 and BF16 become FP32 tensors; BYTES is validated element by
 * element and then refused, since no Pinion model takes it.
 */
export function decodeBinaryTensor(
  name: string,
  datatypeName: string,
  shape: number[],
  count: number,
  bytes: Uint8Array,
): Tensor {
  if (!LITTLE_ENDIAN) throw internal("binary tensor data needs a little-endian platform");
  const what = `input '${echo(name)}'`;
  if (!isWireDatatype(datatypeName)) {
    throw invalid(
      `${what} has unknown datatype '${echo(datatypeName)}'; expected one of ${WIRE_DATATYPES.join(", ")}`,
    );
  }
  const datatype: WireDatatype = datatypeName;
  if (datatype === "BYTES") {
    checkBytesElements(what, count, bytes);
    throw invalid(bytesRefusal(what));
  }
  const expected = count * ELEMENT_BYTES[datatype];
  if (bytes.length !== expected) {
    throw invalid(
      `${what} has ${bytes.length} bytes of binary data, but shape [${shape.join(", ")}] of ${datatype} is ${expected} bytes`,
    );
  }
  const tensor = (type: Tensor["datatype"], data: TensorData): Tensor => ({
    name,
    datatype: type,
    shape: [...shape],
    data,
  });
  switch (datatype) {
    case "BOOL": {
      const bad = bytes.findIndex((b) => b > 1);
      if (bad !== -1) {
        throw invalid(`${what} element ${bad} is byte ${bytes[bad]}; BOOL elements are 0 or 1`);
      }
      return tensor("BOOL", new Uint8Array(aligned(bytes)));
    }
    case "UINT8":
      return tensor(datatype, new Uint8Array(aligned(bytes)));
    case "INT8":
      return tensor(datatype, new Int8Array(aligned(bytes)));
    case "UINT16":
      return tensor(datatype, new Uint16Array(aligned(bytes)));
    case "INT16":
      return tensor(datatype, new Int16Array(aligned(bytes)));
    case "UINT32":
      return tensor(datatype, new Uint32Array(aligned(bytes)));
    case "INT32":
      return tensor(datatype, new Int32Array(aligned(bytes)));
    case "UINT64":
      return tensor(datatype, new BigUint64Array(aligned(bytes)));
    case "INT64":
      return tensor(datatype, new BigInt64Array(aligned(bytes)));
    case "FP32":
      return tensor(datatype, new Float32Array(aligned(bytes)));
    case "FP64":
      return tensor(datatype, new Float64Array(aligned(bytes)));
    case "FP16": {
      const bits = new Uint16Array(aligned(bytes));
      const table = halves();
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[bits[i]!]!;
      return tensor("FP32", out);
    }
    case "BF16": {
      // BF16 is the top half of an FP32: widening is a 16-bit shift, exact.
      const bits = new Uint16Array(aligned(bytes));
      const out = new Uint32Array(count);
      for (let i = 0; i < count; i++) out[i] = bits[i]! << 16;
      return tensor("FP32", new Float32Array(out.buffer));
    }
  }
}

/** Why a BYTES input is refused, whether it came as JSON or as binary data. */
export function bytesRefusal(what: string): string {
  return `${what} is BYTES; Pinion's models take numeric tensors (see the model's metadata for the datatype)`;
}

/** Checks BYTES framing: `count` elements of a 4-byte length and that many bytes, filling `bytes` exactly. */
export function checkBytesElements(what: string, count: number, bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  for (let i = 0; i < count; i++) {
    if (bytes.length - offset < 4) {
      throw invalid(
        `${what} BYTES element ${i} of ${count}: its 4-byte length prefix starts at byte ${offset} but the tensor has ${bytes.length} bytes`,
      );
    }
    const length = view.getUint32(offset, true);
    offset += 4;
    if (length > bytes.length - offset) {
      throw invalid(
        `${what} BYTES element ${i} claims ${length} bytes but only ${bytes.length - offset} remain in the tensor`,
      );
    }
    offset += length;
  }
  if (offset !== bytes.length) {
    throw invalid(
      `${what} has ${bytes.length - offset} bytes after its ${count} BYTES elements; binary_data_size must match them exactly`,
    );
  }
}

/** Whether an output goes back binary: its own `binary_data`, else the request's `binary_data_output`. */
export function wantsBinary(
  output: Parameters | undefined,
  request: Parameters | undefined,
): boolean {
  const own = output?.binary_data;
  if (own !== undefined) {
    if (typeof own !== "boolean")
      throw invalid("an output's binary_data parameter must be true or false");
    return own;
  }
  const all = request?.binary_data_output;
  if (all !== undefined && typeof all !== "boolean") {
    throw invalid("the binary_data_output request parameter must be true or false");
  }
  return all === true;
}

/**
 * FP32 values narrowed to FP16 bits, rounding to nearest, ties to even (as
 * IEEE 754 and numpy's `astype(float16)` do): beyond the FP16 range becomes
 * ±Infinity, below its smallest subnormal ±0; NaN stays NaN.
 */
export function toHalfBits(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exponent = (x >>> 23) & 0xff;
    const mantissa = x & 0x7fffff;
    if (exponent === 0xff) {
      out[i] = sign | 0x7c00 | (mantissa ? 0x200 : 0);
      continue;
    }
    const e = exponent - 112; // the FP16 exponent field (bias 15 instead of 127)
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    // Normal: drop 13 mantissa bits. Subnormal: the whole 24-bit significand shifts by 14 - e.
    const significand = e > 0 ? mantissa : mantissa | 0x800000;
    const shift = e > 0 ? 13 : 14 - e;
    if (shift > 24) {
      out[i] = sign;
      continue;
    }
    let half = (e > 0 ? e << 10 : 0) | (significand >>> shift);
    const rest = significand & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    // A carry out of the mantissa steps the exponent (up to Infinity), as rounding should.
    if (rest > halfway || (rest === halfway && half & 1)) half++;
    out[i] = sign | half;
  }
  return out;
}

/** FP16 bits as the numbers they are (exactly). */
export function halfValues(bits: Uint16Array): Float32Array {
  const table = halves();
  return Float32Array.from(bits, (b) => table[b]!);
}

/**
 * The datatype an output was asked for in (`parameters.datatype`): its own,
 * or FP16 for an FP32 output (narrowed with `toHalfBits`). Anything else is refused.
 */
export function requestedDatatype(
  name: string,
  datatype: string,
  parameters: Parameters | undefined,
): "FP16" | undefined {
  const asked = parameters?.datatype;
  if (asked === undefined || asked === datatype) return undefined;
  if (asked === "FP16" && datatype === "FP32") return "FP16";
  throw invalid(
    `output '${echo(name)}' is ${datatype}; it can be asked for as ${datatype}${datatype === "FP32" ? " or FP16" : ""}, not ${echo(String(asked))}`,
  );
}

/** A tensor's data as binary tensor data (a view, little-endian), and its header entry. */
export function encodeBinaryOutput(
  tensor: Tensor | BytesTensor,
  as?: "FP16",
): { output: ResponseOutput; bytes: Uint8Array } {
  let bytes: Uint8Array;
  if (tensor.datatype === "BYTES") {
    bytes = encodeBytesElements(tensor.data as string[]);
  } else {
    const data = as === "FP16" ? toHalfBits(tensor.data as Float32Array) : tensor.data;
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  return {
    output: {
      name: tensor.name,
      datatype: as ?? tensor.datatype,
      shape: tensor.shape,
      parameters: { binary_data_size: bytes.length },
    },
    bytes,
  };
}

/** BYTES elements as binary data: each a 4-byte little-endian length, then its UTF-8 bytes. */
export function encodeBytesElements(strings: readonly string[]): Uint8Array {
  const encoded = strings.map((text) => new TextEncoder().encode(text));
  const bytes = new Uint8Array(encoded.reduce((sum, e) => sum + 4 + e.length, 0));
  const view = new DataView(bytes.buffer);
  let offset = 0;
  for (const element of encoded) {
    view.setUint32(offset, element.length, true);
    bytes.set(element, offset + 4);
    offset += 4 + element.length;
  }
  return bytes;
}

/** The answer's body: the JSON header, then the binary outputs in order. */
export function binaryResponseBody(
  response: InferenceResponse,
  parts: readonly Uint8Array[],
): { headerLength: number; body: Uint8Array<ArrayBuffer> } {
  const header = new TextEncoder().encode(responseJson(response));
  let total = header.length;
  for (const part of parts) total += part.length;
  const body = new Uint8Array(total);
  body.set(header, 0);
  let offset = header.length;
  for (const part of parts) {
    body.set(part, offset);
    offset += part.length;
  }
  return { headerLength: header.length, body };
}
