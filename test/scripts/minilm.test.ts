/**
 * The generated MiniLM-shaped encoder (scripts/lib/minilm.ts), at a small size:
 * onnxruntime runs it, padding with attention_mask 0 leaves its pooled output
 * unchanged, activations stay in range, and each layer is the node pattern
 * torch.onnx.export writes for a BERT layer (compared with the PyTorch-exported
 * fixture fixtures/text-masked/text_masked_cls.onnx, same opset), and it
 * compiles to an int8 text plan that follows onnxruntime, padded or not — the
 * subject of `npm run bench:text`, checked at a size a test can afford.
 */
import { readFile } from "node:fs/promises";
import ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileInt8 } from "../../convert/int8-compiler";
import { readGraph, type Graph } from "../../convert/onnx";
import type { Tensor } from "../../core/protocol/datatypes";
import { loadProgram } from "../../core/runtimes/int8/int8-runtime";
import { loadKernels, loadKernelsModule } from "../../scripts/lib/kernels-node";
import {
  MINILM_L6,
  OUTPUT_NAME,
  sentenceEncoder,
  type EncoderShape,
} from "../../scripts/lib/minilm";

const SMALL: EncoderShape = {
  layers: 2,
  hidden: 64,
  heads: 4,
  intermediate: 128,
  vocab: 1000,
  maxPositions: 32,
};

const fixture = readGraph(
  new Uint8Array(
    await readFile(new URL("../../fixtures/text-masked/text_masked_cls.onnx", import.meta.url)),
  ),
);

/**
 * The nodes from the first to the last whose name contains `scope`, each as its
 * op, attributes and where its inputs come from (a node of the slice by
 * position, a weight, a constant, or outside the slice): the pattern, free of
 * names and sizes.
 */
function pattern(graph: Graph, scope: string): string[] {
  const first = graph.nodes.findIndex((n) => n.name.includes(scope));
  const last = graph.nodes.findLastIndex((n) => n.name.includes(scope));
  expect(first).toBeGreaterThanOrEqual(0);
  const slice = graph.nodes.slice(first, last + 1);
  const producer = new Map<string, number>();
  slice.forEach((n, i) => n.outputs.forEach((o) => producer.set(o, i)));
  return slice.map((n) => {
    const inputs = n.inputs.map((name) => {
      if (producer.has(name)) {
        const from = slice[producer.get(name)!]!;
        return from.op === "Constant"
          ? `const:${from.outputs.length}`
          : `node${producer.get(name)}`;
      }
      if (name === "") return "none";
      return graph.constants.has(name) ? "weight" : "outside";
    });
    return `${n.op}(${inputs.join(",")}) ${JSON.stringify(n.attributes)}`;
  });
}

const int64 = (rows: number[][]) =>
  new ort.Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [
    rows.length,
    rows[0]!.length,
  ]);

