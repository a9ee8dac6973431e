/**
 * @module
 * `npm run bench:origin`: what the edge hop adds for an origin-placed version.
 * A fresh `wrangler dev` with its GPU origin beside it (`npm start`'s script,
 * demo models seeded into a temporary local R2); a small model published with
 * `--placement origin` through the admin API; then, in one run, the same
 * inference request sent through the edge (`/v2/models/{name}/versions/1/infer`,
 * forwarded by the worker) and straight to the origin (the pinned path, with
 * the origin token and the sha256 header, as the worker sends it):
 *
 * - sequential: BENCH_REQUESTS requests each, edge and direct interleaved one
 *   by one so both see the same machine state, over kept-alive connections;
 *   for reference, the same model published again with `--placement edge` and
 *   answered by the worker itself is measured in the same rotation (what any
 *   request through wrangler dev costs);
 * - concurrent: autocannon with BENCH_CONNECTIONS connections for
 *   BENCH_SECONDS seconds against each in turn (BENCH_SECONDS=0 skips it).
 *
 * Prints median and p99 latency for each and what the hop adds (difference
 * and ratio). Every answer is checked (status 200; through the edge,
 * `x-pinion-runtime: origin`; the same outputs both ways).
 *
 * Knobs (environment): BENCH_MODEL (simple | digits-mlp; default simple),
 * BENCH_REQUESTS (1000), BENCH_WARMUP (100), BENCH_CONNECTIONS (8),
 * BENCH_SECONDS (5).
 *
 * A run that completes records its tables in docs/benchmarks.md (section
 * bench:origin; see `report.ts`).
 */
import autocannon from "autocannon";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Manifest } from "../../core/registry/manifest";
import { startDevServer, type DevServer } from "../lib/dev-server";
import { prepareVersion } from "../lib/prepare";
import { openTarget } from "../lib/targets";
import { recordBench } from "./report";

const MODELS = {
  simple: { file: "seed-simple/simple_model.onnx", golden: "seed-simple/cases.json" },
  "digits-mlp": { file: "digits-mlp/digits_mlp.onnx", golden: "digits-mlp/testset.json" },
} as const;
type ModelKey = keyof typeof MODELS;

const MODEL_KEY = (process.env.BENCH_MODEL ?? "simple") as ModelKey;
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 1000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 100);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const NAME = "bench-origin";

const fixture = (path: string) => fileURLToPath(new URL(`../../fixtures/${path}`, import.meta.url));

/** The q-quantile of sorted values, by the nearest-rank method. */
function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

interface Stats {
  median: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

function stats(samples: readonly number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    median: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    mean: sorted.reduce((s, v) => s + v, 0) / sorted.length,
    min: sorted[0]!,
    max: sorted.at(-1)!,
  };
}

async function until(what: string, probe: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface Endpoint {
  label: string;
  url: string;
  headers: Record<string, string>;
  /** Checks one answer; throws on anything wrong. Returns the outputs' data as text. */
  check(response: Response, text: string): string;
}

async function once(endpoint: Endpoint, body: string): Promise<{ ms: number; outputs: string }> {
  const started = performance.now();
  const response = await fetch(endpoint.url, {
    method: "POST",
    headers: endpoint.headers,
    body,
  });
  const text = await response.text();
  const ms = performance.now() - started;
  return { ms, outputs: endpoint.check(response, text) };
}

function checker(label: string, model: string, viaEdge: boolean): Endpoint["check"] {
  return (response, text) => {
    if (response.status !== 200) {
      throw new Error(`${label}: status ${response.status}: ${text.slice(0, 300)}`);
    }
    if (response.headers.get("x-pinion-model") !== model) {
      throw new Error(`${label}: answered by ${response.headers.get("x-pinion-model")}`);
    }
    if (viaEdge && response.headers.get("x-pinion-runtime") !== "origin") {
      throw new Error(`${label}: x-pinion-runtime ${response.headers.get("x-pinion-runtime")}`);
    }
    const body = JSON.parse(text) as { outputs: { data: unknown }[] };
    return JSON.stringify(body.outputs.map((o) => o.data));
  };
}

interface LoadFigures {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

function load(endpoint: Endpoint, body: string): Promise<LoadFigures> {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: endpoint.url,
        method: "POST",
        headers: endpoint.headers,
        body,
        connections: CONNECTIONS,
        duration: SECONDS,
        timeout: 10,
      },
      (error, result) => {
        if (error) return reject(error);
        resolve({
          requestsPerSecond: result.requests.average,
          p50: result.latency.p50,
          p99: result.latency.p99,
          non2xx: result.non2xx,
          errors: result.errors,
        });
      },
    );
  });
}

