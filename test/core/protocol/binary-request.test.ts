import { describe, expect, it } from "vitest";
import { PinionError } from "../../../core/errors";
import {
  BinaryData,
  bindBinaryInputs,
  binaryResponseBody,
  decodeBinaryTensor,
  parseHeaderLength,
  halfValues,
  rawBinaryRequest,
  requestedDatatype,
  splitBinaryBody,
  toHalfBits,
  wantsBinary,
} from "../../../core/protocol/binary-request";
import { decodeInput } from "../../../core/protocol/tensor-codec";
import { parseInferenceRequest } from "../../../core/protocol/types";

const utf8 = (text: string) => new TextEncoder().encode(text);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Little-endian bytes of a typed array, written with DataView (independent of the code under test). */
function le(kind: "f32" | "u32" | "i64" | "u16", values: number[]): Uint8Array {
  const size = { f32: 4, u32: 4, i64: 8, u16: 2 }[kind];
  const view = new DataView(new ArrayBuffer(values.length * size));
  values.forEach((v, i) => {
    if (kind === "f32") view.setFloat32(i * size, v, true);
    else if (kind === "u32") view.setUint32(i * size, v, true);
    else if (kind === "u16") view.setUint16(i * size, v, true);
    else view.setBigInt64(i * size, BigInt(v), true);
  });
  return new Uint8Array(view.buffer);
}

function refused(run: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(PinionError);
  expect((caught as PinionError).kind).toBe("invalid_argument");
  expect((caught as PinionError).message).toMatch(message);
}

/** A full body as the extension lays it out, parsed back into a request with bound inputs. */
function parse(header: object, ...tensors: Uint8Array[]) {
  const json = utf8(JSON.stringify(header));
  const { header: parsed, binary } = splitBinaryBody(concat(json, ...tensors), json.length);
  const request = parseInferenceRequest(parsed);
  bindBinaryInputs(request, binary);
  return request;
}

