/**
 * @module
 * `npm run bench:explain`: the cost of one KernelSHAP explanation (1,000
 * coalitions) of a digits-mlp prediction, in the worker (`wrangler dev`), on
 * the int8 runtime against onnxruntime-web — the same version, forced to
 * either runtime with `?runtime=`:
 *
 *   - in-worker time per explanation: the compute phase of Server-Timing,
 *     averaged over `?repeat=N` explanations inside one request (workerd's
 *     clock ticks in whole milliseconds), samples alternating between the
 *     runtimes so a slow spell on a shared machine hits both; with the
 *     golden-mean baseline (one reference row: 1,000 evaluations) and with a
 *     10-row background set (10,000 evaluations);
 *   - beside it, 1,000 batch-1 inferences' compute on the same runtime (the
 *     "1,000 micro-requests" an explanation is weighed against).
 *
 * The table goes into docs/benchmarks.md (section bench:explain; see `report.ts`).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDevServer } from "../lib/dev-server";
import { recordBench } from "./report";

const SAMPLE_MS = Number(process.env.BENCH_SAMPLE_MS ?? 200);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 9);
const COALITIONS = 1000;
const BACKGROUND_ROWS = 10;
const REPEAT_MAX = 100_000;
const RUNTIMES = ["int8", "ort"] as const;
// Only the worker is measured: no GPU origin process competing for the CPU.
process.env.PINION_ORIGIN = "off";

const FIXTURE = new URL("../../fixtures/digits-mlp/", import.meta.url).pathname;

interface Case {
  title: string;
  path: (runtime: string, repeat: number) => string;
  body: string;
}

function phase(header: string | null, name: string): number {
  const match = new RegExp(`${name};dur=([\\d.]+)`).exec(header ?? "");
  return match ? Number(match[1]) : NaN;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const fixed = (value: number, digits = 2) => value.toFixed(value < 10 ? digits : 1);

async function post(url: string, body: string): Promise<Response> {
  const response = await fetch(url, {
    method: "POST",
    body,
    headers: { "content-type": "application/json" },
  });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
  return response;
}

/** Publishes digits-mlp (int8 plan, golden cases, a background set) into local R2 at `persistTo`. */
async function seed(persistTo: string, background: number[][]): Promise<void> {
  const { openLocalR2 } = await import("../../origin/stores/local-r2");
  const { ModelRegistry } = await import("../../core/registry/registry");
  const { prepareVersion } = await import("../lib/prepare");
  const backgroundFile = join(persistTo, "background.json");
  await writeFile(backgroundFile, JSON.stringify(background));
  const prepared = await prepareVersion(join(FIXTURE, "digits_mlp.onnx"), {
    quantize: "int8",
    golden: join(FIXTURE, "testset.json"),
    background: backgroundFile,
  });
  if (prepared.int8NotCompiled) throw new Error(`digits-mlp: ${prepared.int8NotCompiled}`);
  const r2 = await openLocalR2(persistTo);
  try {
    await new ModelRegistry(r2.store).publish({
      name: "digits-mlp",
      ...prepared.fields,
      artifacts: prepared.artifacts,
    });
  } finally {
    await r2.dispose();
  }
}

/** Milliseconds of in-worker compute per run of `c`, per runtime: medians of alternating samples. */
async function measure(base: string, c: Case) {
  const repeat: Record<string, number> = {};
  for (const runtime of RUNTIMES) {
    await post(base + c.path(runtime, 1), c.body); // load, warm
    let probe = 1;
    for (;;) {
      const response = await post(base + c.path(runtime, probe), c.body);
      const ms = phase(response.headers.get("server-timing"), "compute");
      if (ms >= SAMPLE_MS / 5 || probe >= REPEAT_MAX) {
        repeat[runtime] = Math.max(1, Math.min(REPEAT_MAX, Math.round((probe * SAMPLE_MS) / ms)));
        break;
      }
      probe = Math.min(REPEAT_MAX, probe * 10);
    }
  }
  const ms: Record<string, number[]> = { int8: [], ort: [] };
  for (let i = 0; i < SAMPLES; i++) {
    for (const runtime of RUNTIMES) {
      const response = await post(base + c.path(runtime, repeat[runtime]!), c.body);
      ms[runtime]!.push(phase(response.headers.get("server-timing"), "compute") / repeat[runtime]!);
    }
  }
  return Object.fromEntries(
    RUNTIMES.map((runtime) => [
      runtime,
      { ms: median(ms[runtime]!), min: Math.min(...ms[runtime]!), max: Math.max(...ms[runtime]!) },
    ]),
  ) as Record<(typeof RUNTIMES)[number], { ms: number; min: number; max: number }>;
}

