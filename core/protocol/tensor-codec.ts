/**
 * @module
 * JSON tensor codec for the Open Inference Protocol: request `data` (flat or
 * nested, row-major) to typed arrays, typed arrays back to JSON. Every value from
 * the outside world is checked here, and nothing is allocated from a size the
 * caller claims until that size is bounded.
 */
import { echo, echoJson, invalid, resultTooLarge } from "../errors";
import {
  WIRE_DATATYPES,
  INTEGER_RANGE,
  allocate,
  isDatatype,
  type BytesTensor,
  type Datatype,
  type Tensor,
  type TensorData,
  type TensorSpec,
} from "./datatypes";
import {
  BinaryData,
  bytesRefusal,
  decodeBinaryTensor,
  halfValues,
  toHalfBits,
} from "./binary-request";
import { nonFiniteText } from "./response-json";
import type { Parameters, RequestInput, ResponseOutput } from "./types";

/** Deeper than any real model; stops pathological shapes early. */
export const MAX_RANK = 16;

export function parseDatatype(value: string, what: string): Datatype {
  if (isDatatype(value)) return value;
  throw invalid(
    `${what} has unknown datatype '${echo(value)}'; expected one of ${WIRE_DATATYPES.join(", ")}`,
  );
}

/**
 * Validates a claimed shape and returns its element count. `maxElements` bounds
 * the product, so a shape like [1e9, 1e9] is refused before anything is allocated.
 */
export function checkShape(shape: readonly unknown[], what: string, maxElements: number): number {
  if (shape.length > MAX_RANK) {
    throw invalid(`${what} has rank ${shape.length}; at most ${MAX_RANK} dimensions are supported`);
  }
  let count = 1;
  for (const [axis, dim] of shape.entries()) {
    if (typeof dim !== "number" || !Number.isSafeInteger(dim) || dim < 0) {
      throw invalid(`${what} shape[${axis}] is ${echoJson(dim)}; dimensions must be integers >= 0`);
    }
    count *= dim;
  }
  if (count > maxElements) {
    throw invalid(
      `${what} shape [${shape.join(", ")}] has ${count} elements; at most ${maxElements} fit in one request`,
    );
  }
  return count;
}

/** Decodes one request input into a dense tensor of its declared datatype. */
export function decodeInput(input: RequestInput, maxElements: number): Tensor {
  const what = `input '${echo(input.name)}'`;
  if (input.data instanceof BinaryData) {
    // Bounded by the body: the byte size must match the shape exactly.
    const count = checkShape(input.shape, what, Number.MAX_SAFE_INTEGER);
    return decodeBinaryTensor(input.name, input.datatype, input.shape, count, input.data.bytes);
  }
  const narrow = NARROW_FLOATS[input.datatype];
  const strings = input.datatype === "BYTES";
  const datatype = narrow || strings ? "FP32" : parseDatatype(input.datatype, what);
  const count = checkShape(input.shape, what, maxElements);
  const data = input.data;
  if (!Array.isArray(data)) {
    throw invalid(`${what} data must be a JSON array (flat or nested row-major)`);
  }
  const out = allocate(datatype, count);
  const write = strings
    ? bytesChecker(what)
    : narrow
      ? narrowWriter(input.datatype, out as Float32Array, what)
      : elementWriter(datatype, out, what);
  const nested = data.length > 0 && Array.isArray(data[0]);
  if (!nested) {
    if (data.length !== count) {
      throw invalid(
        `${what} has ${data.length} data elements but shape [${input.shape.join(", ")}] needs ${count}`,
      );
    }
    for (let i = 0; i < count; i++) write(i, data[i]);
  } else {
    const shape = input.shape;
    if (shape.length === 0) throw invalid(`${what} is a scalar (shape []) but data is nested`);
    let next = 0;
    const walk = (level: unknown[], depth: number, path: string): void => {
      if (level.length !== shape[depth]) {
        throw invalid(
          `${what} data${path} has ${level.length} entries but shape[${depth}] is ${shape[depth]}`,
        );
      }
      if (depth === shape.length - 1) {
        for (const value of level) write(next++, value);
        return;
      }
      for (const [i, child] of level.entries()) {
        if (!Array.isArray(child)) {
          throw invalid(`${what} data${path}[${i}] must be an array: nesting must match the shape`);
        }
        walk(child, depth + 1, `${path}[${i}]`);
      }
    };
    walk(data, 0, "");
  }
  if (strings) throw invalid(bytesRefusal(what));
  if (narrow) narrow(out as Float32Array);
  return { name: input.name, datatype, shape: [...input.shape], data: out };
}

