/**
 * @module
 * `npm run bench:kernels`: int8 GEMM throughput of Pinion's WASM kernels
 * against onnxruntime-web (MatMulInteger u8×s8 and fp32 MatMul, WASM, one
 * thread) and a plain JS loop, all in this one process and run. Prints the
 * median GOP/s (2·M·K·N / time) of each, the ratios to ORT, and the share of
 * this machine's single-core pmaddwd peak; then MobileNetV2-like convolutions
 * (int8 conv, depthwise) against ORT's fp32 Conv (`cnn-kernels.ts`), and the
 * fp32 transformer-encoder kernels at MiniLM sizes against ORT's one-op graphs
 * (`text-kernels.ts`; `BENCH_ONLY=text` alone).
 *
 * A full run (no BENCH_ONLY) records the table in docs/benchmarks.md
 * (section bench:kernels; see `report.ts`).
 */
import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus } from "node:os";
import { kernelsPath, loadKernels } from "../lib/kernels-node";
import { ElemType, buildModel, ort, session } from "../lib/onnx-graph";
import { benchConvolutions } from "./cnn-kernels";
import { benchTransformer } from "./text-kernels";
import { recordBench } from "./report";

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 15);
/** Only shapes whose "M×K×N" contains this (e.g. BENCH_ONLY=64×784). */
const ONLY = process.env.BENCH_ONLY;
const SAMPLE_MS = Number(process.env.BENCH_SAMPLE_MS ?? 60);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000);

const SHAPES: [number, number, number, string][] = [
  [1, 784, 256, "K=784 N=256"],
  [8, 784, 256, "K=784 N=256"],
  [64, 784, 256, "K=784 N=256"],
  [1, 64, 128, "digits fc1"],
  [1, 128, 64, "digits fc2"],
  [1, 64, 10, "digits fc3"],
  [64, 64, 128, "digits fc1"],
  [64, 128, 64, "digits fc2"],
  [64, 64, 10, "digits fc3"],
];

type Runner = () => unknown | Promise<unknown>;

/** Calls per sample so that one sample lasts about SAMPLE_MS (after a warm-up). */
async function calibrate(fn: Runner): Promise<number> {
  let iterations = 1;
  for (;;) {
    const start = performance.now();
    for (let i = 0; i < iterations; i++) await fn();
    const ms = performance.now() - start;
    if (ms >= SAMPLE_MS / 4) return Math.max(1, Math.round((iterations * SAMPLE_MS) / ms));
    iterations *= 4;
  }
}

/**
 * Median seconds per call of each runner. Samples are interleaved (one of
 * each runner per round), so a slow moment of this shared machine hits all
 * peers alike instead of skewing one of them.
 */
/**
 * Runs `fn` for `ms`: V8 first runs WebAssembly in its baseline compiler and
 * tiers hot functions up later, so every peer is warmed before any sample.
 */
async function warmUp(fn: Runner, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) await fn();
}

async function measure(runners: Runner[]): Promise<number[]> {
  for (const fn of runners) await warmUp(fn, WARMUP_MS);
  const iterations: number[] = [];
  for (const fn of runners) iterations.push(await calibrate(fn));
  const samples: number[][] = runners.map(() => []);
  for (let s = 0; s < SAMPLES; s++) {
    for (const [r, fn] of runners.entries()) {
      const start = performance.now();
      for (let i = 0; i < iterations[r]!; i++) await fn();
      samples[r]!.push((performance.now() - start) / 1000 / iterations[r]!);
    }
  }
  return samples.map((perCall) => perCall.sort((a, b) => a - b)[Math.floor(perCall.length / 2)]!);
}

