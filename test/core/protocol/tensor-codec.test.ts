import { describe, expect, it } from "vitest";
import { PinionError } from "../../../core/errors";
import { decodeBinaryTensor, toHalfBits } from "../../../core/protocol/binary-request";
import { checkAgainstSpec, decodeInput, encodeOutput } from "../../../core/protocol/tensor-codec";
import type { RequestInput } from "../../../core/protocol/types";

/** BF16 by comparing the two neighbours as numbers (an independent reference): nearest, ties to even. */
function nearestBf16(value: number): number {
  const bits = new Uint32Array(Float32Array.of(value).buffer)[0]!;
  const down = bits >>> 16;
  const asFloat = (b: number) => new Float32Array(Uint32Array.of(b << 16).buffer)[0]!;
  const below = Math.abs(value - asFloat(down));
  const above = Math.abs(asFloat(down + 1) - value);
  return below < above || (below === above && down % 2 === 0) ? down : down + 1;
}

const input = (over: Partial<RequestInput>): RequestInput => ({
  name: "x",
  datatype: "FP32",
  shape: [2, 2],
  data: [1, 2, 3, 4],
  ...over,
});

function rejects(over: Partial<RequestInput>, message: RegExp, maxElements = 1000) {
  let caught: unknown;
  try {
    decodeInput(input(over), maxElements);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(PinionError);
  expect((caught as PinionError).kind).toBe("invalid_argument");
  expect((caught as PinionError).message).toMatch(message);
}

describe("decodeInput", () => {
  it("accepts flat and nested row-major data identically", () => {
    const flat = decodeInput(input({ data: [1, 2, 3, 4] }), 100);
    const nested = decodeInput(
      input({
        data: [
          [1, 2],
          [3, 4],
        ],
      }),
      100,
    );
    expect(flat.data).toEqual(new Float32Array([1, 2, 3, 4]));
    expect(nested.data).toEqual(flat.data);
  });

  it("decodes every integer datatype within its range", () => {
    const cases = [
      ["INT8", [-128, 127], Int8Array],
      ["UINT8", [0, 255], Uint8Array],
      ["INT16", [-32768, 32767], Int16Array],
      ["UINT16", [0, 65535], Uint16Array],
      ["INT32", [-2147483648, 2147483647], Int32Array],
      ["UINT32", [0, 4294967295], Uint32Array],
    ] as const;
    for (const [datatype, data, Type] of cases) {
      const tensor = decodeInput(input({ datatype, shape: [2], data: [...data] }), 10);
      expect(tensor.data).toBeInstanceOf(Type);
      expect(Array.from(tensor.data as Int32Array)).toEqual(data);
      rejects({ datatype, shape: [1], data: [data[1] + 1] }, /expected an integer in/);
      rejects({ datatype, shape: [1], data: [data[0] - 1] }, /expected an integer in/);
      rejects({ datatype, shape: [1], data: [1.5] }, /element 0 is 1.5/);
    }
  });

  it("decodes INT64 and UINT64 as BigInt within the JS safe range", () => {
    const big = decodeInput(
      input({ datatype: "INT64", shape: [2], data: [-(2 ** 53 - 1), 2 ** 53 - 1] }),
      10,
    );
    expect(big.data).toEqual(new BigInt64Array([-(2n ** 53n - 1n), 2n ** 53n - 1n]));
    rejects({ datatype: "INT64", shape: [1], data: [2 ** 53] }, /INT64/);
    rejects({ datatype: "UINT64", shape: [1], data: [-1] }, /UINT64/);
  });

  it("decodes FP64 exactly and FP32 rounded to float32", () => {
    const f64 = decodeInput(input({ datatype: "FP64", shape: [1], data: [0.1] }), 10);
    expect(f64.data[0]).toBe(0.1);
    const f32 = decodeInput(input({ shape: [1], data: [0.1] }), 10);
    expect(f32.data[0]).toBe(Math.fround(0.1));
  });

  it("decodes BOOL from true/false only", () => {
    const t = decodeInput(input({ datatype: "BOOL", shape: [3], data: [true, false, true] }), 10);
    expect(t.data).toEqual(new Uint8Array([1, 0, 1]));
    rejects({ datatype: "BOOL", shape: [1], data: [1] }, /true or false/);
  });

  it("refuses values that are not representable", () => {
    rejects({ shape: [1], data: ["1"] }, /element 0 is "1"; expected a number/);
    rejects({ shape: [1], data: [null] }, /element 0 is null/);
    rejects({ shape: [1], data: [1e39] }, /representable as FP32/);
    rejects({ datatype: "FP64", shape: [1], data: [Infinity] }, /finite number/);
    rejects({ shape: [1], data: [[1]] }, /data\[0\] has 1 entries|element 0 is an array|nesting/);
  });

  it("refuses unknown datatypes, naming the ones it takes", () => {
    rejects({ datatype: "FLOAT" }, /unknown datatype 'FLOAT'; expected one of .*FP16, BF16, BYTES/);
  });

  it("takes FP16 and BF16 as JSON numbers, rounded to the type exactly as the binary form carries them", () => {
    // Values that exercise rounding: ties (1 + 2^-11 is halfway between two FP16s), subnormals, large ones.
    const values = [
      0,
      -0,
      1,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      0.1,
      -2.5e-7,
      6e-8,
      65504,
      65519,
      -1234.567,
      3e38,
    ];
    for (const datatype of ["FP16", "BF16"] as const) {
      const usable = datatype === "FP16" ? values.filter((v) => Math.abs(v) < 65520) : values;
      const fromJson = decodeInput(input({ datatype, shape: [usable.length], data: usable }), 1000);
      const floats = Float32Array.from(usable);
      const bits = datatype === "FP16" ? toHalfBits(floats) : Uint16Array.from(floats, nearestBf16);
      const fromBinary = decodeBinaryTensor(
        "x",
        datatype,
        [usable.length],
        usable.length,
        new Uint8Array(bits.buffer),
      );
      expect(fromJson.datatype).toBe("FP32");
      expect(fromJson.data).toEqual(fromBinary.data);
    }
    // Spot checks against numpy's astype(float16): ties to even, and the largest FP16.
    const spot = decodeInput(
      input({ datatype: "FP16", shape: [3], data: [1 + 2 ** -11, 65519, 0.1] }),
      10,
    );
    expect([...spot.data]).toEqual([1, 65504, Math.fround(0.0999755859375)]);
  });

  it("refuses FP16 and BF16 values that round to infinity, and non-numbers", () => {
    rejects(
      { datatype: "FP16", shape: [1], data: [65520] },
      /element 0 is 65520; expected a finite number representable as FP16/,
    );
    rejects({ datatype: "BF16", shape: [1], data: [3.4e38] }, /representable as BF16/);
    rejects({ datatype: "FP16", shape: [1], data: ["1"] }, /element 0 is "1"/);
  });

  it("reads BYTES as JSON strings and refuses them as no model's input, naming the element if it is not a string", () => {
    rejects(
      { datatype: "BYTES", shape: [2], data: ["a", "b"] },
      /input 'x' is BYTES; Pinion's models take numeric tensors/,
    );
    rejects(
      { datatype: "BYTES", shape: [2], data: ["a", 1] },
      /element 1 is 1; BYTES elements are strings/,
    );
    rejects(
      { datatype: "BYTES", shape: [3], data: ["a", "b"] },
      /has 2 data elements but shape \[3\] needs 3/,
    );
  });

  it("refuses bad shapes before allocating", () => {
    rejects({ shape: [-1, 4] }, /shape\[0\] is -1/);
    rejects({ shape: [2.5, 4] }, /shape\[0\] is 2.5/);
    rejects({ shape: ["2", 2] as unknown as number[] }, /shape\[0\] is "2"/);
    rejects({ shape: [1e9, 1e9] }, /has 1000000000000000000 elements; at most 1000/);
    rejects({ shape: new Array(17).fill(1) }, /rank 17/);
  });

  it("checks the element count and the nesting against the shape", () => {
    rejects({ data: [1, 2, 3] }, /has 3 data elements but shape \[2, 2\] needs 4/);
    rejects({ data: [[1, 2], [3]] }, /data\[1\] has 1 entries but shape\[1\] is 2/);
    rejects({ data: [[1, 2], 3] }, /data\[1\] must be an array/);
    rejects({ data: [[1, 2]] }, /data has 1 entries but shape\[0\] is 2/);
    rejects({ data: "1,2,3,4" }, /must be a JSON array/);
  });
});

describe("checkAgainstSpec", () => {
  const spec = { name: "x", datatype: "FP32" as const, shape: [-1, 2] };
  it("accepts any size on dynamic dims and refuses fixed-dim, rank and type mismatches", () => {
    expect(() => checkAgainstSpec(decodeInput(input({}), 10), spec)).not.toThrow();
    const wrongDim = decodeInput(input({ shape: [1, 4] }), 10);
    expect(() => checkAgainstSpec(wrongDim, spec)).toThrow(
      /shape \[1, 4\]; the model expects \[-1, 2\]/,
    );
    const wrongRank = decodeInput(input({ shape: [4] }), 10);
    expect(() => checkAgainstSpec(wrongRank, spec)).toThrow(/the model expects/);
    const wrongType = decodeInput(input({ datatype: "FP64" }), 10);
    expect(() => checkAgainstSpec(wrongType, spec)).toThrow(
      /datatype FP64; the model expects FP32/,
    );
  });
});

describe("encodeOutput", () => {
  it("writes flat JSON data per datatype", () => {
    expect(
      encodeOutput({ name: "b", datatype: "BOOL", shape: [2], data: new Uint8Array([1, 0]) }).data,
    ).toEqual([true, false]);
    expect(
      encodeOutput({ name: "i", datatype: "INT64", shape: [2], data: new BigInt64Array([-3n, 4n]) })
        .data,
    ).toEqual([-3, 4]);
    const out = encodeOutput(
      { name: "f", datatype: "FP32", shape: [1, 1], data: new Float32Array([0.5]) },
      { content_type: "np" },
    );
    expect(out).toEqual({
      name: "f",
      datatype: "FP32",
      shape: [1, 1],
      data: [0.5],
      parameters: { content_type: "np" },
    });
  });
});

describe("decodeInput errors echo at most a little of the input", () => {
  it("a 6 MB element makes an error of a few dozen bytes, not 8 MB", () => {
    const input: RequestInput = {
      name: "x",
      shape: [2],
      datatype: "FP32",
      data: [1, `"${"\\".repeat(6_000_000)}`],
    };
    let error: unknown;
    try {
      decodeInput(input, 100);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PinionError);
    const message = (error as PinionError).message;
    expect(message.length).toBeLessThan(300);
    expect(message).toMatch(
      /^input 'x' element 1 is ".{64,140}"… \(a string of 6000001 chars\); expected a number/,
    );
  });
});