/**
 * FP16 and BF16 sent as JSON numbers: each value is rounded to the wire type
 * (to nearest, ties to even) and widened back to FP32 in place, so a tensor
 * reaches the model exactly as the same values sent as binary data would.
 */
const NARROW_FLOATS: Record<string, ((values: Float32Array) => void) | undefined> = {
  FP16: (values) => values.set(halfValues(toHalfBits(values))),
  BF16: (values) => {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < bits.length; i++) {
      const x = bits[i]!;
      // Round the low 16 bits away, to nearest, ties to even (finite values only reach here).
      bits[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) << 16;
    }
  },
};

/**
 * Where rounding to each narrow float type overflows: values of this magnitude
 * or more would become ±Infinity (FP16: 65504 + half a unit; BF16: (2 - 2^-8) · 2^127).
 */
const NARROW_LIMIT: Record<string, number> = { FP16: 65520, BF16: (2 - 2 ** -8) * 2 ** 127 };

function narrowWriter(datatype: string, floats: Float32Array, what: string): Writer {
  const limit = NARROW_LIMIT[datatype]!;
  return (i, v) => {
    if (typeof v !== "number" || !(Math.abs(v) < limit)) {
      const shown = Array.isArray(v) ? "an array" : echoJson(v);
      throw invalid(
        `${what} element ${i} is ${shown}; expected a finite number representable as ${datatype}`,
      );
    }
    floats[i] = v;
  };
}

/** BYTES as JSON: each element a string (checked, so the refusal names the real problem). */
function bytesChecker(what: string): Writer {
  return (i, v) => {
    if (typeof v !== "string") {
      const shown = Array.isArray(v) ? "an array" : echoJson(v);
      throw invalid(`${what} element ${i} is ${shown}; BYTES elements are strings`);
    }
  };
}

type Writer = (index: number, value: unknown) => void;

function elementWriter(datatype: Datatype, out: TensorData, what: string): Writer {
  const bad = (index: number, value: unknown, expected: string): never => {
    const shown = Array.isArray(value) ? "an array" : echoJson(value);
    throw invalid(`${what} element ${index} is ${shown}; expected ${expected}`);
  };
  switch (datatype) {
    case "BOOL": {
      const bytes = out as Uint8Array;
      return (i, v) => {
        if (typeof v !== "boolean") bad(i, v, "true or false (BOOL)");
        bytes[i] = v ? 1 : 0;
      };
    }
    case "FP32": {
      const floats = out as Float32Array;
      return (i, v) => {
        if (typeof v !== "number") bad(i, v, "a number (FP32)");
        const f = Math.fround(v as number);
        if (!Number.isFinite(f)) bad(i, v, "a finite number representable as FP32");
        floats[i] = f;
      };
    }
    case "FP64": {
      const doubles = out as Float64Array;
      return (i, v) => {
        if (typeof v !== "number" || !Number.isFinite(v)) bad(i, v, "a finite number (FP64)");
        doubles[i] = v as number;
      };
    }
    case "INT64":
    case "UINT64": {
      const [lo, hi] = INTEGER_RANGE[datatype]!;
      const big = out as BigInt64Array | BigUint64Array;
      return (i, v) => {
        if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
          bad(i, v, `an integer in [${lo}, ${hi}] (${datatype}, as a JSON number)`);
        }
        big[i] = BigInt(v as number);
      };
    }
    default: {
      const [lo, hi] = INTEGER_RANGE[datatype]!;
      const ints = out as Exclude<
        TensorData,
        BigInt64Array | BigUint64Array | Float32Array | Float64Array
      >;
      return (i, v) => {
        if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
          bad(i, v, `an integer in [${lo}, ${hi}] (${datatype})`);
        }
        ints[i] = v as number;
      };
    }
  }
}

/**
 * Checks a decoded tensor against the model's declared input: same datatype,
 * same rank, and every fixed dimension equal (-1 accepts any size).
 */
