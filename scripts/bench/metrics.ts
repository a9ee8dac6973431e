/**
 * `npm run bench:metrics`: what counting every request costs. Two `wrangler
 * dev` servers on the demo models, identical but for METRICS_ENABLED (true /
 * false, flush interval as deployed: METRICS_FLUSH_MS 5000), take turns under
 * the same autocannon load on `simple`'s int8 version — the cheapest model,
 * so the per-request overhead weighs most — for BENCH_ROUNDS rounds of
 * BENCH_SECONDS each, alternating which goes first. Prints the median
 * requests/s and latency of each and the overhead (1 − on/off), and records
 * them in docs/benchmarks.md (section bench:metrics). The target: under 5 %.
 */
import autocannon from "autocannon";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MetricsRecorder, type RequestSample } from "../../core/serving/metrics";
import { startDevServer, type DevServer } from "../lib/dev-server";
import { recordBench } from "./report";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const PATH = "/v2/models/simple/versions/2/infer";
const BODY = JSON.stringify({
  inputs: [
    {
      name: "input",
      shape: [1, 10],
      datatype: "FP32",
      data: Array.from({ length: 10 }, (_, i) => i / 10),
    },
  ],
});

interface Run {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

function load(base: string, seconds: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `${base}${PATH}`,
        method: "POST",
        headers: { "content-type": "application/json" },
        body: BODY,
        connections: CONNECTIONS,
        duration: seconds,
      },
      (error, result) =>
        error
          ? reject(error)
          : resolve({
              rps: result.requests.average,
              p50: result.latency.p50,
              p99: result.latency.p99,
              non2xx: result.non2xx,
              errors: result.errors,
            }),
    );
  });
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/**
 * The recorder's own cost per request, in this process (a store that keeps nothing): what the
 * worker does on the way out of each request, free of the load test's noise.
 */
async function recorderCost(): Promise<number> {
  const recorder = new MetricsRecorder(
    { write: async () => {}, read: async () => ({ model: "", sinceMs: null, at: 0, series: [] }) },
    5000,
  );
  const sample = (i: number): RequestSample => ({
    model: "simple",
    version: 1 + (i % 2),
    alias: "production",
    statusClass: i % 50 === 0 ? "5xx" : "2xx",
    ...(i % 50 === 0 ? { errorKind: "internal" } : {}),
    totalMs: (i % 37) * 0.7,
    computeMs: (i % 11) * 0.1,
    decodeMs: 0.05,
    runtime: "int8",
    coldLoad: false,
    bytesIn: 130,
    bytesOut: 320,
  });
  const times: number[] = [];
  for (let round = 0; round < 5; round++) {
    const calls = 200_000;
    const start = performance.now();
    for (let i = 0; i < calls; i++) void recorder.observe(sample(i));
    times.push(((performance.now() - start) * 1e6) / calls);
  }
  await recorder.flush();
  return median(times);
}

const dirs: string[] = [];
const servers: DevServer[] = [];
try {
  const start = async (enabled: boolean) => {
    const dir = await mkdtemp(join(tmpdir(), `pinion-bench-metrics-${enabled ? "on" : "off"}-`));
    dirs.push(dir);
    const server = await startDevServer(dir, ["--var", `METRICS_ENABLED:${enabled}`]);
    servers.push(server);
    return server;
  };
  console.log("starting two wrangler dev servers (metrics on, metrics off)…");
  const on = await start(true);
  const off = await start(false);
  // Warm both: the version loaded, the JIT settled.
  await load(on.base, 3);
  await load(off.base, 3);
  const runs: Record<"on" | "off", Run[]> = { on: [], off: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const order: ["on" | "off", DevServer][] =
      round % 2 === 0
        ? [
            ["on", on],
            ["off", off],
          ]
        : [
            ["off", off],
            ["on", on],
          ];
    for (const [name, server] of order) {
      const run = await load(server.base, SECONDS);
      runs[name].push(run);
      console.log(
        `round ${round + 1} metrics ${name.padEnd(3)}: ${run.rps.toFixed(0)} requests/s, p50 ${run.p50} ms, p99 ${run.p99} ms`,
      );
    }
  }
  const failed = [...runs.on, ...runs.off].reduce((n, r) => n + r.non2xx + r.errors, 0);
  const rpsOn = median(runs.on.map((r) => r.rps));
  const rpsOff = median(runs.off.map((r) => r.rps));
  const overhead = 1 - rpsOn / rpsOff;
  // Each round's pair ran back to back, so their ratio cancels most of what else the machine does.
  const paired = 1 - median(runs.on.map((r, i) => r.rps / runs.off[i]!.rps));
  const table = [
    `${CONNECTIONS} connections, POST ${PATH} (int8), ${ROUNDS} rounds × ${SECONDS} s each, medians:`,
    "",
    "metrics   requests/s   p50 ms   p99 ms",
    `on        ${rpsOn.toFixed(0).padStart(10)}   ${median(runs.on.map((r) => r.p50))
      .toFixed(1)
      .padStart(6)}   ${median(runs.on.map((r) => r.p99))
      .toFixed(1)
      .padStart(6)}`,
    `off       ${rpsOff.toFixed(0).padStart(10)}   ${median(runs.off.map((r) => r.p50))
      .toFixed(1)
      .padStart(6)}   ${median(runs.off.map((r) => r.p99))
      .toFixed(1)
      .padStart(6)}`,
    "",
    `overhead: ${(overhead * 100).toFixed(1)} % fewer requests/s with metrics on (medians); ` +
      `${(paired * 100).toFixed(1)} % (median of the rounds' on/off ratios); target: under 5 %`,
    `failed requests: ${failed}`,
    "",
    `MetricsRecorder.observe, in-process (no I/O; median of 5 × 200 000 calls): ${(await recorderCost()).toFixed(0)} ns per request`,
  ].join("\n");
  console.log(`\n${table}`);
  await recordBench("metrics", table);
  if (failed > 0) process.exitCode = 1;
} finally {
  for (const server of servers) await server.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
}