function seeded(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

async function ortMatMulInteger(m: number, k: number, n: number, a: Uint8Array, w: Int8Array) {
  const model = buildModel(
    [{ op: "MatMulInteger", inputs: ["A", "B", "a_zp", "b_zp"], outputs: ["Y"] }],
    [
      { name: "A", type: ElemType.UINT8, dims: ["M", k] },
      { name: "a_zp", type: ElemType.UINT8, dims: [] },
    ],
    [{ name: "Y", type: ElemType.INT32, dims: ["M", n] }],
    10,
    [
      { name: "B", type: ElemType.INT8, dims: [k, n], data: w },
      { name: "b_zp", type: ElemType.INT8, dims: [], data: Int8Array.of(0) },
    ],
  );
  const s = await session(model, true);
  const zp = new ort.Tensor("uint8", Uint8Array.of(128), []);
  return () => s.run({ A: new ort.Tensor("uint8", a, [m, k]), a_zp: zp });
}

async function ortMatMulF32(m: number, k: number, n: number, x: Float32Array, w: Float32Array) {
  const model = buildModel(
    [{ op: "MatMul", inputs: ["X", "W"], outputs: ["Y"] }],
    [{ name: "X", type: ElemType.FLOAT, dims: ["M", k] }],
    [{ name: "Y", type: ElemType.FLOAT, dims: ["M", n] }],
    13,
    [{ name: "W", type: ElemType.FLOAT, dims: [k, n], data: w }],
  );
  const s = await session(model, true);
  return () => s.run({ X: new ort.Tensor("float32", x, [m, k]) });
}

function jsLoop(m: number, k: number, n: number, x: Float32Array, w: Float32Array) {
  const y = new Float32Array(m * n);
  return () => {
    y.fill(0);
    for (let r = 0; r < m; r++) {
      for (let i = 0; i < k; i++) {
        const xv = x[r * k + i]!;
        const row = i * n;
        const out = r * n;
        for (let c = 0; c < n; c++) y[out + c]! += xv * w[row + c]!;
      }
    }
    return y;
  };
}

/** The core clock: Node's figure, else the kernel's current "cpu MHz" (VMs often report 0 to Node). */
function clockGHz(nodeMHz: number): number {
  if (nodeMHz > 0) return nodeMHz / 1000;
  try {
    const mhz = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (mhz) return Number(mhz[1]) / 1000;
  } catch {
    // not Linux
  }
  return NaN;
}

const fmt = (v: number, digits = 1) => v.toFixed(digits).padStart(8);

async function main(): Promise<void> {
  ort.env.wasm.numThreads = 1;
  const kernels = await loadKernels("release");
  const cpu = cpus()[0]!;
  const ghz = clockGHz(cpu.speed);
  const peak = 32 * ghz;
  // What docs/benchmarks.md gets: the peak estimate and the table.
  const printed: string[] = [];
  const print = (line: string) => {
    console.log(line);
    printed.push(line);
  };
  console.log(
    `Pinion int8 kernels vs onnxruntime-web ${ort.env.versions.web} (WASM SIMD, 1 thread)`,
  );
  console.log(`${cpu.model.trim()}, ${cpus().length} cores, Node ${process.version}`);
  print(
    `single-core peak estimate: pmaddwd 32 int8 ops/cycle × ${ghz.toFixed(2)} GHz = ${peak.toFixed(1)} GOP/s`,
  );
  const ortWasm = createRequire(import.meta.url).resolve(
    "onnxruntime-web/ort-wasm-simd-threaded.wasm",
  );
  const kb = (path: string | URL) => `${(statSync(path).size / 1024).toFixed(1)} KB`;
  console.log(
    `module size: pinion release ${kb(kernelsPath("release"))}, debug ${kb(kernelsPath("debug"))}; ` +
      `onnxruntime-web ${(statSync(ortWasm).size / 1024 / 1024).toFixed(1)} MB`,
  );
  console.log(`medians of ${SAMPLES} samples of ~${SAMPLE_MS} ms each; GOP/s = 2·M·K·N / time\n`);
  printed.push(
    `medians of ${SAMPLES} samples of ~${SAMPLE_MS} ms each; GOP/s = 2·M·K·N / time`,
    "",
  );
  const header = [
    "M×K×N".padEnd(12),
    "shape".padEnd(12),
    "pinion gemm".padStart(12),
    "pinion fused".padStart(13),
    "ort MMInt".padStart(10),
    "ort f32".padStart(8),
    "js f32".padStart(8),
    "gemm/ort".padStart(9),
    "fused/ort".padStart(10),
    "gemm %peak".padStart(11),
  ];
  print(header.join(" "));

  for (const [m, k, n, label] of SHAPES) {
    if (ONLY && !`${m}×${k}×${n}`.includes(ONLY)) continue;
    const rand = seeded(m * 1_000_003 + k * 1009 + n);
    const a = Uint8Array.from({ length: m * k }, () => Math.floor(rand() * 256));
    const x = Float32Array.from({ length: m * k }, () => rand() * 2 - 1);
    const w8 = Int8Array.from({ length: k * n }, () => Math.floor(rand() * 256) - 128);
    const wf = Float32Array.from(w8, (v) => v / 128);
    const scales = Float32Array.from({ length: n }, () => 0.01);
    const bias = new Float32Array(n);

    kernels.reset();
    const packed = kernels.packWeights(w8, k, n);
    const ops = 2 * m * k * n;
    const gops = (seconds: number) => ops / seconds / 1e9;

    const [gemm, fused, mmi, f32, js] = (
      await measure([
        () => kernels.matMulPacked(a, m, 128, packed),
        () => kernels.fusedLinear(x, m, packed, scales, bias, "relu"),
        await ortMatMulInteger(m, k, n, a, w8),
        await ortMatMulF32(m, k, n, x, wf),
        jsLoop(m, k, n, x, wf),
      ])
    ).map(gops) as [number, number, number, number, number];
    print(
      [
        `${m}×${k}×${n}`.padEnd(12),
        label.padEnd(12),
        fmt(gemm).padStart(12),
        fmt(fused).padStart(13),
        fmt(mmi).padStart(10),
        fmt(f32),
        fmt(js),
        `${(gemm / mmi).toFixed(2)}×`.padStart(9),
        `${(fused / mmi).toFixed(2)}×`.padStart(10),
        `${((gemm / peak) * 100).toFixed(0)}%`.padStart(11),
      ].join(" "),
    );
  }
  kernels.reset();
  // BENCH_ONLY=cnn runs the convolutions alone (their labels start with "cnn").
  if (!ONLY || ONLY.startsWith("cnn")) await benchConvolutions(measure, print, peak, ONLY);
  // BENCH_ONLY=text runs the transformer kernels alone (their labels start with "text").
  if (!ONLY || ONLY.startsWith("text")) await benchTransformer(measure, print, ONLY);
  // A run of one shape (BENCH_ONLY) is not the whole table: it is printed, not recorded.
  if (!ONLY) await recordBench("kernels", printed.join("\n"));
}

await main();