describe("sentenceEncoder (MiniLM-shaped, synthetic weights)", () => {
  const encoder = sentenceEncoder(SMALL, 7);
  const graph = readGraph(encoder.onnx);
  let session: ort.InferenceSession;
  beforeAll(async () => {
    session = await ort.InferenceSession.create(encoder.onnx, { intraOpNumThreads: 1 });
  });
  afterAll(() => session?.release());

  const run = async (ids: number[][], mask: number[][]) => {
    const out = await session.run({ input_ids: int64(ids), attention_mask: int64(mask) });
    return out[OUTPUT_NAME]!;
  };

  it("writes each layer as torch.onnx.export writes a BERT layer", () => {
    const exported = pattern(fixture, "/layers.0/");
    expect(pattern(graph, "/encoder/layer.0/")).toEqual(exported);
    expect(pattern(graph, "/encoder/layer.1/")).toEqual(exported);
    // The decomposed LayerNorm, the Q·Kᵀ and attention·V products, the erf GELU are in it.
    expect(exported.filter((n) => /^MatMul\(node\d+,node\d+\)/.test(n))).toHaveLength(2);
    expect(exported.filter((n) => n.startsWith("MatMul(outside,weight)"))).toHaveLength(3);
    expect(exported.filter((n) => n.startsWith("Erf("))).toHaveLength(1);
    expect(exported.filter((n) => n.startsWith("Sqrt("))).toHaveLength(2);
  });

  it("builds the attention mask bias as the exporter does", () => {
    const maskNodes = (g: Graph) => {
      const start = g.nodes.findIndex((n) => n.inputs.includes("attention_mask"));
      return g.nodes.slice(start, start + 9).map((n) => `${n.op} ${JSON.stringify(n.attributes)}`);
    };
    expect(maskNodes(graph)).toEqual(maskNodes(fixture));
  });

  it("counts its GEMM work from the graph's weights", () => {
    const weightMacs = graph.nodes
      .filter((n) => n.op === "MatMul" && graph.constants.has(n.inputs[1]!))
      .reduce((sum, n) => {
        const [k, m] = graph.constants.get(n.inputs[1]!)!.dims;
        return sum + k! * m!;
      }, 0);
    expect(encoder.gemmMacs(10)).toBe(10 * weightMacs);
    expect(graph.nodes.filter((n) => n.op === "MatMul")).toHaveLength(SMALL.layers * 8);
  });

  it("has MiniLM-L6's parameter count at full size (without the pooler and token types)", () => {
    const { layers, hidden: d, intermediate: f, vocab, maxPositions } = MINILM_L6;
    const perLayer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d;
    expect(vocab * d + maxPositions * d + 2 * d + layers * perLayer).toBe(22_564_608);
    expect(encoder.parameters).toBe(
      SMALL.vocab * 64 +
        SMALL.maxPositions * 64 +
        128 +
        2 * (4 * (64 * 64 + 64) + 2 * (64 * 128) + 128 + 64 + 256),
    );
  });

  it("runs in onnxruntime with dynamic batch and sequence, activations in range", async () => {
    const ids = [
      [101, 7, 99, 512, 3, 102],
      [101, 44, 45, 46, 47, 102],
    ];
    const out = await run(
      ids,
      ids.map((r) => r.map(() => 1)),
    );
    expect(out.dims).toEqual([2, SMALL.hidden]);
    const data = out.data as Float32Array;
    // Mean of LayerNorm outputs: unit-scale numbers, finite, and different inputs differ.
    const rms = Math.sqrt(data.reduce((s, v) => s + v * v, 0) / data.length);
    expect(rms).toBeGreaterThan(0.1);
    expect(rms).toBeLessThan(3);
    expect(data.every(Number.isFinite)).toBe(true);
    const diff = data.slice(0, 64).reduce((s, v, i) => s + Math.abs(v - data[64 + i]!), 0);
    expect(diff / 64).toBeGreaterThan(0.01);
    const longer = await run([[...ids[0]!, 9, 9, 9, 9]], [[...ids[0]!, 9, 9, 9, 9].map(() => 1)]);
    expect(longer.dims).toEqual([1, SMALL.hidden]);
  });

  it("gives each sequence the same embedding padded with attention_mask 0 as alone", async () => {
    const sequences = [
      [101, 17, 23, 102],
      [101, 5, 900, 31, 31, 64, 7, 102],
      [101, 2, 102],
      Array.from({ length: SMALL.maxPositions }, (_, i) => (i * 37) % SMALL.vocab),
    ];
    const max = SMALL.maxPositions;
    const padded = await run(
      sequences.map((s) => [...s, ...Array(max - s.length).fill(0)]),
      sequences.map((s) => [...s.map(() => 1), ...Array(max - s.length).fill(0)]),
    );
    for (const [i, s] of sequences.entries()) {
      const alone = (await run([s], [s.map(() => 1)])).data as Float32Array;
      const row = (padded.data as Float32Array).subarray(i * 64, (i + 1) * 64);
      const worst = alone.reduce((m, v, j) => Math.max(m, Math.abs(v - row[j]!)), 0);
      expect(worst).toBeLessThan(1e-4);
    }
    // Unmasked padding would change it: the mask is what makes this hold.
    const s = sequences[0]!;
    const unmasked = (await run([[...s, 0, 0, 0, 0]], [[1, 1, 1, 1, 1, 1, 1, 1]])).data;
    const alone = (await run([s], [[1, 1, 1, 1]])).data as Float32Array;
    expect(
      alone.reduce((m, v, j) => Math.max(m, Math.abs(v - (unmasked[j] as number))), 0),
    ).toBeGreaterThan(1e-2);
  });

  it("compiles to an int8 text plan whose pooled output follows onnxruntime's, padded or not", async () => {
    const outcome = compileInt8(encoder.onnx, await loadKernels(), {
      maxSequence: SMALL.maxPositions,
    });
    if (!outcome.ok) throw new Error(outcome.reason);
    const program = await loadProgram(await loadKernelsModule(), outcome.plan);
    const feed = (name: string, rows: number[][]): Tensor => ({
      name,
      datatype: "INT64",
      shape: [rows.length, rows[0]!.length],
      data: BigInt64Array.from(rows.flat(), (v) => BigInt(v)),
    });
    const max = SMALL.maxPositions;
    for (const length of [3, 11, max]) {
      const s = Array.from({ length }, (_, i) => (i * 131 + 7) % SMALL.vocab);
      const padded = [...s, ...Array<number>(max - length).fill(0)];
      const mask = [...s.map(() => 1), ...Array<number>(max - length).fill(0)];
      const fp32 = (await run([s], [s.map(() => 1)])).data as Float32Array;
      const alone = program.runInputs([
        feed("input_ids", [s]),
        feed("attention_mask", [s.map(() => 1)]),
      ]);
      const inPadding = program.runInputs([
        feed("input_ids", [padded]),
        feed("attention_mask", [mask]),
      ]);
      for (const int8 of [alone, inPadding]) {
        let dot = 0;
        let a = 0;
        let b = 0;
        int8.forEach((v, j) => {
          dot += v * fp32[j]!;
          a += v * v;
          b += fp32[j]! * fp32[j]!;
        });
        expect(dot / Math.sqrt(a * b)).toBeGreaterThan(0.99);
      }
      // Padding with mask 0 leaves the int8 answer where it was.
      const worst = alone.reduce((m, v, j) => Math.max(m, Math.abs(v - inPadding[j]!)), 0);
      expect(worst).toBeLessThan(1e-3);
    }
  });
});
