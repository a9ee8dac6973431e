/**
 * @module
 * Builds small ONNX graphs (with onnx-proto's protobuf bindings) and runs them
 * in onnxruntime-web in Node: the reference the kernels are tested against and
 * the peer they are benchmarked against.
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

/** A constant tensor stored in the graph (weights), as little-endian raw data. */
export interface Initializer {
  name: string;
  type: number;
  dims: number[];
  data: ArrayBufferView;
}

export function buildModel(
  nodes: NodeSpec[],
  inputs: ValueSpec[],
  outputs: ValueSpec[],
  opset = 13,
  initializers: Initializer[] = [],
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
      initializer: initializers.map(({ name, type, dims, data }) => ({
        name,
        dataType: type,
        dims,
        rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      })),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Creates a session. Tests turn graph optimisations off, so every node runs as
 * written; benchmarks leave them on, ORT at its best.
 */
export function session(model: Uint8Array, optimize = false): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, {
    graphOptimizationLevel: optimize ? "all" : "disabled",
  });
}
