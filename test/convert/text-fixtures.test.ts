/**
 * The text-masked fixtures (scripts/fixtures/text_masked.py) against
 * onnxruntime-node: the exported graphs reproduce PyTorch's logits, at each
 * case's natural length and right-padded to the maximum with attention_mask 0,
 * and padding does not change the answer. What the int8 engine is held to.
 */
import { readFile } from "node:fs/promises";
import ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGraph } from "../../convert/onnx";

const DIR = new URL("../../fixtures/text-masked/", import.meta.url);

interface ModelEntry {
  file: string;
  opset: number;
  gelu: "erf" | "tanh";
  pooling: "cls" | "mean";
  ops: Record<string, number>;
  accuracy_fp32: number;
  logits: number[][];
  padded_logits: number[][];
}
interface Testset {
  input_names: string[];
  output_name: string;
  max_sequence: number;
  pad_id: number;
  labels: number[];
  cases: { input_ids: number[]; attention_mask: number[]; token_type_ids: number[] }[];
  padded: { input_ids: number[][]; attention_mask: number[][]; token_type_ids: number[][] };
  models: Record<string, ModelEntry>;
}

const testset = JSON.parse(await readFile(new URL("testset.json", DIR), "utf8")) as Testset;
// Summation order differs from PyTorch's; logits are O(10).
const TOLERANCE = 1e-4;

const int64 = (rows: number[][]) =>
  new ort.Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [
    rows.length,
    rows[0]!.length,
  ]);
const argmax = (row: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
};
const rowsOf = (data: Float32Array, width: number) =>
  Array.from({ length: data.length / width }, (_, i) => data.subarray(i * width, (i + 1) * width));
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
};

describe("fixtures/text-masked", () => {
  it("has 200 cases of varying length, padded copies with mask 0 on the padding", () => {
    expect(testset.cases).toHaveLength(200);
    const lengths = new Set(testset.cases.map((c) => c.input_ids.length));
    expect(lengths.size).toBeGreaterThan(5);
    expect(Math.max(...lengths)).toBeLessThanOrEqual(testset.max_sequence);
    testset.cases.forEach((c, i) => {
      const n = c.input_ids.length;
      expect(testset.padded.input_ids[i]).toEqual([
        ...c.input_ids,
        ...Array(testset.max_sequence - n).fill(testset.pad_id),
      ]);
      expect(testset.padded.attention_mask[i]).toEqual([
        ...Array(n).fill(1),
        ...Array(testset.max_sequence - n).fill(0),
      ]);
      expect(testset.padded.token_type_ids[i]!.slice(0, n)).toEqual(c.token_type_ids);
    });
  });

  for (const [stem, model] of Object.entries(testset.models)) {
    describe(stem, () => {
      let session: ort.InferenceSession;
      let bytes: Uint8Array;
      beforeAll(async () => {
        bytes = new Uint8Array(await readFile(new URL(model.file, DIR)));
        session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
      });
      afterAll(() => session?.release());

      const run = async (feeds: Testset["padded"]) => {
        const out = await session.run({
          input_ids: int64(feeds.input_ids),
          attention_mask: int64(feeds.attention_mask),
          token_type_ids: int64(feeds.token_type_ids),
        });
        return out[testset.output_name]!.data as Float32Array;
      };

      it("is the graph the README describes: INT64 inputs with dynamic batch and sequence", () => {
        const graph = readGraph(bytes);
        expect(graph.inputs.map((i) => [i.name, i.datatype, i.shape])).toEqual(
          testset.input_names.map((name) => [name, "INT64", [-1, -1]]),
        );
        const ops: Record<string, number> = {};
        for (const node of graph.nodes) ops[node.op] = (ops[node.op] ?? 0) + 1;
        expect(ops).toEqual(model.ops);
        // Opset 14 decomposes LayerNorm; 17 has the op. Erf or the tanh approximation.
        expect(ops.LayerNormalization !== undefined).toBe(model.opset >= 17);
        expect(ops.ReduceMean !== undefined).toBe(model.opset < 17);
        expect(ops.Erf !== undefined).toBe(model.gelu === "erf");
        expect(ops.Tanh !== undefined).toBe(model.gelu === "tanh");
      });

      it("reproduces PyTorch's logits right-padded to the maximum length, in one batch", async () => {
        const logits = rowsOf(await run(testset.padded), 3);
        logits.forEach((row, i) => {
          expect(maxDiff(row, model.padded_logits[i]!)).toBeLessThan(TOLERANCE);
        });
      });

      it("reproduces PyTorch's logits at each case's natural length, and padding changes nothing", async () => {
        const padded = rowsOf(await run(testset.padded), 3);
        let correct = 0;
        for (const [i, c] of testset.cases.entries()) {
          const natural = await run({
            input_ids: [c.input_ids],
            attention_mask: [c.attention_mask],
            token_type_ids: [c.token_type_ids],
          });
          expect(maxDiff(natural, model.logits[i]!)).toBeLessThan(TOLERANCE);
          expect(maxDiff(natural, padded[i]!)).toBeLessThan(TOLERANCE);
          expect(argmax(padded[i]!)).toBe(argmax(natural));
          if (argmax(natural) === testset.labels[i]) correct++;
        }
        expect(correct / testset.cases.length).toBeCloseTo(model.accuracy_fp32, 10);
        // A task the model learnt: well above chance (1/3).
        expect(model.accuracy_fp32).toBeGreaterThan(0.9);
      });

      it("answers differently when the mask is ignored: padding is only harmless masked", async () => {
        const unmasked = rowsOf(
          await run({
            ...testset.padded,
            attention_mask: testset.padded.attention_mask.map((row) => row.map(() => 1)),
          }),
          3,
        );
        const shortCases = testset.cases
          .map((c, i) => [c.input_ids.length, i] as const)
          .filter(([n]) => n < testset.max_sequence);
        const changed = shortCases.filter(
          ([, i]) => maxDiff(unmasked[i]!, model.padded_logits[i]!) > 1e-2,
        );
        expect(changed.length).toBe(shortCases.length);
      });
    });
  }
});
