/**
 * @module
 * Builds small ONNX models in tests (with onnx-proto's protobuf bindings) and
 * runs them in onnxruntime-web in Node, as the reference the kernels must match.
 */
import pkg from "onnx-proto";
import * as ort from "onnxruntime-web";

const { onnx } = pkg;

ort.env.wasm.numThreads = 1;
ort.env.logLevel = "error";

export { ort };

/** ONNX TensorProto.DataType values used here. */
export const ElemType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6 } as const;

export type Dim = number | string;
export interface ValueSpec {
  name: string;
  type: number;
  dims: Dim[];
}
export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, number>;
}

const valueInfo = ({ name, type, dims }: ValueSpec) => ({
  name,
  type: {
    tensorType: {
      elemType: type,
      shape: { dim: dims.map((d) => (typeof d === "string" ? { dimParam: d } : { dimValue: d })) },
    },
  },
});

export function buildModel(
  nodes: NodeSpec[],
  inputs: ValueSpec[],
  outputs: ValueSpec[],
  opset = 13,
): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 7,
    producerName: "pinion-tests",
    opsetImport: [{ domain: "", version: opset }],
    graph: {
      name: "test",
      node: nodes.map((n, i) => ({
        name: `${n.op}_${i}`,
        opType: n.op,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attributes ?? {}).map(([name, i]) => ({
          name,
          type: onnx.AttributeProto.AttributeType.INT,
          i,
        })),
      })),
      input: inputs.map(valueInfo),
      output: outputs.map(valueInfo),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** Creates a session with graph optimisations off, so every node runs as written. */
export function session(model: Uint8Array): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, { graphOptimizationLevel: "disabled" });
}
