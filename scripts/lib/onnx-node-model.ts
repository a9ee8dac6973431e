/**
 * @module
 * One-node ONNX models over f32 tensors with an output of unstated shape
 * (Conv's and the pools' shapes follow their attributes): the references the
 * CNN kernels are tested and benchmarked against.
 */
import pkg from "onnx-proto";
import { ElemType, buildModel } from "../../convert/onnx";

const { onnx } = pkg;

export interface FloatValue {
  name: string;
  dims: number[];
}

/**
 * A model of one `op` node over f32 `inputs` (fed at run time) and f32
 * `initializers` (constants), with output `y` of unstated shape.
 */
export function oneNodeModel(
  op: string,
  inputs: FloatValue[],
  initializers: (FloatValue & { data: Float32Array })[],
  attributes: Record<string, number | number[]>,
  opset = 13,
): Uint8Array {
  const bytes = buildModel(
    [{ op, inputs: [...inputs, ...initializers].map((i) => i.name), outputs: ["y"], attributes }],
    inputs.map(({ name, dims }) => ({ name, type: ElemType.FLOAT, dims })),
    [{ name: "y", type: ElemType.FLOAT, dims: [] }],
    opset,
    initializers.map((i) => ({ ...i, type: ElemType.FLOAT })),
  );
  const model = onnx.ModelProto.decode(bytes);
  model.graph!.output![0]!.type!.tensorType!.shape = null;
  return new Uint8Array(onnx.ModelProto.encode(model).finish());
}
