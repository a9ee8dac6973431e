/**
 * @module
 * ONNX models as protobuf, through onnx-proto: building small graphs (the
 * converter's output, test graphs) and inspecting uploaded ones at publish time,
 * so a broken model is refused before it becomes a version.
 */
import pkg from "onnx-proto";
import { invalid } from "../worker/errors";
import type { Datatype, TensorSpec } from "../worker/protocol/datatypes";

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

export type Dim = number | string;
export interface ValueSpec {
  name: string;
  type: number;
  dims: Dim[];
}
export interface NodeSpec {
  op: string;
  /** Defaults to `{op}_{index}`. */
  name?: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, number>;
}
/** A constant tensor stored in the graph (weights), as little-endian raw data. */
export interface Initializer {
  name: string;
  type: number;
  dims: number[];
  data: ArrayBufferView;
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

/** Encodes a single-graph ONNX model (default domain only). */
export function buildModel(
  nodes: NodeSpec[],
  inputs: ValueSpec[],
  outputs: ValueSpec[],
  opset = 13,
  initializers: Initializer[] = [],
  producer = "pinion",
): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 7,
    producerName: producer,
    opsetImport: [{ domain: "", version: opset }],
    graph: {
      name: "main",
      node: nodes.map((n, i) => ({
        name: n.name ?? `${n.op}_${i}`,
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
  // protobufjs returns a Node Buffer under Node; callers get a plain Uint8Array everywhere.
  return new Uint8Array(onnx.ModelProto.encode(model).finish());
}

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
  return summarise(decodeModel(bytes));
}

type Model = InstanceType<typeof onnx.ModelProto>;

function decodeModel(bytes: Uint8Array): Model {
  if (bytes.byteLength === 0) throw invalid("the ONNX file is empty");
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (error) {
    throw invalid(
      `not a valid ONNX model (the protobuf does not decode: ${(error as Error).message})`,
    );
  }
}

function summarise(model: Model): OnnxSummary {
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

/** A graph node with its attributes reduced to plain values. */
export interface GraphNode {
  index: number;
  op: string;
  domain: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attributes: Record<string, number | number[] | string>;
}

export interface Graph {
  nodes: GraphNode[];
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Float and int64 initializers, decoded. */
  constants: Map<string, { dims: number[]; values: Float32Array | BigInt64Array }>;
}

function decodeConstant(init: pkg.onnx.ITensorProto): Float32Array | BigInt64Array | undefined {
  const raw = init.rawData && init.rawData.byteLength > 0 ? init.rawData : undefined;
  if (init.dataType === ElemType.FLOAT) {
    if (raw) return new Float32Array(raw.slice().buffer);
    return Float32Array.from(init.floatData ?? []);
  }
  if (init.dataType === ElemType.INT64) {
    if (raw) return new BigInt64Array(raw.slice().buffer);
    return BigInt64Array.from((init.int64Data ?? []).map((v) => BigInt(v.toString())));
  }
  return undefined;
}

/** Decodes a (checked) model's graph for pattern matching, e.g. by the int8 compiler. */
export function readGraph(bytes: Uint8Array): Graph {
  const model = decodeModel(bytes);
  const summary = summarise(model);
  const constants = new Map<string, { dims: number[]; values: Float32Array | BigInt64Array }>();
  for (const init of model.graph?.initializer ?? []) {
    const values = decodeConstant(init);
    if (values) constants.set(init.name ?? "", { dims: (init.dims ?? []).map(Number), values });
  }
  const nodes = (model.graph?.node ?? []).map((node, index) => {
    const attributes: Record<string, number | number[] | string> = {};
    for (const a of node.attribute ?? []) {
      const name = a.name ?? "";
      switch (a.type) {
        case onnx.AttributeProto.AttributeType.FLOAT:
          attributes[name] = a.f ?? 0;
          break;
        case onnx.AttributeProto.AttributeType.INT:
          attributes[name] = Number(a.i ?? 0);
          break;
        case onnx.AttributeProto.AttributeType.INTS:
          attributes[name] = (a.ints ?? []).map(Number);
          break;
        case onnx.AttributeProto.AttributeType.STRING:
          attributes[name] = new TextDecoder().decode(a.s ?? new Uint8Array(0));
          break;
      }
    }
    return {
      index,
      op: node.opType ?? "",
      domain: node.domain === "ai.onnx" ? "" : (node.domain ?? ""),
      name: node.name ?? "",
      inputs: node.input ?? [],
      outputs: node.output ?? [],
      attributes,
    };
  });
  return { nodes, inputs: summary.inputs, outputs: summary.outputs, constants };
}
