/**
 * Issue 12, item 4: outputs whose shape follows input values are flagged at
 * publish (`convert/value-shapes.ts`), and `pinion publish` warns about them.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ElemType, buildModel } from "../../convert/onnx";
import { valueShapedOutputs } from "../../convert/value-shapes";

const root = new URL("../../", import.meta.url);
const fixture = (path: string) => new Uint8Array(readFileSync(new URL(`fixtures/${path}`, root)));

const x = { name: "x", type: ElemType.FLOAT, dims: ["batch", 4] };
const y = (dims: (number | string)[] = ["a", "b"]) => ({ name: "y", type: ElemType.FLOAT, dims });
const int64 = (name: string, values: bigint[]) => ({
  name,
  type: ElemType.INT64,
  dims: [values.length],
  data: BigInt64Array.from(values),
});

describe("valueShapedOutputs", () => {
  it("flags the ConstantOfShape fixture's output, naming the node", () => {
    expect(valueShapedOutputs(fixture("value-shaped/value_shaped.onnx"))).toEqual([
      { output: "output", cause: "ConstantOfShape (node 0 'ConstantOfShape_0')" },
    ]);
  });

  it("flags nothing in real PyTorch exports", () => {
    for (const path of [
      "seed-simple/simple_model.onnx",
      "digits-mlp/digits_mlp.onnx",
      "digits-cnn/digits_cnn.onnx",
    ]) {
      expect(valueShapedOutputs(fixture(path)), path).toEqual([]);
    }
  });

  it("flags a Reshape to a shape computed from input values, through later nodes", () => {
    const model = buildModel(
      [
        { op: "Cast", inputs: ["x"], outputs: ["xi"], attributes: { to: ElemType.INT64 } },
        { op: "Slice", inputs: ["xi", "zero", "two"], outputs: ["dims"] },
        { op: "Reshape", inputs: ["x", "dims"], outputs: ["r"] },
        { op: "Relu", inputs: ["r"], outputs: ["y"] },
      ],
      [x],
      [y()],
      13,
      [int64("zero", [0n]), int64("two", [2n])],
    );
    expect(valueShapedOutputs(model)).toEqual([
      { output: "y", cause: "Reshape (node 2 'Reshape_2')" },
    ]);
  });

  it("does not flag shapes taken from input shapes or constants (Shape → Reshape, a fixed Reshape)", () => {
    const fromShape = buildModel(
      [
        { op: "Shape", inputs: ["x"], outputs: ["s"] },
        { op: "Reshape", inputs: ["x", "s"], outputs: ["y"] },
      ],
      [x],
      [y()],
    );
    expect(valueShapedOutputs(fromShape)).toEqual([]);
    const fixed = buildModel(
      [{ op: "Reshape", inputs: ["x", "shape"], outputs: ["y"] }],
      [x],
      [y([-1])],
      13,
      [int64("shape", [-1n])],
    );
    expect(valueShapedOutputs(fixed)).toEqual([]);
  });

  it("leaves other outputs of the same graph alone", () => {
    const model = buildModel(
      [
        { op: "Relu", inputs: ["x"], outputs: ["plain"] },
        { op: "Cast", inputs: ["x"], outputs: ["xi"], attributes: { to: ElemType.INT64 } },
        { op: "Tile", inputs: ["x", "xi"], outputs: ["tiled"] },
      ],
      [x],
      [
        { name: "plain", type: ElemType.FLOAT, dims: ["batch", 4] },
        { name: "tiled", type: ElemType.FLOAT, dims: ["a", "b"] },
      ],
    );
    expect(valueShapedOutputs(model).map((o) => o.output)).toEqual(["tiled"]);
  });
});

describe("pinion publish", () => {
  it("warns about a value-shaped output, naming it and the server's bound, and publishes", async () => {
    const persistTo = await mkdtemp(join(tmpdir(), "pinion-value-shapes-"));
    try {
      const { stdout, stderr } = await promisify(execFile)(
        process.execPath,
        [
          new URL("bin/pinion.js", root).pathname,
          "publish",
          "value-shaped",
          new URL("fixtures/value-shaped/value_shaped.onnx", root).pathname,
          "--persist-to",
          persistTo,
        ],
        { cwd: root, env: { ...process.env, PINION_ADMIN_TOKEN: "" } },
      );
      expect(stderr).toBe(
        "pinion: warning: the shape of output 'output' follows the input's values " +
          "(ConstantOfShape (node 0 'ConstantOfShape_0')): a small request can ask for an answer " +
          "of any size; the server refuses answers over MAX_RESPONSE_ELEMENTS / MAX_RESPONSE_BYTES (422)\n",
      );
      expect(stdout).toMatch(/published value-shaped@1/);
      expect(stdout).toMatch(/outputs: output FP32 \[-1\]/);
    } finally {
      await rm(persistTo, { recursive: true, force: true });
    }
  });
});