describe("the binary tensor data framing", () => {
  it("splits the extension document's example: a UINT32 [2, 2] and a BOOL [3] tensor", () => {
    const request = parse(
      {
        inputs: [
          {
            name: "input0",
            shape: [2, 2],
            datatype: "UINT32",
            parameters: { binary_data_size: 16 },
          },
          { name: "input1", shape: [3], datatype: "BOOL", parameters: { binary_data_size: 3 } },
        ],
        outputs: [{ name: "output0", parameters: { binary_data: true } }],
      },
      le("u32", [1, 2, 0xffffffff, 7]),
      new Uint8Array([1, 0, 1]),
    );
    const a = decodeInput(request.inputs[0]!, 0);
    const b = decodeInput(request.inputs[1]!, 0);
    expect(a.datatype).toBe("UINT32");
    expect(Array.from(a.data as Uint32Array)).toEqual([1, 2, 0xffffffff, 7]);
    expect(b.datatype).toBe("BOOL");
    expect(Array.from(b.data as Uint8Array)).toEqual([1, 0, 1]);
    expect(wantsBinary(request.outputs![0]!.parameters, request.parameters)).toBe(true);
  });

  it("mixes JSON and binary inputs, taking binary bytes in order", () => {
    const request = parse(
      {
        inputs: [
          { name: "a", shape: [2], datatype: "FP32", parameters: { binary_data_size: 8 } },
          { name: "b", shape: [2], datatype: "INT32", data: [5, -6] },
          { name: "c", shape: [1], datatype: "INT64", parameters: { binary_data_size: 8 } },
        ],
      },
      le("f32", [1.5, -2.25]),
      le("i64", [-(2 ** 40)]),
    );
    expect(Array.from(decodeInput(request.inputs[0]!, 10).data as Float32Array)).toEqual([
      1.5, -2.25,
    ]);
    expect(Array.from(decodeInput(request.inputs[1]!, 10).data as Int32Array)).toEqual([5, -6]);
    expect(Array.from(decodeInput(request.inputs[2]!, 10).data as BigInt64Array)).toEqual([
      -(2n ** 40n),
    ]);
  });

  it("accepts zero-length tensors", () => {
    const request = parse({
      inputs: [
        { name: "a", shape: [0, 10], datatype: "FP32", parameters: { binary_data_size: 0 } },
      ],
    });
    const tensor = decodeInput(request.inputs[0]!, 10);
    expect(tensor.shape).toEqual([0, 10]);
    expect(tensor.data.length).toBe(0);
  });

  it("reads unaligned tensors correctly (a header of odd length)", () => {
    const header = {
      inputs: [{ name: "a", shape: [3], datatype: "FP32", parameters: { binary_data_size: 12 } }],
      id: "x",
    };
    // 1 or 2 extra spaces in the header moves the tensor off a 4-byte boundary.
    for (const pad of ["", " ", "  ", "   "]) {
      const json = utf8(JSON.stringify(header) + pad);
      const { header: parsed, binary } = splitBinaryBody(
        concat(json, le("f32", [0.1, 2, -3])),
        json.length,
      );
      const request = parseInferenceRequest(parsed);
      bindBinaryInputs(request, binary);
      expect(Array.from(decodeInput(request.inputs[0]!, 10).data as Float32Array)).toEqual([
        Math.fround(0.1),
        2,
        -3,
      ]);
    }
  });

  it("refuses a header length beyond the body, and huge or malformed header lengths", () => {
    const body = utf8('{"inputs":[]}');
    refused(() => splitBinaryBody(body, body.length + 1), /is 14 but the body has only 13 bytes/);
    refused(
      () => splitBinaryBody(body, parseHeaderLength("999999999999999")),
      /is 999999999999999 but the body has only 13 bytes/,
    );
    refused(() => parseHeaderLength("99999999999999999999"), /an integer >= 0/);
    refused(() => parseHeaderLength("-1"), /an integer >= 0/);
    refused(() => parseHeaderLength("12abc"), /an integer >= 0/);
    refused(() => parseHeaderLength(""), /an integer >= 0/);
    expect(parseHeaderLength("0")).toBe(0);
  });

  it("refuses a header length that cuts the JSON short, or lands inside a UTF-8 character", () => {
    const json = utf8('{"inputs":[{"name":"é"}]}');
    refused(() => splitBinaryBody(json, 10), /first 10 bytes.*not valid JSON/);
    const cut = json.indexOf(0xc3) + 1;
    refused(() => splitBinaryBody(json, cut), /is not UTF-8/);
  });

  it("refuses sizes that do not add up to the binary section", () => {
    const header = {
      inputs: [{ name: "a", shape: [2], datatype: "FP32", parameters: { binary_data_size: 8 } }],
    };
    refused(
      () => parse(header, le("f32", [1])),
      /input 'a' has binary_data_size 8 but only 4 bytes of binary data remain/,
    );
    refused(
      () => parse(header, le("f32", [1, 2, 3])),
      /4 bytes after the inference header.*that no input accounts for/,
    );
    refused(
      () =>
        parse({
          inputs: [
            { name: "a", shape: [1], datatype: "FP32", parameters: { binary_data_size: 2 ** 53 } },
          ],
        }),
      /binary_data_size 9007199254740992; expected an integer >= 0/,
    );
    refused(
      () =>
        parse({
          inputs: [
            { name: "a", shape: [1], datatype: "FP32", parameters: { binary_data_size: -4 } },
          ],
        }),
      /binary_data_size -4/,
    );
    refused(
      () =>
        parse(
          {
            inputs: [
              {
                name: "a",
                shape: [1],
                datatype: "FP32",
                data: [1],
                parameters: { binary_data_size: 4 },
              },
            ],
          },
          le("f32", [1]),
        ),
      /both data and binary_data_size/,
    );
  });

  it("refuses binary_data_size without a header length", () => {
    const request = parseInferenceRequest({
      inputs: [{ name: "a", shape: [1], datatype: "FP32", parameters: { binary_data_size: 4 } }],
    });
    refused(
      () => bindBinaryInputs(request, undefined),
      /binary_data_size but the request has no Inference-Header-Content-Length header/,
    );
  });

  it("refuses a byte size that does not match shape × datatype", () => {
    const request = parse(
      {
        inputs: [
          { name: "a", shape: [2, 2], datatype: "FP32", parameters: { binary_data_size: 12 } },
        ],
      },
      le("f32", [1, 2, 3]),
    );
    refused(
      () => decodeInput(request.inputs[0]!, 10),
      /input 'a' has 12 bytes of binary data, but shape \[2, 2\] of FP32 is 16 bytes/,
    );
    refused(
      () => decodeInput({ ...request.inputs[0]!, shape: [1e9, 1e9, 1e9] }, 10),
      /1e\+27 elements|bytes of binary data/,
    );
  });

  it("refuses BOOL bytes other than 0 and 1, and unknown datatypes", () => {
    refused(
      () => decodeBinaryTensor("b", "BOOL", [3], 3, new Uint8Array([1, 2, 0])),
      /element 1 is byte 2; BOOL elements are 0 or 1/,
    );
    refused(
      () => decodeBinaryTensor("b", "FP8", [1], 1, new Uint8Array([1])),
      /unknown datatype 'FP8'/,
    );
  });

  it("widens FP16 and BF16 exactly to FP32", () => {
    // FP16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), -0, +inf, NaN, 0.333251953125
    const half = le("u16", [0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x7e00, 0x3555]);
    const fp16 = decodeBinaryTensor("h", "FP16", [8], 8, half);
    expect(fp16.datatype).toBe("FP32");
    const values = Array.from(fp16.data as Float32Array);
    expect(values.slice(0, 4)).toEqual([1, -2, 65504, 2 ** -24]);
    expect(Object.is(values[4], -0)).toBe(true);
    expect(values[5]).toBe(Infinity);
    expect(values[6]).toBeNaN();
    expect(values[7]).toBe(0.333251953125);
    // BF16 is the high half of an FP32: 1.5 = 0x3fc0_0000, -3.140625 = 0xc049_0000.
    const bf16 = decodeBinaryTensor("b", "BF16", [2], 2, le("u16", [0x3fc0, 0xc049]));
    expect(bf16.datatype).toBe("FP32");
    expect(Array.from(bf16.data as Float32Array)).toEqual([1.5, -3.140625]);
    refused(() => decodeBinaryTensor("h", "FP16", [2], 2, half), /16 bytes.*FP16 is 4 bytes/);
  });

  it("checks BYTES element by element: length prefixes within the tensor, nothing left over", () => {
    const element = (text: string) => concat(le("u32", [utf8(text).length]), utf8(text));
    const good = concat(element("ab"), element(""));
    // Well-framed BYTES reaches the datatype check: no Pinion model takes BYTES.
    refused(() => decodeBinaryTensor("s", "BYTES", [2], 2, good), /is BYTES; Pinion's models take/);
    refused(
      () => decodeBinaryTensor("s", "BYTES", [3], 3, good),
      /BYTES element 2 of 3: its 4-byte length prefix starts at byte 10 but the tensor has 10 bytes/,
    );
    refused(
      () => decodeBinaryTensor("s", "BYTES", [1], 1, concat(le("u32", [0xffffffff]), utf8("x"))),
      /BYTES element 0 claims 4294967295 bytes but only 1 remain/,
    );
    refused(
      () => decodeBinaryTensor("s", "BYTES", [1], 1, good),
      /4 bytes after its 1 BYTES elements/,
    );
    refused(
      () => decodeBinaryTensor("s", "BYTES", [1], 1, new Uint8Array([2, 0])),
      /length prefix starts at byte 0 but the tensor has 2 bytes/,
    );
  });

  it("reads the output choice: binary_data per output overrides binary_data_output", () => {
    expect(wantsBinary(undefined, undefined)).toBe(false);
    expect(wantsBinary(undefined, { binary_data_output: true })).toBe(true);
    expect(wantsBinary({ binary_data: false }, { binary_data_output: true })).toBe(false);
    expect(wantsBinary({ binary_data: true }, { binary_data_output: false })).toBe(true);
    refused(() => wantsBinary({ binary_data: "yes" }, undefined), /must be true or false/);
    refused(() => wantsBinary(undefined, { binary_data_output: 1 }), /must be true or false/);
  });

  it("lays out a response: JSON header of the declared length, then the tensors in order", () => {
    const { headerLength, body } = binaryResponseBody(
      { model_name: "m", model_version: "1", outputs: [] },
      [new Uint8Array([1, 2]), new Uint8Array([3])],
    );
    expect(JSON.parse(new TextDecoder().decode(body.subarray(0, headerLength)))).toEqual({
      model_name: "m",
      model_version: "1",
      outputs: [],
    });
    expect(Array.from(body.subarray(headerLength))).toEqual([1, 2, 3]);
  });
});

describe("the raw binary request", () => {
  const spec = (shape: number[]) => [{ name: "input", datatype: "FP32" as const, shape }];

  it("takes the whole body as the one input, deducing one dynamic dimension", () => {
    const request = rawBinaryRequest("m@1", spec([-1, 2]), le("f32", [1, 2, 3, 4, 5, 6]));
    expect(request.inputs[0]!.shape).toEqual([3, 2]);
    expect(request.inputs[0]!.data).toBeInstanceOf(BinaryData);
    expect(request.parameters).toEqual({ binary_data_output: true });
    expect(Array.from(decodeInput(request.inputs[0]!, 0).data as Float32Array)).toEqual([
      1, 2, 3, 4, 5, 6,
    ]);
    expect(rawBinaryRequest("m@1", spec([2, 2]), le("f32", [1, 2, 3, 4])).inputs[0]!.shape).toEqual(
      [2, 2],
    );
  });

  it("refuses bodies that do not fit the model's input, and models it cannot apply to", () => {
    refused(
      () => rawBinaryRequest("m@1", spec([-1, 2]), le("f32", [1, 2, 3])),
      /has 12 bytes, but input 'input' \[-1, 2\] of FP32 needs a multiple of 8/,
    );
    refused(() => rawBinaryRequest("m@1", spec([2, 2]), le("f32", [1, 2, 3])), /needs exactly 16/);
    refused(() => rawBinaryRequest("m@1", spec([-1, -1]), le("f32", [1])), /2 dynamic dimensions/);
    refused(
      () => rawBinaryRequest("m@1", [...spec([1]), ...spec([1])], le("f32", [1])),
      /needs a model with one input; m@1 takes 2/,
    );
  });
});

describe("FP16 outputs", () => {
  it("narrows FP32 to FP16 rounding to nearest, ties to even", () => {
    const bits = toHalfBits(
      Float32Array.from([
        1,
        1 / 3,
        65504,
        65519, // below the halfway point to 65536: the largest FP16
        65520, // halfway to 65536, whose mantissa is even: Infinity
        1e9,
        -1e9,
        2 ** -24,
        2 ** -25, // halfway between 0 and the smallest subnormal: ties to 0
        1.5 * 2 ** -25, // above halfway: the smallest subnormal
        2 ** -30,
        1 + 2 ** -11, // halfway between 1 and the next FP16: ties to even (1)
        1 + 3 * 2 ** -11, // halfway between two FP16s: ties to even (up)
        -0,
        NaN,
        -Infinity,
      ]),
    );
    expect(Array.from(bits)).toEqual([
      0x3c00, 0x3555, 0x7bff, 0x7bff, 0x7c00, 0x7c00, 0xfc00, 0x0001, 0x0000, 0x0001, 0x0000,
      0x3c00, 0x3c02, 0x8000, 0x7e00, 0xfc00,
    ]);
  });

  it("round-trips every FP16 value exactly (FP16 → FP32 → FP16)", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = toHalfBits(halfValues(all));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN) expect(back[h]! & 0x7e00).toBe(0x7e00);
      else if (back[h] !== h)
        expect.fail(`FP16 0x${h.toString(16)} came back as 0x${back[h]!.toString(16)}`);
    }
  });

  it("accepts FP16 for FP32 outputs only", () => {
    expect(requestedDatatype("y", "FP32", { datatype: "FP16" })).toBe("FP16");
    expect(requestedDatatype("y", "FP32", { datatype: "FP32" })).toBeUndefined();
    expect(requestedDatatype("y", "FP32", undefined)).toBeUndefined();
    refused(
      () => requestedDatatype("y", "INT64", { datatype: "FP16" }),
      /output 'y' is INT64; it can be asked for as INT64, not FP16/,
    );
    refused(
      () => requestedDatatype("y", "FP32", { datatype: "BF16" }),
      /as FP32 or FP16, not BF16/,
    );
  });
});
