/**
 * @module
 * Finds weights that are NaN or ±Infinity. A model holding them publishes and
 * loads fine but answers `null`s (JSON has no NaN), so publishing refuses
 * them unless told they are meant; this is the one check both the `.pth`
 * and the ONNX path go through (a `.pth` becomes ONNX first, its state_dict
 * keys naming the initializers), and the int8 compiler uses it too.
 */
import pkg from "onnx-proto";
import { invalid } from "../core/errors";
import { ElemType } from "./onnx";

const { onnx } = pkg;

/** Where a tensor's non-finite values are. */
export interface NonFinite {
  /** initializer name (a `.pth`'s state_dict key), or the Constant node's output */
  tensor: string;
  count: number;
  /** flat, row-major index of the first one */
  firstIndex: number;
  /** NaN, Infinity or -Infinity */
  first: number;
}

/** Counts the non-finite values of one tensor's elements; undefined when all are finite. */
export function scanValues(tensor: string, values: ArrayLike<number>): NonFinite | undefined {
  let found: NonFinite | undefined;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    // v - v is 0 for every finite number and NaN for NaN and ±Infinity.
    if (v - v === 0) continue;
    if (found) found.count++;
    else found = { tensor, count: 1, firstIndex: i, first: v };
  }
  return found;
}

/** `tensor "fc1.weight" holds 3 non-finite values (the first, NaN, at index 17)`, joined by "; ". */
export function describeNonFinite(found: readonly NonFinite[]): string {
  const shown = found
    .slice(0, 5)
    .map(
      ({ tensor, count, firstIndex, first }) =>
        `tensor "${tensor}" holds ${count} non-finite value${count === 1 ? "" : "s"} ` +
        `(the first, ${first}, at index ${firstIndex})`,
    );
  if (found.length > shown.length) shown.push(`and ${found.length - shown.length} more tensors`);
  return shown.join("; ");
}

type Tensor = pkg.onnx.ITensorProto;
type Graph = pkg.onnx.IGraphProto;

/**
 * A 16-bit float as far as finiteness goes: 0 for any finite value, else NaN
 * or ±Infinity. float16 has 5 exponent bits, bfloat16 (a float32's top half) 8.
 */
function sixteenBit(h: number, exponentMask: number, fractionMask: number): number {
  if ((h & exponentMask) !== exponentMask) return 0;
  return h & fractionMask ? NaN : h & 0x8000 ? -Infinity : Infinity;
}

/** A float tensor's elements, whatever field holds them; undefined for other types. */
function floatValues(t: Tensor): ArrayLike<number> | undefined {
  const raw = t.rawData && t.rawData.byteLength > 0 ? t.rawData : undefined;
  const view = (size: number) => {
    const copy = raw!.slice(0, raw!.byteLength - (raw!.byteLength % size));
    return copy.buffer;
  };
  switch (t.dataType) {
    case ElemType.FLOAT:
      return raw ? new Float32Array(view(4)) : (t.floatData ?? []);
    case ElemType.DOUBLE:
      return raw ? new Float64Array(view(8)) : (t.doubleData ?? []);
    case ElemType.FLOAT16:
    case ElemType.BFLOAT16: {
      const bits = raw ? new Uint16Array(view(2)) : (t.int32Data ?? []);
      const [exponent, fraction] =
        t.dataType === ElemType.FLOAT16 ? [0x7c00, 0x3ff] : [0x7f80, 0x7f];
      const out = new Float32Array(bits.length);
      for (let i = 0; i < bits.length; i++) out[i] = sixteenBit(bits[i]!, exponent, fraction);
      return out;
    }
    default:
      return undefined;
  }
}

function scanGraph(graph: Graph, found: NonFinite[]): void {
  const tensor = (t: Tensor, name: string) => {
    const values = floatValues(t);
    const hit = values && scanValues(name, values);
    if (hit) found.push(hit);
  };
  for (const init of graph.initializer ?? []) tensor(init, init.name ?? "");
  for (const node of graph.node ?? []) {
    // Constant nodes and If/Loop/Scan bodies hold weights too.
    for (const a of node.attribute ?? []) {
      const name = node.output?.[0] || node.name || node.opType || "";
      if (a.t) tensor(a.t, name);
      for (const t of a.tensors ?? []) tensor(t, name);
      if (a.g) scanGraph(a.g, found);
      for (const g of a.graphs ?? []) scanGraph(g, found);
    }
  }
}

/** Every tensor of an ONNX model's weights that holds NaN or ±Infinity. */
export function nonFiniteWeights(model: Uint8Array): NonFinite[] {
  let decoded: InstanceType<typeof onnx.ModelProto>;
  try {
    decoded = onnx.ModelProto.decode(model);
  } catch {
    return []; // not ONNX: inspectOnnx says what is wrong with it
  }
  const found: NonFinite[] = [];
  if (decoded.graph) scanGraph(decoded.graph, found);
  return found;
}

/**
 * Refuses an ONNX model whose weights hold NaN or ±Infinity, naming each
 * tensor, how many and where the first is; `hint` says how to allow them.
 */
export function assertFiniteWeights(model: Uint8Array, hint = ""): void {
  const found = nonFiniteWeights(model);
  if (found.length === 0) return;
  throw invalid(
    `the model's weights are not all finite: ${describeNonFinite(found)}; ` +
      `the version would answer nulls${hint ? ` (${hint})` : ""}`,
  );
}
