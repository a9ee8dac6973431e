/**
 * @module
 * Finds graph outputs whose *shape* follows the *values* of a graph input —
 * e.g. `ConstantOfShape` fed from the input — so that a request of a few bytes
 * can ask for an answer of any size. `pinion publish` warns about them; the
 * server bounds every answer (MAX_RESPONSE_ELEMENTS, MAX_RESPONSE_BYTES).
 */
import { readGraph, type GraphNode } from "./onnx";

/**
 * Operators whose output shape is set by the values of some inputs, by index
 * (`all` for every input). Shapes derived from input *shapes* (`Shape`,
 * `Size`) are bounded by the request and are not flagged.
 */
const SHAPE_FROM_VALUES: Record<string, readonly number[] | "all"> = {
  ConstantOfShape: [0],
  Expand: [1],
  Reshape: [1],
  Tile: [1],
  Range: "all",
  Resize: [1, 2, 3],
  Upsample: [1],
  Pad: [1, 2, 3],
  Slice: [1, 2, 3, 4],
  TopK: [1],
  OneHot: [1],
  NonZero: [0],
  Compress: [1],
  Unique: [0],
  NonMaxSuppression: "all",
  Squeeze: [1],
  Unsqueeze: [1],
  Split: [1],
  CenterCropPad: [1],
  Col2Im: [1, 2],
  // Control flow: what a subgraph makes of its inputs is not traced here.
  Loop: "all",
  If: "all",
  Scan: "all",
};

/** Operators whose output *values* are the input's shape or size, not its values. */
const SHAPE_OF_INPUT = new Set(["Shape", "Size"]);

export interface ValueShapedOutput {
  /** The graph output. */
  output: string;
  /** The first node on its path whose output shape follows input values, e.g. "ConstantOfShape (node 0)". */
  cause: string;
}

/** The graph outputs whose shape can follow the values of the graph's inputs. */
export function valueShapedOutputs(onnx: Uint8Array): ValueShapedOutput[] {
  const graph = readGraph(onnx);
  // Tensors whose values follow input values, and tensors whose shape does (with why).
  const valueTainted = new Set(graph.inputs.map((input) => input.name));
  const shapeTainted = new Map<string, string>();
  const describe = (node: GraphNode) =>
    `${node.op} (node ${node.index}${node.name ? ` '${node.name}'` : ""})`;
  for (const node of graph.nodes) {
    const inputs = node.inputs.filter((name) => name !== "");
    const inheritedShape = inputs.map((name) => shapeTainted.get(name)).find((c) => c);
    const shapeIndices = node.domain === "" ? SHAPE_FROM_VALUES[node.op] : undefined;
    const setsShape =
      shapeIndices !== undefined &&
      node.inputs.some(
        (name, i) =>
          name !== "" &&
          (shapeIndices === "all" || shapeIndices.includes(i)) &&
          valueTainted.has(name),
      );
    const shapeCause = inheritedShape ?? (setsShape ? describe(node) : undefined);
    const valuesFollow = SHAPE_OF_INPUT.has(node.op)
      ? inputs.some((name) => shapeTainted.has(name))
      : inputs.some((name) => valueTainted.has(name));
    for (const output of node.outputs) {
      if (output === "") continue;
      if (shapeCause) shapeTainted.set(output, shapeCause);
      if (valuesFollow) valueTainted.add(output);
    }
  }
  return graph.outputs.flatMap((output) => {
    const cause = shapeTainted.get(output.name);
    return cause ? [{ output: output.name, cause }] : [];
  });
}
