/**
 * @module
 * One-node ONNX models whose node carries integer-list attributes (Conv's and
 * the pools' kernel_shape, strides, pads), which `buildModel` does not write:
 * the references the CNN kernels are tested and benchmarked against.
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
    [{ op, inputs: [...inputs, ...initializers].map((i) => i.name), outputs: ["y"] }],
    inputs.map(({ name, dims }) => ({ name, type: ElemType.FLOAT, dims })),
    [{ name: "y", type: ElemType.FLOAT, dims: [] }],
    opset,
    initializers.map((i) => ({ ...i, type: ElemType.FLOAT })),
  );
  const model = onnx.ModelProto.decode(bytes);
  model.graph!.output![0]!.type!.tensorType!.shape = null;
  model.graph!.node![0]!.attribute = Object.entries(attributes).map(([name, v]) =>
    typeof v === "number"
      ? { name, type: onnx.AttributeProto.AttributeType.INT, i: v }
      : { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v },
  );
  return new Uint8Array(onnx.ModelProto.encode(model).finish());
}
