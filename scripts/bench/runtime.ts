/**
 * @module
 * `npm run bench:runtime`: the int8 runtime against onnxruntime-web, in the same
 * worker (`wrangler dev`), on the same model (digits-mlp, the int8 version
 * forced to either runtime with `?runtime=`):
 *
 *   - in-worker compute per request at batch 1 (the compute phase of
 *     Server-Timing, averaged over `?repeat=N` runs inside one request, since
 *     workerd's clock only ticks in whole milliseconds); samples alternate
 *     between the runtimes, so a slow spell on a shared machine hits both;
 *   - end-to-end requests/s through wrangler dev (autocannon, loopback);
 *   - cold first inference: a fresh `wrangler dev` (fresh isolate: no manifest,
 *     plan, kernels or ORT loaded) per sample, once `/v2/health/ready` says the
 *     registry answers (as a load balancer would wait; without it the sample
 *     also times the local R2 emulator starting its storage), time from
 *     sending the first inference request to its answer; the median of
 *     `BENCH_COLD_SAMPLES` starts per runtime, alternating.
 *
 * Then the convolutional networks — digits-cnn (the demo's int8 version),
 * cnn-small (the fixture) and a MobileNetV2 at 96×96 generated here
 * (`scripts/lib/mobilenet.ts`, synthetic weights) — each published with
 * `--quantize int8` and run on both runtimes: in-worker compute at batch 1,
 * MobileNetV2's GOP/s against the `pmaddwd` peak, and cnn-small's cold first
 * answer.
 *
 * The table goes into docs/benchmarks.md (section bench:runtime; see `report.ts`).
 */
import autocannon from "autocannon";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pmaddwdPeakGops } from "../lib/cpu-peak";
import { startDevServer, type DevServer } from "../lib/dev-server";
import { mobileNetV2 } from "../lib/mobilenet";
import { recordBench } from "./report";

