/**
 * @module
 * The transformer part of `npm run bench:kernels` (`BENCH_ONLY=text` alone):
 * the fp32 encoder kernels of assembly/transformer.ts at MiniLM-L6 sizes
 * (sequence 128, d_model 384, 12 heads of 32, feed-forward 1536, vocabulary
 * 30522), batch 1, through the flat ABI, against onnxruntime-web (graph
 * optimisations on, one thread) on the same one-op graphs, side by side in
 * one run. Cheap elementwise and row ops are timed as chains of 8 (ORT: one
 * graph of 8 blocks, one run) so ORT's per-call overhead, printed on its own
 * as the Identity rows, is shared out. ORT's K for Q·Kᵀ is handed over already transposed (a plain 3-D
 * MatMul, ORT's best case); Pinion's `transB` reads K as stored.
 */
import { readFile } from "node:fs/promises";
import { kernelsPath } from "../lib/kernels-node";
import { ElemType, buildModel, ort, session } from "../lib/onnx-graph";
import type { NodeSpec } from "../../convert/onnx";

type Runner = () => unknown | Promise<unknown>;

interface Abi {
  memory: WebAssembly.Memory;
  allocate(bytes: number): number;
  mark(): number;
  release(to: number): void;
  gatherRows(...args: number[]): number;
  layerNorm(...args: number[]): void;
  softmaxRows(...args: number[]): void;
  gelu(x: number, count: number, mode: number, y: number): void;
  batchedMatMul(...args: number[]): void;
  batchedMatMulStrided(...args: number[]): void;
  addBias(...args: number[]): void;
  meanPoolMasked(...args: number[]): void;
}

const SEQ = 128;
const D = 384;
const HEADS = 12;
const HD = 32;
const FF = 1536;
const VOCAB = 30522;

