import { readFileSync } from "node:fs";
import pkg from "onnx-proto";
import { describe, expect, it } from "vitest";
import { ElemType, buildModel, inspectOnnx } from "../../convert/onnx";

const { onnx } = pkg;
const fixture = (path: string) =>
  new Uint8Array(readFileSync(new URL(`../../fixtures/${path}`, import.meta.url)));

describe("inspectOnnx", () => {
  it("reads the signature, operator sets and operators of real PyTorch exports", () => {
    const simple = inspectOnnx(fixture("seed-simple/simple_model.onnx"));
    expect(simple.inputs).toEqual([{ name: "input", datatype: "FP32", shape: [-1, 10] }]);
    expect(simple.outputs).toEqual([{ name: "output", datatype: "FP32", shape: [-1, 10] }]);
    expect(simple.opsets).toEqual({ "": 13 });
    expect(simple.operators).toEqual(["Gemm", "Relu"]);
    expect([...simple.initializers.keys()]).toEqual([
      "layer1.weight",
      "layer1.bias",
      "layer2.weight",
      "layer2.bias",
    ]);
    const cnn = inspectOnnx(fixture("digits-cnn/digits_cnn.onnx"));
    expect(cnn.inputs[0]!.shape).toEqual([-1, 1, 8, 8]);
    expect(cnn.operators).toEqual(["Conv", "Flatten", "Gemm", "MaxPool", "Relu"]);
  });

  it("refuses empty, truncated and non-ONNX files", () => {
    const model = fixture("digits-mlp/digits_mlp.onnx");
    expect(() => inspectOnnx(new Uint8Array(0))).toThrow(/the ONNX file is empty/);
    expect(() => inspectOnnx(model.subarray(0, model.length >> 1))).toThrow(
      /not a valid ONNX model/,
    );
    expect(() => inspectOnnx(new TextEncoder().encode("hello, I am not a model"))).toThrow(
      /not a valid ONNX model/,
    );
  });

  it("refuses graphs that read missing tensors or never produce an output", () => {
    const dangling = buildModel(
      [{ op: "Gemm", inputs: ["x", "W"], outputs: ["y"] }],
      [{ name: "x", type: ElemType.FLOAT, dims: ["batch", 2] }],
      [{ name: "y", type: ElemType.FLOAT, dims: ["batch", 2] }],
    );
    expect(() => inspectOnnx(dangling)).toThrow(
      /node 0 \(Gemm\) reads 'W', which is neither a graph input, an initializer nor an earlier node's output/,
    );
    const unproduced = buildModel(
      [{ op: "Relu", inputs: ["x"], outputs: ["r"] }],
      [{ name: "x", type: ElemType.FLOAT, dims: [2] }],
      [{ name: "y", type: ElemType.FLOAT, dims: [2] }],
    );
    expect(() => inspectOnnx(unproduced)).toThrow(/graph output 'y' is never produced/);
  });

  it("refuses unknown operator sets and unservable types", () => {
    const custom = onnx.ModelProto.encode(
      onnx.ModelProto.create({
        irVersion: 7,
        opsetImport: [
          { domain: "", version: 13 },
          { domain: "com.example.secret", version: 1 },
        ],
        graph: {
          name: "g",
          node: [{ opType: "Magic", domain: "com.example.secret", input: ["x"], output: ["y"] }],
          input: [
            { name: "x", type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }] } } } },
          ],
          output: [
            { name: "y", type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }] } } } },
          ],
        },
      }),
    ).finish();
    expect(() => inspectOnnx(custom)).toThrow(/imports operator set 'com.example.secret'/);
    const strings = buildModel(
      [{ op: "Identity", inputs: ["x"], outputs: ["y"] }],
      [{ name: "x", type: ElemType.STRING, dims: [1] }],
      [{ name: "y", type: ElemType.STRING, dims: [1] }],
    );
    expect(() => inspectOnnx(strings)).toThrow(
      /input 'x' has ONNX element type 8, which Pinion cannot serve/,
    );
  });
});