const f2 = (v: number) => v.toFixed(2);

/** What docs/benchmarks.md gets: the tables and their captions, as printed. */
const printed: string[] = [];

function print(line: string): void {
  console.log(line);
  printed.push(line);
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) {
    print(
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
        .join("  ")
        .trimEnd(),
    );
  }
}

async function main(): Promise<number> {
  const model = MODELS[MODEL_KEY];
  if (!model) throw new Error(`BENCH_MODEL must be one of ${Object.keys(MODELS).join(", ")}`);
  const adminToken = randomBytes(16).toString("hex");
  const originToken = randomBytes(16).toString("hex");
  // npm start's script gives its origin this token, and the worker the same one.
  process.env.PINION_ORIGIN_TOKEN = originToken;
  const persistTo = await mkdtemp(join(tmpdir(), "pinion-bench-origin-"));
  // Upload state (normally .pinion/ in the working directory) goes with the rest.
  process.env.PINION_STATE_DIR = join(persistTo, "cli");
  // So is the origin's scratch directory.
  process.env.PINION_ORIGIN_TMP_DIR = join(persistTo, "origin-tmp");
  await mkdir(process.env.PINION_ORIGIN_TMP_DIR);
  let server: DevServer | undefined;
  try {
    server = await startDevServer(persistTo, ["--var", `PINION_ADMIN_TOKEN:${adminToken}`]);
    const originBase = /GPU origin: (http:\/\/[^\s]+)/.exec(server.output())?.[1];
    if (!originBase) throw new Error(`npm start ran no origin:\n${server.output()}`);
    await until("the origin", async () => (await fetch(`${originBase}/v2/health/ready`)).ok);

    const prepared = await prepareVersion(fixture(model.file), { placement: "origin" });
    const target = await openTarget(server.base, { token: adminToken });
    let manifest: Manifest;
    let edgeManifest: Manifest;
    try {
      manifest = await target.publish(NAME, prepared);
      // The same model served by the worker itself: what any request through wrangler dev costs.
      edgeManifest = await target.publish(
        `${NAME}-edge`,
        await prepareVersion(fixture(model.file), { placement: "edge" }),
      );
    } finally {
      await target.close();
    }
    if (manifest.placement !== "origin")
      throw new Error("the version was not placed on the origin");
    const label = `${manifest.name}@${manifest.version}`;
    const pinned = `/v2/models/${NAME}/versions/${manifest.version}/infer`;

    const golden = JSON.parse(await readFile(fixture(model.golden), "utf8")) as {
      inputs: number[][];
    };
    const row = golden.inputs[0]!.flat(4) as number[];
    const input = manifest.inputs[0]!;
    const body = JSON.stringify({
      inputs: [{ name: input.name, shape: [1, row.length], datatype: "FP32", data: row }],
    });

    const edge: Endpoint = {
      label: "edge → origin",
      url: `${server.base}${pinned}`,
      headers: { "content-type": "application/json" },
      check: checker("edge", label, true),
    };
    const direct: Endpoint = {
      label: "origin directly",
      url: `${originBase}${pinned}`,
      headers: {
        "content-type": "application/json",
        authorization: `Bearer ${originToken}`,
        "x-pinion-artifact-sha256": manifest.artifacts.onnx.sha256,
      },
      check: checker("direct", label, false),
    };
    const edgeLabel = `${edgeManifest.name}@${edgeManifest.version}`;
    const atEdge: Endpoint = {
      label: "same model at the edge",
      url: `${server.base}/v2/models/${edgeManifest.name}/versions/${edgeManifest.version}/infer`,
      headers: { "content-type": "application/json" },
      check: (response, text) => {
        const runtime = response.headers.get("x-pinion-runtime");
        if (runtime === "origin") throw new Error(`${edgeLabel} was answered by the origin`);
        return checker("at the edge", edgeLabel, false)(response, text);
      },
    };

    console.log(
      `Pinion edge hop: ${label} (${MODEL_KEY}, ${manifest.artifacts.onnx.bytes} bytes, placement origin), ` +
        `wrangler dev ${server.base} → origin ${originBase} on loopback; ` +
        `${REQUESTS} sequential requests each (interleaved) after ${WARMUP} warm-up` +
        (SECONDS > 0 ? `; then ${CONNECTIONS} connections × ${SECONDS} s each (autocannon)` : "") +
        "\n",
    );

    // Warm-up: the origin loads the version, both paths open their connections.
    // Through the edge and directly, the origin's answer must be the same, bit for bit;
    // the edge's own runtime (onnxruntime-web) may round differently, so it has its own.
    const references = new Map<Endpoint, string>();
    const referenceOf = (endpoint: Endpoint) => (endpoint === atEdge ? atEdge : edge);
    for (let i = 0; i < WARMUP; i++) {
      for (const endpoint of [edge, direct, atEdge]) {
        const { outputs } = await once(endpoint, body);
        const key = referenceOf(endpoint);
        if (!references.has(key)) references.set(key, outputs);
        if (outputs !== references.get(key)) {
          throw new Error(`${endpoint.label}: different outputs`);
        }
      }
    }

    const endpoints = [edge, direct, atEdge];
    const samples = new Map<Endpoint, number[]>(endpoints.map((p) => [p, []]));
    for (let i = 0; i < REQUESTS; i++) {
      // Rotate which goes first, so none always follows another.
      for (let j = 0; j < endpoints.length; j++) {
        const endpoint = endpoints[(i + j) % endpoints.length]!;
        const { ms, outputs } = await once(endpoint, body);
        if (outputs !== references.get(referenceOf(endpoint))) {
          throw new Error(`${endpoint.label}: different outputs`);
        }
        samples.get(endpoint)!.push(ms);
      }
    }
    const e = stats(samples.get(edge)!);
    const d = stats(samples.get(direct)!);
    const a = stats(samples.get(atEdge)!);
    // The model, for the record (the console had it in the opening line).
    printed.push(
      `${label} (${MODEL_KEY}, ${manifest.artifacts.onnx.bytes} bytes, placement origin), loopback`,
      "",
    );
    print(`sequential, ${REQUESTS} requests each (ms, client-side, body read):`);
    table(
      ["", "median", "p99", "mean", "min", "max"],
      [
        [edge.label, f2(e.median), f2(e.p99), f2(e.mean), f2(e.min), f2(e.max)],
        [direct.label, f2(d.median), f2(d.p99), f2(d.mean), f2(d.min), f2(d.max)],
        [
          "edge hop adds",
          `+${f2(e.median - d.median)}`,
          `+${f2(e.p99 - d.p99)}`,
          `+${f2(e.mean - d.mean)}`,
          "",
          "",
        ],
        [
          "ratio edge / direct",
          `×${f2(e.median / d.median)}`,
          `×${f2(e.p99 / d.p99)}`,
          `×${f2(e.mean / d.mean)}`,
          "",
          "",
        ],
        [`(${atEdge.label})`, f2(a.median), f2(a.p99), f2(a.mean), f2(a.min), f2(a.max)],
      ],
    );

    if (SECONDS > 0) {
      const le = await load(edge, body);
      const ld = await load(direct, body);
      print(`\nconcurrent, ${CONNECTIONS} connections × ${SECONDS} s each (autocannon, ms):`);
      table(
        ["", "median", "p99", "req/s", "non-2xx", "errors"],
        [
          [
            edge.label,
            f2(le.p50),
            f2(le.p99),
            le.requestsPerSecond.toFixed(0),
            String(le.non2xx),
            String(le.errors),
          ],
          [
            direct.label,
            f2(ld.p50),
            f2(ld.p99),
            ld.requestsPerSecond.toFixed(0),
            String(ld.non2xx),
            String(ld.errors),
          ],
          ["edge hop adds", `+${f2(le.p50 - ld.p50)}`, `+${f2(le.p99 - ld.p99)}`, "", "", ""],
          [
            "ratio edge / direct",
            `×${f2(le.p50 / ld.p50)}`,
            `×${f2(le.p99 / ld.p99)}`,
            `×${f2(le.requestsPerSecond / ld.requestsPerSecond)}`,
            "",
            "",
          ],
        ],
      );
      if (le.non2xx + le.errors + ld.non2xx + ld.errors > 0) {
        console.error("some requests under load failed");
        return 1;
      }
    }
    await recordBench("origin", printed.join("\n"));
    return 0;
  } finally {
    await server?.stop();
    await rm(persistTo, { recursive: true, force: true });
  }
}

try {
  process.exitCode = await main();
} catch (error) {
  console.error(`bench:origin failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