function seeded(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

interface Feed {
  name: string;
  dims: number[];
  data: Float32Array | BigInt64Array;
}

/**
 * `nodes` (a block from input "x" to output "y") `repeat` times in a row, each
 * block's "x" the previous one's "y": one session.run then covers `repeat`
 * ops, so ORT's per-call overhead (see the Identity rows) is shared out.
 */
function chain(nodes: NodeSpec[], repeat: number, constants: Set<string>): NodeSpec[] {
  const out: NodeSpec[] = [];
  for (let i = 0; i < repeat; i++) {
    const rename = (name: string) =>
      constants.has(name)
        ? name
        : name === "x"
          ? i === 0
            ? "x"
            : `y_${i - 1}`
          : name === "y"
            ? i === repeat - 1
              ? "y"
              : `y_${i}`
            : `${name}_${i}`;
    for (const n of nodes)
      out.push({
        ...n,
        name: undefined,
        inputs: n.inputs.map(rename),
        outputs: n.outputs.map(rename),
      });
  }
  return out;
}

/** An ORT session over `nodes` with f32 (or int64 ids) inputs and initializers; returns its runner. */
async function ortRunner(
  nodes: NodeSpec[],
  feeds: Feed[],
  outDims: number[],
  opset: number,
  initializers: { name: string; dims: number[]; data: Float32Array }[] = [],
  repeat = 1,
): Promise<Runner> {
  if (repeat > 1) nodes = chain(nodes, repeat, new Set(initializers.map((i) => i.name)));
  const type = (f: Feed) => (f.data instanceof BigInt64Array ? ElemType.INT64 : ElemType.FLOAT);
  const model = buildModel(
    nodes,
    feeds.map((f) => ({ name: f.name, type: type(f), dims: f.dims })),
    [{ name: "y", type: ElemType.FLOAT, dims: outDims }],
    opset,
    initializers.map((i) => ({ ...i, type: ElemType.FLOAT })),
  );
  const s = await session(model, true);
  const input = Object.fromEntries(
    feeds.map((f) => [
      f.name,
      f.data instanceof BigInt64Array
        ? new ort.Tensor("int64", f.data, f.dims)
        : new ort.Tensor("float32", f.data, f.dims),
    ]),
  );
  return () => s.run(input);
}

/**
 * Measures each kernel whose label matches `only` (all when unset, or
 * "text") with the caller's `measure` (median seconds per call of each
 * runner) and prints a table.
 */
export async function benchTransformer(
  measure: (runners: Runner[]) => Promise<number[]>,
  print: (line: string) => void,
  only?: string,
): Promise<void> {
  const bytes = await readFile(kernelsPath("release"));
  const abi = (await WebAssembly.instantiate(await WebAssembly.compile(new Uint8Array(bytes)), {}))
    .exports as unknown as Abi;
  const rand = seeded(384128);
  const normal = (n: number, sd = 1) =>
    Float32Array.from({ length: n }, () => (rand() * 2 - 1) * sd);
  const put = (data: Float32Array | Int32Array) => {
    const ptr = abi.allocate(data.byteLength);
    new Uint8Array(abi.memory.buffer, ptr, data.byteLength).set(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
    return ptr;
  };

  const x = normal(SEQ * D);
  const h = normal(SEQ * FF, 3);
  const q = normal(HEADS * SEQ * HD);
  const kk = normal(HEADS * SEQ * HD);
  const kt = new Float32Array(kk.length); // K transposed per head, for ORT
  for (let i = 0; i < HEADS; i++)
    for (let s = 0; s < SEQ; s++)
      for (let j = 0; j < HD; j++) kt[(i * HD + j) * SEQ + s] = kk[(i * SEQ + s) * HD + j]!;
  const p = normal(HEADS * SEQ * SEQ, 4);
  const v = normal(HEADS * SEQ * HD);
  const qkv = normal(SEQ * D); // [seq × d_model]: heads read in place by the strided form
  const gamma = normal(D);
  const beta = normal(D);
  const bias = normal(FF);
  const mask = Float32Array.from({ length: SEQ }, (_, j) => (j < SEQ - 16 ? 0 : -10000));
  const keep = Float32Array.from(mask, (m) => (m === 0 ? 1 : 0));
  const ids = Int32Array.from({ length: SEQ }, () => Math.floor(rand() * VOCAB));
  const table = normal(VOCAB * D);

  const mark = abi.mark();
  const px = put(x);
  const ph = put(h);
  const pq = put(q);
  const pk = put(kk);
  const pp = put(p);
  const pv = put(v);
  const pqkv = put(qkv);
  const pg = put(gamma);
  const pb = put(beta);
  const pbias = put(bias);
  const pmask = put(mask);
  const pkeep = put(keep);
  const pids = put(ids);
  const ptable = put(table);
  const py = abi.allocate(Math.max(HEADS * SEQ * SEQ, SEQ * FF) * 4);
  const scale = 1 / Math.sqrt(HD);
  const R = 8;

  interface Case {
    label: string;
    shape: string;
    flops?: number;
    /** Ops per timed call on both sides (ORT: a chain of that many blocks, one run). */
    repeat?: number;
    /** None for ORT's bare per-call overhead rows. */
    pinion?: Runner;
    ort: () => Promise<Runner | undefined>;
  }
  const cases: Case[] = [
    {
      label: "gather",
      shape: `${SEQ} of ${VOCAB}×${D}`,
      pinion: () => abi.gatherRows(ptable, VOCAB, D, pids, SEQ, py),
      ort: () =>
        ortRunner(
          [{ op: "Gather", inputs: ["t", "ids"], outputs: ["y"] }],
          [{ name: "ids", dims: [1, SEQ], data: BigInt64Array.from(ids, (i) => BigInt(i)) }],
          [1, SEQ, D],
          13,
          [{ name: "t", dims: [VOCAB, D], data: table }],
        ),
    },
    {
      label: "layerNorm",
      repeat: R,
      shape: `${SEQ}×${D}`,
      pinion: () => abi.layerNorm(px, SEQ, D, pg, pb, 1e-12, py),
      ort: () =>
        ortRunner(
          [
            {
              op: "LayerNormalization",
              inputs: ["x", "g", "b"],
              outputs: ["y"],
              attributes: { axis: -1, epsilon: { float: 1e-12 } },
            },
          ],
          [{ name: "x", dims: [1, SEQ, D], data: x }],
          [1, SEQ, D],
          17,
          [
            { name: "g", dims: [D], data: gamma },
            { name: "b", dims: [D], data: beta },
          ],
          R,
        ),
    },
    {
      label: "softmax+mask",
      repeat: R,
      shape: `${HEADS}×${SEQ}×${SEQ}`,
      pinion: () => abi.softmaxRows(pp, HEADS * SEQ, SEQ, pmask, 0, py),
      ort: () =>
        ortRunner(
          [
            { op: "Add", inputs: ["x", "m"], outputs: ["t"] },
            { op: "Softmax", inputs: ["t"], outputs: ["y"], attributes: { axis: -1 } },
          ],
          [{ name: "x", dims: [1, HEADS, SEQ, SEQ], data: p }],
          [1, HEADS, SEQ, SEQ],
          13,
          [{ name: "m", dims: [1, 1, 1, SEQ], data: mask }],
          R,
        ),
    },
    {
      label: "gelu erf",
      repeat: R,
      shape: `${SEQ}×${FF}`,
      pinion: () => abi.gelu(ph, SEQ * FF, 0, py),
      // torch.onnx.export's nn.GELU(); ORT's optimiser fuses it into one Gelu kernel.
      ort: () =>
        ortRunner(
          [
            { op: "Div", inputs: ["x", "sqrt2"], outputs: ["d"] },
            { op: "Erf", inputs: ["d"], outputs: ["e"] },
            { op: "Add", inputs: ["e", "one"], outputs: ["a"] },
            { op: "Mul", inputs: ["x", "a"], outputs: ["m"] },
            { op: "Mul", inputs: ["m", "half"], outputs: ["y"] },
          ],
          [{ name: "x", dims: [1, SEQ, FF], data: h }],
          [1, SEQ, FF],
          13,
          [
            { name: "sqrt2", dims: [], data: Float32Array.of(Math.SQRT2) },
            { name: "one", dims: [], data: Float32Array.of(1) },
            { name: "half", dims: [], data: Float32Array.of(0.5) },
          ],
          R,
        ),
    },
    {
      label: "gelu erf op20",
      repeat: R,
      shape: `${SEQ}×${FF}`,
      pinion: () => abi.gelu(ph, SEQ * FF, 0, py),
      // The opset-20 Gelu op (approximate "none"); "-" if this ORT build lacks it.
      ort: () =>
        ortRunner(
          [{ op: "Gelu", inputs: ["x"], outputs: ["y"] }],
          [{ name: "x", dims: [1, SEQ, FF], data: h }],
          [1, SEQ, FF],
          20,
          [],
          R,
        ).catch(() => undefined),
    },
    {
      label: "gelu tanh",
      repeat: R,
      shape: `${SEQ}×${FF}`,
      pinion: () => abi.gelu(ph, SEQ * FF, 1, py),
      // The tanh approximation as exporters write it: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
      ort: () =>
        ortRunner(
          [
            { op: "Pow", inputs: ["x", "three"], outputs: ["c"] },
            { op: "Mul", inputs: ["c", "k"], outputs: ["ck"] },
            { op: "Add", inputs: ["x", "ck"], outputs: ["s"] },
            { op: "Mul", inputs: ["s", "r"], outputs: ["u"] },
            { op: "Tanh", inputs: ["u"], outputs: ["t"] },
            { op: "Add", inputs: ["t", "one"], outputs: ["a"] },
            { op: "Mul", inputs: ["x", "a"], outputs: ["m"] },
            { op: "Mul", inputs: ["m", "half"], outputs: ["y"] },
          ],
          [{ name: "x", dims: [1, SEQ, FF], data: h }],
          [1, SEQ, FF],
          13,
          [
            { name: "three", dims: [], data: Float32Array.of(3) },
            { name: "k", dims: [], data: Float32Array.of(0.044715) },
            { name: "r", dims: [], data: Float32Array.of(Math.sqrt(2 / Math.PI)) },
            { name: "one", dims: [], data: Float32Array.of(1) },
            { name: "half", dims: [], data: Float32Array.of(0.5) },
          ],
          R,
        ),
    },
    {
      label: "Q·Kᵀ",
      shape: `${HEADS}×${SEQ}×${HD}×${SEQ}`,
      flops: 2 * HEADS * SEQ * HD * SEQ,
      pinion: () => abi.batchedMatMul(pq, pk, HEADS, SEQ, HD, SEQ, 1, scale, py),
      ort: () =>
        ortRunner(
          [{ op: "MatMul", inputs: ["q", "k"], outputs: ["y"] }],
          [
            { name: "q", dims: [HEADS, SEQ, HD], data: q },
            { name: "k", dims: [HEADS, HD, SEQ], data: kt },
          ],
          [HEADS, SEQ, SEQ],
          13,
        ),
    },
    {
      label: "Q·Kᵀ in place",
      shape: `${HEADS}×${SEQ}×${HD}×${SEQ}`,
      flops: 2 * HEADS * SEQ * HD * SEQ,
      pinion: () =>
        abi.batchedMatMulStrided(
          pqkv,
          D,
          HD,
          pqkv,
          D,
          HD,
          HEADS,
          SEQ,
          HD,
          SEQ,
          1,
          scale,
          py,
          SEQ,
          SEQ * SEQ,
        ),
      ort: async () => undefined,
    },
    {
      label: "P·V",
      shape: `${HEADS}×${SEQ}×${SEQ}×${HD}`,
      flops: 2 * HEADS * SEQ * SEQ * HD,
      pinion: () => abi.batchedMatMul(pp, pv, HEADS, SEQ, SEQ, HD, 0, 1, py),
      ort: () =>
        ortRunner(
          [{ op: "MatMul", inputs: ["p", "v"], outputs: ["y"] }],
          [
            { name: "p", dims: [HEADS, SEQ, SEQ], data: p },
            { name: "v", dims: [HEADS, SEQ, HD], data: v },
          ],
          [HEADS, SEQ, HD],
          13,
        ),
    },
    {
      label: "addBias",
      repeat: R,
      shape: `${SEQ}×${FF}`,
      pinion: () => abi.addBias(ph, SEQ, FF, pbias, py),
      ort: () =>
        ortRunner(
          [{ op: "Add", inputs: ["x", "b"], outputs: ["y"] }],
          [{ name: "x", dims: [1, SEQ, FF], data: h }],
          [1, SEQ, FF],
          13,
          [{ name: "b", dims: [FF], data: bias }],
          R,
        ),
    },
    {
      label: "meanPool",
      shape: `${SEQ}×${D}`,
      pinion: () => abi.meanPoolMasked(px, 1, SEQ, D, pkeep, py),
      // ORT's unmasked ReduceMean (opset 13 axes attribute): the masked form is a subgraph.
      ort: () =>
        ortRunner(
          [
            {
              op: "ReduceMean",
              inputs: ["x"],
              outputs: ["y"],
              attributes: { axes: [1], keepdims: 0 },
            },
          ],
          [{ name: "x", dims: [1, SEQ, D], data: x }],
          [1, D],
          13,
        ),
    },
    // What ORT's session.run costs around any one-op graph (inputs copied in, an output
    // tensor out): cheap ops' ratios above are mostly this.
    ...[D, FF].map((width): Case => ({
      label: "ort Identity",
      shape: `${SEQ}×${width}`,
      ort: () =>
        ortRunner(
          [{ op: "Identity", inputs: ["x"], outputs: ["y"] }],
          [{ name: "x", dims: [1, SEQ, width], data: width === D ? x : h }],
          [1, SEQ, width],
          13,
        ),
    })),
  ];

  print("");
  print(
    `transformer kernels (fp32), MiniLM-L6 sizes: seq ${SEQ}, d ${D}, ${HEADS} heads of ${HD}, ff ${FF}; ` +
      "ORT: same one-op graphs, optimised",
  );
  print(
    [
      "kernel".padEnd(14),
      "shape".padEnd(18),
      "pinion µs".padStart(10),
      "ort µs".padStart(9),
      "ratio".padStart(7),
      "GFLOP/s".padStart(8),
    ].join(" "),
  );
  for (const c of cases) {
    if (only && only !== "text" && !`text ${c.label} ${c.shape}`.includes(only)) continue;
    const theirs = await c.ort();
    const repeat = c.repeat ?? 1;
    const pinion = c.pinion;
    const ourRunner =
      pinion &&
      (() => {
        for (let i = 0; i < repeat; i++) pinion();
      });
    const runners = [ourRunner, theirs].filter((r): r is Runner => r !== undefined);
    const times = (await measure(runners)).map((t) => t / repeat);
    const ours = pinion ? times[0] : undefined;
    const ort = theirs ? times[times.length - 1] : undefined;
    const both = ours !== undefined && ort !== undefined;
    print(
      [
        c.label.padEnd(14),
        c.shape.padEnd(18),
        (ours === undefined ? "-" : (ours * 1e6).toFixed(1)).padStart(10),
        (ort === undefined ? "-" : (ort * 1e6).toFixed(1)).padStart(9),
        (both ? `${(ort / ours).toFixed(2)}×` : "-").padStart(7),
        (c.flops && ours ? (c.flops / ours / 1e9).toFixed(1) : "-").padStart(8),
      ].join(" "),
    );
  }
  abi.release(mark);
}