async function main(): Promise<void> {
  const cases = JSON.parse(await readFile(join(FIXTURE, "testset.json"), "utf8")) as {
    inputs: number[][];
  };
  const x = cases.inputs[0]!;
  const background = cases.inputs.slice(1, 1 + BACKGROUND_ROWS);
  const explainBody = (parameters: Record<string, unknown>) =>
    JSON.stringify({
      inputs: [{ name: "input", datatype: "FP32", shape: [1, 64], data: x }],
      parameters: { method: "shap", samples: COALITIONS, seed: 1, ...parameters },
    });
  const explainPath = (runtime: string, repeat: number) =>
    `/v2/models/digits-mlp/versions/1/explain?runtime=${runtime}&repeat=${repeat}`;
  const benchCases: Case[] = [
    {
      title: `KernelSHAP, ${COALITIONS} coalitions, golden-mean baseline (${COALITIONS + 2} evaluations)`,
      path: explainPath,
      body: explainBody({ baseline: "golden" }),
    },
    {
      title: `KernelSHAP, ${COALITIONS} coalitions, ${BACKGROUND_ROWS}-row background (${COALITIONS * BACKGROUND_ROWS + BACKGROUND_ROWS + 1} evaluations)`,
      path: explainPath,
      body: explainBody({ baseline: "background" }),
    },
    {
      title: `${COALITIONS} batch-1 inferences (compute only)`,
      // One inference's compute, scaled to 1,000 below.
      path: (runtime, repeat) =>
        `/v2/models/digits-mlp/versions/1/infer?runtime=${runtime}&repeat=${repeat}`,
      body: JSON.stringify({
        inputs: [{ name: "input", datatype: "FP32", shape: [1, 64], data: x }],
      }),
    },
  ];
  console.log(
    "Pinion explanation benchmark: digits-mlp (64→128→64→10), one input, wrangler dev on loopback",
  );
  console.log(
    `in-worker compute per explanation: median of ${SAMPLES} requests of ~${SAMPLE_MS} ms of repeated runs each, runtimes alternating\n`,
  );
  const persistTo = await mkdtemp(join(tmpdir(), "pinion-bench-explain-"));
  const rows: string[][] = [];
  try {
    await seed(persistTo, background);
    const server = await startDevServer(persistTo, [
      "--var",
      `PINION_BENCH_REPEAT_MAX:${REPEAT_MAX}`,
    ]);
    try {
      for (const [i, c] of benchCases.entries()) {
        const result = await measure(server.base, c);
        // The last case is one inference; it stands for 1,000 of them.
        const scale = i === benchCases.length - 1 ? COALITIONS : 1;
        const cell = (r: { ms: number; min: number; max: number }) =>
          `${fixed(r.ms * scale)} ms (${fixed(r.min * scale)}–${fixed(r.max * scale)})`;
        rows.push([
          c.title,
          cell(result.int8),
          cell(result.ort),
          `${(result.ort.ms / result.int8.ms).toFixed(1)}×`,
        ]);
      }
    } finally {
      await server.stop();
    }
  } finally {
    await rm(persistTo, { recursive: true, force: true });
  }
  const header = ["", "int8", "onnxruntime-web", "ort / int8"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const table = [header, ...rows]
    .map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  "))
    .join("\n");
  console.log(table);
  await recordBench("explain", table);
}

await main();
