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
 * The table goes into docs/benchmarks.md (section bench:runtime; see `report.ts`).
 */
import autocannon from "autocannon";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDevServer, type DevServer } from "../lib/dev-server";
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

const body = JSON.stringify({
  inputs: [
    {
      name: "input",
      shape: [1, 64],
      datatype: "FP32",
      data: Array.from({ length: 64 }, (_, i) => (i % 17) / 16),
    },
  ],
});
const path = (runtime: string, extra = "") =>
  `/v2/models/digits-mlp/versions/2/infer?runtime=${runtime}${extra}`;

function phase(header: string | null, name: string): number {
  const match = new RegExp(`${name};dur=([\\d.]+)`).exec(header ?? "");
  return match ? Number(match[1]) : NaN;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function withServer<T>(work: (server: DevServer) => Promise<T>): Promise<T> {
  const persistTo = await mkdtemp(join(tmpdir(), "pinion-bench-"));
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

async function post(base: string, url: string) {
  const response = await fetch(base + url, {
    method: "POST",
    body,
    headers: { "content-type": "application/json" },
  });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
  return response;
}

async function coldFirstInference(runtime: string) {
  return withServer(async (server) => {
    const ready = await fetch(`${server.base}/v2/health/ready`);
    if (!ready.ok) throw new Error(`not ready: ${ready.status} ${await ready.text()}`);
    const start = performance.now();
    const response = await post(server.base, path(runtime));
    const wall = performance.now() - start;
    const timing = response.headers.get("server-timing");
    return { wall, load: phase(timing, "load"), compute: phase(timing, "compute") };
  });
}

async function main(): Promise<void> {
  console.log(
    "Pinion runtime benchmark: digits-mlp (64→128→64→10) at batch 1, wrangler dev on loopback",
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
    const line = cells.map((c, i) => (i === 0 ? c.padEnd(24) : c.padStart(12))).join("");
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
  await recordBench("runtime", printed.join("\n"));
}

await main();
