/**
 * @module
 * The structure check of an ONNX model, shared by `pinion publish` (before
 * uploading) and the admin API (before committing a version): it decodes,
 * imports only operator sets onnxruntime-web can run, every node reads only
 * graph inputs, initializers or earlier outputs, and every graph output is
 * produced. Runs in workerd and in Node (onnx-proto only, no Node built-ins).
 */
import pkg from "onnx-proto";
import { invalid } from "../errors";
import type { Datatype, TensorSpec } from "../protocol/datatypes";

const { onnx } = pkg;

/** ONNX TensorProto.DataType values. */
export const ElemType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const;

const OIP_OF_ELEM: Partial<Record<number, Datatype>> = {
  [ElemType.FLOAT]: "FP32",
  [ElemType.UINT8]: "UINT8",
  [ElemType.INT8]: "INT8",
  [ElemType.UINT16]: "UINT16",
  [ElemType.INT16]: "INT16",
  [ElemType.INT32]: "INT32",
  [ElemType.INT64]: "INT64",
  [ElemType.BOOL]: "BOOL",
  [ElemType.DOUBLE]: "FP64",
  [ElemType.UINT32]: "UINT32",
  [ElemType.UINT64]: "UINT64",
};

/** Operator-set domains onnxruntime-web can run. */
const KNOWN_DOMAINS = new Set(["", "ai.onnx", "ai.onnx.ml", "com.microsoft"]);

export interface OnnxSummary {
  irVersion: number;
  opsets: Record<string, number>;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  initializers: Map<string, { dims: number[]; type: number; raw: Uint8Array }>;
  operators: string[];
}

/**
 * Parses and checks an ONNX model: it decodes, imports only known operator
 * sets, every node reads only graph inputs, initializers or earlier nodes'
 * outputs, and every graph output is produced. Returns its signature.
 */
export function inspectOnnx(bytes: Uint8Array): OnnxSummary {
  return summariseOnnx(decodeOnnxModel(bytes));
}

export type OnnxModel = InstanceType<typeof onnx.ModelProto>;

export function decodeOnnxModel(bytes: Uint8Array): OnnxModel {
  if (bytes.byteLength === 0) throw invalid("the ONNX file is empty");
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (error) {
    throw invalid(
      `not a valid ONNX model (the protobuf does not decode: ${(error as Error).message})`,
    );
  }
}

export function summariseOnnx(model: OnnxModel): OnnxSummary {
  const graph = model.graph;
  const nodes = graph?.node ?? [];
  if (!graph || nodes.length === 0) throw invalid("not a valid ONNX model: it has no graph nodes");

  const opsets: Record<string, number> = {};
  for (const opset of model.opsetImport ?? []) {
    const domain = opset.domain ?? "";
    if (!KNOWN_DOMAINS.has(domain)) {
      throw invalid(
        `the ONNX model imports operator set '${domain}', which onnxruntime-web cannot run`,
      );
    }
    opsets[domain === "ai.onnx" ? "" : domain] = Number(opset.version);
  }
  if (opsets[""] === undefined)
    throw invalid("the ONNX model does not import the default operator set");

  const initializers = new Map<string, { dims: number[]; type: number; raw: Uint8Array }>();
  for (const init of graph.initializer ?? []) {
    initializers.set(init.name ?? "", {
      dims: (init.dims ?? []).map(Number),
      type: init.dataType ?? 0,
      raw: init.rawData ?? new Uint8Array(0),
    });
  }
  const available = new Set<string>(initializers.keys());
  // Before IR 4, initializers were also listed as graph inputs; those are not inputs to feed.
  const graphInputs = (graph.input ?? []).filter((v) => !initializers.has(v.name ?? ""));
  for (const input of graphInputs) available.add(input.name ?? "");

  const operators = new Set<string>();
  for (const [index, node] of nodes.entries()) {
    const domain = node.domain === "ai.onnx" ? "" : (node.domain ?? "");
    if (opsets[domain] === undefined) {
      throw invalid(
        `node ${index} (${node.opType}) uses operator set '${domain}', which the model does not import`,
      );
    }
    for (const name of node.input ?? []) {
      if (name !== "" && !available.has(name)) {
        throw invalid(
          `node ${index} (${node.opType}) reads '${name}', which is neither a graph input, an initializer nor an earlier node's output`,
        );
      }
    }
    for (const name of node.output ?? []) if (name !== "") available.add(name);
    operators.add(domain ? `${domain}.${node.opType}` : (node.opType ?? ""));
  }
  const graphOutputs = graph.output ?? [];
  for (const output of graphOutputs) {
    if (!available.has(output.name ?? ""))
      throw invalid(`graph output '${output.name}' is never produced`);
  }

  const spec = (v: pkg.onnx.IValueInfoProto, kind: string): TensorSpec => {
    const tensor = v.type?.tensorType;
    if (!tensor) throw invalid(`${kind} '${v.name}' is not a tensor`);
    const datatype = OIP_OF_ELEM[tensor.elemType ?? 0];
    if (!datatype)
      throw invalid(
        `${kind} '${v.name}' has ONNX element type ${tensor.elemType}, which Pinion cannot serve`,
      );
    const dims = tensor.shape?.dim ?? [];
    return {
      name: v.name ?? "",
      datatype,
      shape: dims.map((d) =>
        d.dimValue != null && Number(d.dimValue) > 0 ? Number(d.dimValue) : -1,
      ),
    };
  };
  if (graphInputs.length === 0) throw invalid("the ONNX model has no inputs");
  return {
    irVersion: Number(model.irVersion),
    opsets,
    inputs: graphInputs.map((v) => spec(v, "input")),
    outputs: graphOutputs.map((v) => spec(v, "output")),
    initializers,
    operators: [...operators].sort(),
  };
}