// workerd's clock ticks in whole milliseconds, so a sample reruns the compute
// enough times to last about SAMPLE_MS (the tick is then ~1 % of it); both
// runtimes' samples last about as long, so a slow spell on a shared machine
// weighs on them alike.
const SAMPLE_MS = Number(process.env.BENCH_SAMPLE_MS ?? 100);
const REPEAT_MAX = 1_000_000;
// Only the worker is measured: no GPU origin process competing for the CPU.
process.env.PINION_ORIGIN = "off";
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 15);
const COLD_SAMPLES = Number(process.env.BENCH_COLD_SAMPLES ?? 3);
const LOAD_SECONDS = Number(process.env.BENCH_LOAD_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const RUNTIMES = ["int8", "ort"] as const;

/** A model the bench measures: its infer path (version pinned) and one sample's shape. */
interface Subject {
  title: string;
  model: string;
  version: number;
  shape: number[];
  /** Multiply-accumulates per sample in group-1 convolutions and dense layers (for GOP/s). */
  gemmMacs?: number;
}

const MLP: Subject = { title: "digits-mlp", model: "digits-mlp", version: 2, shape: [1, 64] };

function requestBody(subject: Subject): string {
  const count = subject.shape.reduce((a, b) => a * b, 1);
  return JSON.stringify({
    inputs: [
      {
        name: "input",
        shape: subject.shape,
        datatype: "FP32",
        data: Array.from({ length: count }, (_, i) => (i % 17) / 16),
      },
    ],
  });
}
const bodies = new Map<Subject, string>();
const bodyOf = (subject: Subject) => {
  if (!bodies.has(subject)) bodies.set(subject, requestBody(subject));
  return bodies.get(subject)!;
};
const pathOf = (subject: Subject, runtime: string, extra = "") =>
  `/v2/models/${subject.model}/versions/${subject.version}/infer?runtime=${runtime}${extra}`;
const body = bodyOf(MLP);
const path = (runtime: string, extra = "") => pathOf(MLP, runtime, extra);

function phase(header: string | null, name: string): number {
  const match = new RegExp(`${name};dur=([\\d.]+)`).exec(header ?? "");
  return match ? Number(match[1]) : NaN;
}

/** One decimal below 100, none above (so the columns stay apart). */
const fixed = (value: number) => value.toFixed(value < 100 ? 1 : 0);

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function withServer<T>(
  work: (server: DevServer) => Promise<T>,
  seed: (persistTo: string) => Promise<void> = async () => {},
): Promise<T> {
  const persistTo = await mkdtemp(join(tmpdir(), "pinion-bench-"));
  await seed(persistTo);
  const server = await startDevServer(persistTo, [
    "--var",
    `PINION_BENCH_REPEAT_MAX:${REPEAT_MAX}`,
  ]);
  try {
    return await work(server);
  } finally {
    await server.stop();
    await rm(persistTo, { recursive: true, force: true });
  }
}

async function post(base: string, url: string, data = body) {
  const response = await fetch(base + url, {
    method: "POST",
    body: data,
    headers: { "content-type": "application/json" },
  });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
  return response;
}

async function coldFirstInference(
  runtime: string,
  subject: Subject = MLP,
  seed?: (persistTo: string) => Promise<void>,
) {
  return withServer(async (server) => {
    const ready = await fetch(`${server.base}/v2/health/ready`);
    if (!ready.ok) throw new Error(`not ready: ${ready.status} ${await ready.text()}`);
    const start = performance.now();
    const response = await post(server.base, pathOf(subject, runtime), bodyOf(subject));
    const wall = performance.now() - start;
    const timing = response.headers.get("server-timing");
    return { wall, load: phase(timing, "load"), compute: phase(timing, "compute") };
  }, seed);
}

/**
 * In-worker compute per request at batch 1, int8 against onnxruntime-web,
 * samples alternating, each sized from a probe to last about SAMPLE_MS.
 */
async function computeSamples(server: DevServer, subject: Subject, samples = SAMPLES) {
  const data = bodyOf(subject);
  const repeat: Record<string, number> = {};
  for (const runtime of RUNTIMES) {
    await post(server.base, pathOf(subject, runtime), data); // load, warm
    let probe = 10;
    for (;;) {
      const response = await post(server.base, pathOf(subject, runtime, `&repeat=${probe}`), data);
      const ms = phase(response.headers.get("server-timing"), "compute");
      if (ms >= SAMPLE_MS / 5 || probe >= REPEAT_MAX) {
        repeat[runtime] = Math.max(1, Math.min(REPEAT_MAX, Math.round((probe * SAMPLE_MS) / ms)));
        break;
      }
      probe = Math.min(REPEAT_MAX, probe * 10);
    }
  }
  const us: Record<string, number[]> = { int8: [], ort: [] };
  for (let i = 0; i < samples; i++) {
    for (const runtime of RUNTIMES) {
      const response = await post(
        server.base,
        pathOf(subject, runtime, `&repeat=${repeat[runtime]}`),
        data,
      );
      us[runtime]!.push(
        (phase(response.headers.get("server-timing"), "compute") / repeat[runtime]!) * 1000,
      );
    }
  }
  return Object.fromEntries(
    RUNTIMES.map((runtime) => [
      runtime,
      {
        us: median(us[runtime]!),
        range: `${fixed(Math.min(...us[runtime]!))}–${fixed(Math.max(...us[runtime]!))}`,
        repeat: repeat[runtime]!,
      },
    ]),
  ) as Record<(typeof RUNTIMES)[number], { us: number; range: string; repeat: number }>;
}

/** Publishes the CNN subjects that are not demo models (cnn-small, a generated MobileNetV2) as int8 versions. */
async function seedCnns(persistTo: string, mobilenet: Uint8Array | undefined): Promise<void> {
  const { openLocalR2 } = await import("../../origin/stores/local-r2");
  const { ModelRegistry } = await import("../../core/registry/registry");
  const { prepareVersion } = await import("../lib/prepare");
  const r2 = await openLocalR2(persistTo);
  try {
    const registry = new ModelRegistry(r2.store);
    const files: [string, string][] = [
      ["cnn-small", new URL("../../fixtures/cnn-small/cnn_small.onnx", import.meta.url).pathname],
    ];
    if (mobilenet) {
      const file = join(persistTo, "mobilenet_v2_96.onnx");
      await writeFile(file, mobilenet);
      files.push(["mobilenet-v2-96", file]);
    }
    for (const [name, file] of files) {
      const prepared = await prepareVersion(file, { quantize: "int8" });
      if (prepared.int8NotCompiled) throw new Error(`${name}: ${prepared.int8NotCompiled}`);
      await registry.publish({ name, ...prepared.fields, artifacts: prepared.artifacts });
    }
  } finally {
    await r2.dispose();
  }
}

async function main(): Promise<void> {
  console.log(
    "Pinion runtime benchmark: int8 plans against onnxruntime-web at batch 1, wrangler dev on loopback; digits-mlp (64→128→64→10) first",
  );
  console.log(
    `compute: median of ${SAMPLES} requests of ~${SAMPLE_MS} ms of in-worker runs each, alternating; load: ${CONNECTIONS} connections for ${LOAD_SECONDS} s; cold: median of ${COLD_SAMPLES} fresh wrangler dev starts per runtime\n`,
  );
  const warm = await withServer(async (server) => {
    const results: Record<
      string,
      { computeUs: number; computeRange: string; repeat: number; rps: number; p50: number }
    > = {};
    const load = (runtime: string, duration: number) =>
      autocannon({
        url: server.base + path(runtime),
        method: "POST",
        body,
        headers: { "content-type": "application/json" },
        connections: CONNECTIONS,
        duration,
      });
    // Warm both paths (JIT, caches) before measuring either, so order does not favour one.
    for (const runtime of RUNTIMES) await load(runtime, 2);
    const samples: Record<string, number[]> = { int8: [], ort: [] };
    // Load, then size each runtime's samples from a first estimate.
    const repeat: Record<string, number> = {};
    for (const runtime of RUNTIMES) {
      await post(server.base, path(runtime));
      const probe = 10000;
      const response = await post(server.base, path(runtime, `&repeat=${probe}`));
      const ms = Math.max(phase(response.headers.get("server-timing"), "compute"), 1);
      repeat[runtime] = Math.min(REPEAT_MAX, Math.round((probe * SAMPLE_MS) / ms / 100) * 100);
    }
    for (let i = 0; i < SAMPLES; i++) {
      for (const runtime of RUNTIMES) {
        const response = await post(server.base, path(runtime, `&repeat=${repeat[runtime]}`));
        samples[runtime]!.push(
          (phase(response.headers.get("server-timing"), "compute") / repeat[runtime]!) * 1000,
        );
      }
    }
    for (const runtime of RUNTIMES) {
      const measured = await load(runtime, LOAD_SECONDS);
      if (measured.non2xx > 0 || measured.errors > 0) {
        throw new Error(`${runtime}: ${measured.non2xx} non-2xx, ${measured.errors} errors`);
      }
      results[runtime] = {
        computeUs: median(samples[runtime]!),
        repeat: repeat[runtime]!,
        computeRange: `${Math.min(...samples[runtime]!).toFixed(2)}–${Math.max(...samples[runtime]!).toFixed(2)}`,
        rps: measured.requests.average,
        p50: measured.latency.p50,
      };
    }
    return results;
  });
  const coldRuns: Record<string, Awaited<ReturnType<typeof coldFirstInference>>[]> = {
    int8: [],
    ort: [],
  };
  for (let i = 0; i < COLD_SAMPLES; i++) {
    for (const runtime of RUNTIMES) coldRuns[runtime]!.push(await coldFirstInference(runtime));
  }
  const cold = Object.fromEntries(
    RUNTIMES.map((runtime) => {
      const runs = coldRuns[runtime]!;
      return [
        runtime,
        { wall: median(runs.map((r) => r.wall)), load: median(runs.map((r) => r.load)) },
      ];
    }),
  );

  const printed: string[] = [];
  const row = (cells: string[]) => {
    const line = cells.map((c, i) => (i === 0 ? c.padEnd(24) : ` ${c}`.padStart(12))).join("");
    console.log(line);
    printed.push(line);
  };
  row(["", "int8", "ort", "int8 vs ort"]);
  const ratio = (a: number, b: number, better: "lower" | "higher") =>
    `${(better === "lower" ? b / a : a / b).toFixed(1)}×`;
  const int8 = warm.int8!;
  const ort = warm.ort!;
  row([
    "compute / request (µs)",
    int8.computeUs.toFixed(2),
    ort.computeUs.toFixed(2),
    ratio(int8.computeUs, ort.computeUs, "lower"),
  ]);
  row(["  min–max of samples", int8.computeRange, ort.computeRange, ""]);
  row(["  runs per sample", String(int8.repeat), String(ort.repeat), ""]);
  row([
    "requests/s (e2e)",
    int8.rps.toFixed(0),
    ort.rps.toFixed(0),
    ratio(int8.rps, ort.rps, "higher"),
  ]);
  row(["latency p50 (ms, e2e)", String(int8.p50), String(ort.p50), ""]);
  row([
    "cold first answer (ms)",
    cold.int8!.wall.toFixed(0),
    cold.ort!.wall.toFixed(0),
    ratio(cold.int8!.wall, cold.ort!.wall, "lower"),
  ]);
  row(["  of which load (ms)", String(cold.int8!.load), String(cold.ort!.load), ""]);

  // Convolutional networks: graph plans against onnxruntime-web, same versions, batch 1.
  const net = mobileNetV2();
  const cnns: Subject[] = [
    { title: "digits-cnn", model: "digits-cnn", version: 2, shape: [1, 1, 8, 8] },
    { title: "cnn-small", model: "cnn-small", version: 1, shape: [1, 3, 16, 16] },
    {
      title: `MobileNetV2 96×96`,
      model: "mobilenet-v2-96",
      version: 1,
      shape: [1, 3, 96, 96],
      gemmMacs: net.gemmMacs,
    },
  ];
  console.log(
    `\nCNNs: digits-cnn (demo v2), cnn-small (fixture) and a generated MobileNetV2 at 96×96 (${(net.macs / 1e6).toFixed(1)} M MACs, ${(net.parameters / 1e6).toFixed(2)} M parameters, synthetic weights), published with --quantize int8\n`,
  );
  const conv = await withServer(
    async (server) => {
      const out = new Map<Subject, Awaited<ReturnType<typeof computeSamples>>>();
      for (const subject of cnns) {
        out.set(subject, await computeSamples(server, subject, subject.gemmMacs ? 7 : SAMPLES));
      }
      return out;
    },
    (dir) => seedCnns(dir, net.onnx),
  );
  const cnnCold: Record<string, number[]> = { int8: [], ort: [] };
  for (let i = 0; i < COLD_SAMPLES; i++) {
    for (const runtime of RUNTIMES) {
      const run = await coldFirstInference(runtime, cnns[1]!, (dir) => seedCnns(dir, undefined));
      cnnCold[runtime]!.push(run.wall);
    }
  }
  row(["", "int8", "ort", "int8 vs ort"]);
  for (const subject of cnns) {
    const r = conv.get(subject)!;
    row([
      `${subject.title} (µs)`,
      fixed(r.int8.us),
      fixed(r.ort.us),
      ratio(r.int8.us, r.ort.us, "lower"),
    ]);
    row(["  min–max of samples", r.int8.range, r.ort.range, ""]);
  }
  const big = conv.get(cnns[2]!)!;
  const gops = (2 * net.gemmMacs) / (big.int8.us * 1e3);
  const peak = pmaddwdPeakGops();
  row([
    "  int8 GOP/s (conv+fc)",
    gops.toFixed(1),
    ((2 * net.gemmMacs) / (big.ort.us * 1e3)).toFixed(1),
    "",
  ]);
  if (peak) {
    row([
      `  of pmaddwd peak`,
      `${((100 * gops) / peak.gops).toFixed(0)} %`,
      "",
      `(${peak.gops.toFixed(0)} GOP/s)`,
    ]);
  }
  row([
    "cnn-small cold (ms)",
    median(cnnCold.int8!).toFixed(0),
    median(cnnCold.ort!).toFixed(0),
    ratio(median(cnnCold.int8!), median(cnnCold.ort!), "lower"),
  ]);
  if (peak) {
    const note = `pmaddwd peak: 2 per cycle × 8 MACs × 2 ops at ${peak.mhz} MHz (the CPU clock the OS reports); GOP/s counts group-1 conv and dense MACs over the whole model's time (depthwise and pooling included)`;
    console.log(note);
    printed.push(note);
  }
  await recordBench("runtime", printed.join("\n"));
}

await main();
