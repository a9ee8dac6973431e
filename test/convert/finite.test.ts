import pkg from "onnx-proto";
import { describe, expect, it } from "vitest";
import { assertFiniteWeights, nonFiniteWeights } from "../../convert/finite";
import { ElemType, buildModel } from "../../convert/onnx";
import { PinionError } from "../../core/errors";

const { onnx } = pkg;

const identity = (initializers: Parameters<typeof buildModel>[4]) =>
  buildModel(
    [{ op: "Identity", inputs: ["x"], outputs: ["y"] }],
    [{ name: "x", type: ElemType.FLOAT, dims: [1] }],
    [{ name: "y", type: ElemType.FLOAT, dims: [1] }],
    13,
    initializers,
  );

describe("nonFiniteWeights", () => {
  it("finds NaN and ±Infinity in float32, float64, float16 and bfloat16 initializers", () => {
    const model = identity([
      { name: "ok", type: ElemType.FLOAT, dims: [3], data: Float32Array.of(1, -3.4e38, 1e-45) },
      {
        name: "w",
        type: ElemType.FLOAT,
        dims: [6],
        data: Float32Array.of(0, 1, NaN, 2, NaN, Infinity),
      },
      { name: "d", type: ElemType.DOUBLE, dims: [2], data: Float64Array.of(1e300, -Infinity) },
      // float16: 0x7bff is the largest finite, 0x7e00 NaN, 0xfc00 -Infinity
      {
        name: "h",
        type: ElemType.FLOAT16,
        dims: [3],
        data: Uint16Array.of(0x7bff, 0xfc00, 0x7e00),
      },
      // bfloat16: 0x7f7f is finite, 0x7f80 +Infinity
      { name: "b", type: ElemType.BFLOAT16, dims: [2], data: Uint16Array.of(0x7f7f, 0x7f80) },
      // integers are never NaN, whatever their bits
      { name: "i", type: ElemType.INT32, dims: [1], data: Int32Array.of(0x7fc00000) },
    ]);
    expect(nonFiniteWeights(model)).toEqual([
      { tensor: "w", count: 3, firstIndex: 2, first: NaN },
      { tensor: "d", count: 1, firstIndex: 1, first: -Infinity },
      { tensor: "h", count: 2, firstIndex: 1, first: -Infinity },
      { tensor: "b", count: 1, firstIndex: 1, first: Infinity },
    ]);
  });

  it("finds them in typed fields and in Constant nodes, and passes finite models", () => {
    const model = onnx.ModelProto.encode(
      onnx.ModelProto.create({
        irVersion: 7,
        opsetImport: [{ domain: "", version: 13 }],
        graph: {
          name: "g",
          initializer: [
            { name: "typed", dataType: ElemType.FLOAT, dims: [2], floatData: [1, NaN] },
          ],
          node: [
            {
              opType: "Constant",
              output: ["c"],
              attribute: [
                {
                  name: "value",
                  type: onnx.AttributeProto.AttributeType.TENSOR,
                  t: { dataType: ElemType.FLOAT, dims: [1], floatData: [Infinity] },
                },
              ],
            },
          ],
        },
      }),
    ).finish();
    expect(nonFiniteWeights(model)).toEqual([
      { tensor: "typed", count: 1, firstIndex: 1, first: NaN },
      { tensor: "c", count: 1, firstIndex: 0, first: Infinity },
    ]);
    const finite = identity([
      { name: "w", type: ElemType.FLOAT, dims: [2], data: Float32Array.of(1, 2) },
    ]);
    expect(nonFiniteWeights(finite)).toEqual([]);
    expect(() => assertFiniteWeights(finite)).not.toThrow();
  });

  it("refuses with a message naming the tensor, the count and the first index", () => {
    const model = identity([
      {
        name: "fc1.weight",
        type: ElemType.FLOAT,
        dims: [4],
        data: Float32Array.of(0, NaN, 1, NaN),
      },
    ]);
    let error: unknown;
    try {
      assertFiniteWeights(model, "--allow-non-finite publishes it anyway");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PinionError);
    expect((error as PinionError).kind).toBe("invalid_argument");
    expect((error as PinionError).message).toBe(
      `the model's weights are not all finite: tensor "fc1.weight" holds 2 non-finite values ` +
        `(the first, NaN, at index 1); the version would answer nulls ` +
        `(--allow-non-finite publishes it anyway)`,
    );
  });
});
