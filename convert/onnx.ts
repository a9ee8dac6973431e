/**
 * @module
 * ONNX models as protobuf, through onnx-proto: building small graphs (the
 * converter's output, test graphs) and reading graphs for the int8 compiler.
 * The structure check run at publish (`inspectOnnx`) lives with the worker's
 * commit checks (`core/registry/onnx-structure.ts`), re-exported here.
 */
import pkg from "onnx-proto";
import type { TensorSpec } from "../core/protocol/datatypes";
import { decodeOnnxModel, ElemType, summariseOnnx } from "../core/registry/onnx-structure";

export { ElemType, inspectOnnx, type OnnxSummary } from "../core/registry/onnx-structure";

const { onnx } = pkg;

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
  /**
   * Integers, integer lists, `{ float: x }` for a float attribute,
   * `{ tensor }` for a tensor attribute (a Constant node's `value`), or
   * `{ string }` (Gelu's `approximate`).
   */
  attributes?: Record<
    string,
    | number
    | number[]
    | { float: number }
    | { tensor: Omit<Initializer, "name"> }
    | { string: string }
  >;
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

const tensorProto = ({ type, dims, data }: Omit<Initializer, "name">) => ({
  dataType: type,
  dims,
  rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
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
        attribute: Object.entries(n.attributes ?? {}).map(([name, value]) =>
          Array.isArray(value)
            ? { name, type: onnx.AttributeProto.AttributeType.INTS, ints: value }
            : typeof value === "number"
              ? { name, type: onnx.AttributeProto.AttributeType.INT, i: value }
              : "tensor" in value
                ? {
                    name,
                    type: onnx.AttributeProto.AttributeType.TENSOR,
                    t: tensorProto(value.tensor),
                  }
                : "string" in value
                  ? {
                      name,
                      type: onnx.AttributeProto.AttributeType.STRING,
                      s: new TextEncoder().encode(value.string),
                    }
                  : { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: value.float },
        ),
      })),
      input: inputs.map(valueInfo),
      output: outputs.map(valueInfo),
      initializer: initializers.map(({ name, ...tensor }) => ({ name, ...tensorProto(tensor) })),
    },
  });
  // protobufjs returns a Node Buffer under Node; callers get a plain Uint8Array everywhere.
  return new Uint8Array(onnx.ModelProto.encode(model).finish());
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
  /** Float and int64 initializers and Constant nodes' values, decoded. */
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
  const model = decodeOnnxModel(bytes);
  const summary = summariseOnnx(model);
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
        case onnx.AttributeProto.AttributeType.FLOATS:
          attributes[name] = (a.floats ?? []).map(Number);
          break;
        case onnx.AttributeProto.AttributeType.TENSOR:
          // A Constant node's value is a constant like any initializer.
          if (node.opType === "Constant" && a.t && node.output?.[0]) {
            const values = decodeConstant(a.t);
            const dims = (a.t.dims ?? []).map(Number);
            if (values) constants.set(node.output[0], { dims, values });
          }
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
    if (node.opType === "Constant" && node.output?.[0] && !constants.has(node.output[0])) {
      const scalar = attributes.value_float ?? attributes.value_int;
      const list = attributes.value_floats ?? attributes.value_ints;
      if (typeof scalar === "number") {
        constants.set(node.output[0], { dims: [], values: Float32Array.of(scalar) });
      } else if (Array.isArray(list)) {
        constants.set(node.output[0], { dims: [list.length], values: Float32Array.from(list) });
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