export function checkAgainstSpec(tensor: Tensor, spec: TensorSpec): void {
  const what = `input '${tensor.name}'`;
  if (tensor.datatype !== spec.datatype) {
    throw invalid(`${what} has datatype ${tensor.datatype}; the model expects ${spec.datatype}`);
  }
  const fits =
    tensor.shape.length === spec.shape.length &&
    spec.shape.every((dim, axis) => dim === -1 || dim === tensor.shape[axis]);
  if (!fits) {
    throw invalid(
      `${what} has shape [${tensor.shape.join(", ")}]; the model expects [${spec.shape.join(", ")}] (-1 = any size)`,
    );
  }
}

/** Bounds on one response's outputs (MAX_RESPONSE_ELEMENTS, MAX_RESPONSE_BYTES). */
export interface ResponseLimits {
  maxElements: number;
  maxBytes: number;
}

/**
 * Longest JSON text of one element, comma included: a float such as
 * "-0.0000012345678901234567," (JS writes 1e-6 ≤ |x| < 1e21 in full), a 64-bit
 * integer as a double ("-9223372036854776000,"), "false,".
 */
const MAX_JSON_CHARS: Record<Datatype, number> = {
  BOOL: 6,
  FP32: 26,
  FP64: 26,
  INT8: 5,
  UINT8: 4,
  INT16: 7,
  UINT16: 6,
  INT32: 12,
  UINT32: 11,
  INT64: 21,
  UINT64: 21,
};

/** Refuses `elements` output elements over the bound: checked before they are computed, where known. */
export function checkOutputElements(elements: number, limits: ResponseLimits): void {
  if (elements > limits.maxElements) {
    throw resultTooLarge(
      `the answer would have ${elements} output elements; this server sends at most ${limits.maxElements} (MAX_RESPONSE_ELEMENTS): send fewer rows or ask for fewer outputs`,
    );
  }
}

/**
 * Refuses outputs whose JSON data would exceed the bounds, before anything is
 * encoded: the element count first, then the text's length — from the
 * longest an element can be when that fits, else counted element by element
 * (keeping nothing, and stopping at the bound).
 */
export function checkOutputSize(
  tensors: readonly (Tensor | BytesTensor)[],
  limits: ResponseLimits,
): void {
  let elements = 0;
  let longest = 0;
  // BYTES outputs (classification strings, made here and small) are counted exactly.
  let strings = 0;
  for (const tensor of tensors) {
    elements += tensor.data.length;
    if (tensor.datatype === "BYTES") {
      for (const text of tensor.data) strings += utf8.encode(JSON.stringify(text)).byteLength + 1;
    } else {
      longest += tensor.data.length * MAX_JSON_CHARS[tensor.datatype];
    }
  }
  checkOutputElements(elements, limits);
  if (longest + strings <= limits.maxBytes) return;
  let bytes = strings;
  const tooLarge = () =>
    resultTooLarge(
      `the answer's output data would be more than ${limits.maxBytes} bytes of JSON (MAX_RESPONSE_BYTES; ${elements} elements): send fewer rows or ask for fewer outputs`,
    );
  if (bytes > limits.maxBytes) throw tooLarge();
  for (const tensor of tensors) {
    if (tensor.datatype === "BYTES") continue;
    const data = tensor.data;
    for (let i = 0; i < data.length; i++) {
      const value = data[i]!;
      bytes +=
        tensor.datatype === "BOOL"
          ? value
            ? 5
            : 6
          : Number.isFinite(Number(value))
            ? String(Number(value)).length + 1
            : nonFiniteText(Number(value)).length + 3; // "NaN", (see response-json.ts)
      if (bytes > limits.maxBytes) throw tooLarge();
    }
  }
}

const utf8 = new TextEncoder();

/** Encodes a tensor as a flat JSON response output (a BYTES tensor's elements as strings). */
export function encodeOutput(
  tensor: Tensor | BytesTensor,
  parameters?: Parameters,
): ResponseOutput {
  let data: number[] | boolean[] | string[];
  if (tensor.datatype === "BYTES") {
    data = tensor.data;
  } else if (tensor.datatype === "BOOL") {
    data = Array.from(tensor.data as Uint8Array, (v) => v !== 0);
  } else if (tensor.data instanceof BigInt64Array || tensor.data instanceof BigUint64Array) {
    // JSON numbers are doubles: values beyond 2^53 lose precision, as in every JSON OIP server.
    data = Array.from(tensor.data, (v) => Number(v));
  } else {
    data = Array.from(tensor.data);
  }
  return {
    name: tensor.name,
    datatype: tensor.datatype,
    shape: tensor.shape,
    data,
    ...(parameters ? { parameters } : {}),
  };
}
