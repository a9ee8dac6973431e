/**
 * Issue 17 through a real `wrangler dev` (the ModelMonitor Durable Object in
 * workerd's SQLite, the R2 emulation, real alarms, real clocks):
 *
 * - metrics: after METRICS_FLUSH_MS (the staleness bound) the counts equal the
 *   requests sent, exactly, and the statistics extension, `/metrics` and
 *   `pinion stats --json` agree;
 * - a healthy candidate, under load, is stepped 10 → 50 → 100 % by the server
 *   alone, with every step and check in the audit log and no failed request;
 * - a candidate that refuses some inputs (its ONNX takes batch 1 only; the load
 *   sends batches of 1 and 2) is rolled back within one interval of its first
 *   failure, and only its own requests failed.
 */
import autocannon from "autocannon";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import type { IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pkg from "onnx-proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditRecord } from "../../core/registry/promotion";
import type { RolloutState } from "../../core/registry/rollout";
import type { MetricsReport } from "../../core/serving/metrics";
import type { StatisticsResponse } from "../../core/serving/statistics";
import { root, startDevServer, type DevServer } from "../../scripts/lib/dev-server";
import { prepareVersion } from "../../scripts/lib/prepare";
import { RemoteTarget } from "../../scripts/lib/targets";

const { onnx } = pkg;
const run = promisify(execFile);
const TOKEN = "e2e-metrics-rollout-token";
const FLUSH_MS = 1000;
const ALIAS_TTL_MS = 1000;
const INTERVAL_MS = 4000;

let server: DevServer | undefined;
let persistTo: string;
let target: RemoteTarget;

async function pinion(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      [new URL("bin/pinion.js", root).pathname, ...args, "--target", server!.base],
      { cwd: root, env: { ...process.env, PINION_ADMIN_TOKEN: TOKEN } },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const row = (i: number) => Array.from({ length: 10 }, (_, j) => ((i * 7 + j) % 11) / 10);
const body = (rows: number) =>
  JSON.stringify({
    inputs: [
      {
        name: "input",
        shape: [rows, 10],
        datatype: "FP32",
        data: Array.from({ length: rows }, (_, i) => row(i)).flat(),
      },
    ],
  });

async function post(path: string, text: string): Promise<Response> {
  return fetch(`${server!.base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: text,
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  persistTo = await mkdtemp(join(tmpdir(), "pinion-metrics-rollout-"));
  server = await startDevServer(persistTo, [
    "--var",
    `PINION_ADMIN_TOKEN:${TOKEN}`,
    "--var",
    `METRICS_FLUSH_MS:${FLUSH_MS}`,
    "--var",
    `ALIAS_TTL_MS:${ALIAS_TTL_MS}`,
  ]);
  target = new RemoteTarget(new URL(server.base), TOKEN);
}, 180_000);

afterAll(async () => {
  await server?.stop();
  if (persistTo) await rm(persistTo, { recursive: true, force: true });
});

describe("live metrics through wrangler dev", () => {
  it("count exactly the requests sent once METRICS_FLUSH_MS has passed, and every view agrees", async () => {
    const ok = 40;
    const bad = 10;
    let lastResponse = 0;
    for (let i = 0; i < ok; i++) {
      const response = await post("/v2/models/digits-mlp/versions/1/infer", await digitsBody());
      expect(response.status).toBe(200);
      await response.arrayBuffer();
      lastResponse = Date.now();
    }
    for (let i = 0; i < bad; i++) {
      const response = await post("/v2/models/digits-mlp/versions/1/infer", body(1));
      expect(response.status).toBe(400);
      await response.arrayBuffer();
      lastResponse = Date.now();
    }
    // The bound: every request is in the aggregate METRICS_FLUSH_MS after its response
    // (plus the write itself, well under the margin).
    await sleep(Math.max(0, lastResponse + FLUSH_MS + 500 - Date.now()));

    const report: MetricsReport = await target.metrics("digits-mlp");
    const pinned = report.series.find((s) => s.version === 1 && s.alias === "")!.counters;
    expect(pinned.requests).toBe(ok + bad);
    expect(pinned.success).toBe(ok);
    expect(pinned.statusClasses).toEqual({ "2xx": ok, "4xx": bad });
    expect(pinned.errorKinds).toEqual({ invalid_argument: bad });
    expect(pinned.latency.counts.reduce((a, b) => a + b, 0)).toBe(ok + bad);
    expect(pinned.compute.counts.reduce((a, b) => a + b, 0)).toBe(ok + bad);

    const stats = (await (
      await fetch(`${server!.base}/v2/models/digits-mlp/versions/1/stats`)
    ).json()) as StatisticsResponse;
    expect(stats.model_stats[0]!.inference_count).toBe(ok);
    expect(stats.model_stats[0]!.inference_stats.fail.count).toBe(bad);

    const prom = await (
      await fetch(`${server!.base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).text();
    const labels = 'model="digits-mlp",version="1",alias=""';
    expect(prom).toContain(`pinion_requests_total{${labels},status_class="2xx"} ${ok}`);
    expect(prom).toContain(`pinion_requests_total{${labels},status_class="4xx"} ${bad}`);
    expect(prom).toContain(`pinion_request_duration_seconds_count{${labels}} ${ok + bad}`);

    const cli = await pinion(["stats", "digits-mlp", "--json"]);
    expect(cli.code, cli.stderr).toBe(0);
    const fromCli = JSON.parse(cli.stdout) as MetricsReport;
    expect(fromCli.series.find((s) => s.version === 1 && s.alias === "")!.counters).toEqual(pinned);
    const table = await pinion(["stats", "digits-mlp", "--since", "15m"]);
    expect(table.stdout).toMatch(new RegExp(`\\(pinned\\)\\s+${ok + bad}\\s+${bad}\\s`));
  }, 60_000);
});

let digitsText: string | undefined;
async function digitsBody(): Promise<string> {
  digitsText ??= JSON.stringify({
    inputs: [
      {
        name: "input",
        shape: [1, 64],
        datatype: "FP32",
        data: Array.from({ length: 64 }, (_, i) => (i % 17) / 16),
      },
    ],
  });
  return digitsText;
}

interface Load {
  stop(): Promise<void>;
  /** Non-2xx responses by the version that answered them (x-pinion-model). */
  failures: Map<string, number>;
  served: Map<string, number>;
  firstFailureAt: number | undefined;
  errors(): number;
}

/** Load on `simple`'s production alias: autocannon, alternating the given bodies. */
function startLoad(bodies: string[]): Load {
  const failures = new Map<string, number>();
  const served = new Map<string, number>();
  const load: Load = {
    failures,
    served,
    firstFailureAt: undefined,
    errors: () => 0,
    stop: async () => {},
  };
  const onResponse = (status: number, _text: string, _c: object, headers?: IncomingHttpHeaders) => {
    const model = String(headers?.["x-pinion-model"] ?? "(none)");
    served.set(model, (served.get(model) ?? 0) + 1);
    if (status >= 400) {
      failures.set(model, (failures.get(model) ?? 0) + 1);
      load.firstFailureAt ??= Date.now();
    }
  };
  let result: autocannon.Result | undefined;
  const instance = autocannon(
    {
      url: server!.base,
      connections: 8,
      duration: 300,
      timeout: 10,
      requests: bodies.map((text) => ({
        method: "POST" as const,
        path: "/v2/models/simple/infer",
        headers: { "content-type": "application/json" },
        body: text,
        onResponse,
      })),
    },
    (_error, r) => (result = r),
  );
  load.errors = () => (result ? result.errors : 0);
  load.stop = async () => {
    instance.stop();
    for (let i = 0; i < 50 && !result; i++) await sleep(100);
  };
  return load;
}

async function waitForEnd(model: string, timeoutMs: number): Promise<RolloutState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await target.rollout(model);
    if (state && !["shadowing", "stepping", "paused"].includes(state.status)) return state;
    if (Date.now() > deadline)
      throw new Error(`rollout still ${state?.status}: ${JSON.stringify(state)}`);
    await sleep(250);
  }
}

const ofRollout = (history: AuditRecord[], id: string) =>
  history.filter((r) => r.rollout?.id === id);

describe("rollouts through wrangler dev, under load", () => {
  it("steps a healthy candidate to 100 % on its own, with every step in the audit log and no failed request", async () => {
    const promoted = await target.promote("simple", { alias: "production", version: 1 });
    expect(promoted.status).toBe("applied");
    const load = startLoad([body(1)]);
    try {
      await sleep(1500);
      const started = await pinion([
        "rollout",
        "simple",
        "2",
        "--steps",
        "10,50,100",
        "--interval",
        `${INTERVAL_MS}ms`,
        "--min-requests",
        "20",
        // A window's p99 over a few dozen requests is its slowest one: the candidate's cold load,
        // or a stall of a busy CI machine (27.5 vs 4.4 ms was seen). The gate is checked, loosely;
        // its breach is tested in test/core/serving/rollout.test.ts.
        "--max-latency-ratio",
        "50",
        "--json",
      ]);
      expect(started.code, started.stderr).toBe(0);
      const state = JSON.parse(started.stdout) as RolloutState;
      expect(state).toMatchObject({ status: "stepping", step: 0, candidate: 2, baseline: 1 });
      // The CLI has exited: the worker's alarm does the rest.
      const ended = await waitForEnd("simple", 90_000);
      expect(ended.status, ended.outcome).toBe("succeeded");
      console.log((await pinion(["history", "simple"])).stdout);
      expect((await target.aliases("simple")).aliases.production).toEqual({
        split: [{ version: 2, weight: 10_000 }],
      });
      await sleep(ALIAS_TTL_MS + 500);
      await load.stop();

      expect([...load.failures]).toEqual([]);
      expect(load.errors()).toBe(0);
      expect(load.served.get("simple@2")).toBeGreaterThan(0);

      const records = ofRollout(await target.history("simple"), state.id);
      const steps = records.filter((r) => r.action === "promote");
      expect(steps.map((r) => r.rollout!.percent)).toEqual([10, 50, 100]);
      expect(steps.map((r) => r.to)).toEqual([
        {
          split: [
            { version: 1, weight: 9000 },
            { version: 2, weight: 1000 },
          ],
        },
        {
          split: [
            { version: 1, weight: 5000 },
            { version: 2, weight: 5000 },
          ],
        },
        { split: [{ version: 2, weight: 10_000 }] },
      ]);
      // The gates ran before the first step; each advance carries the checks that allowed it.
      expect(steps[0]!.gates.map((g) => g.gate)).toContain("agreement");
      expect(steps[0]!.gates.every((g) => g.passed)).toBe(true);
      for (const step of steps.slice(1)) {
        expect(step.rollout!.decision).toBe("advance");
        const errorRate = step.gates.find((g) => g.gate === "error-rate")!;
        expect(errorRate).toMatchObject({ passed: true, measured: 0 });
      }
      // Only checks (no other changes) between the steps, all by the rollout.
      expect(records.every((r) => r.actor === "admin (rollout)")).toBe(true);
      expect(records.filter((r) => r.action === "rollback")).toEqual([]);
    } finally {
      await load.stop();
    }
  }, 180_000);

  it("rolls back a candidate that fails some inputs within one interval, and only its requests failed", async () => {
    // Version 3: the same network exported with a fixed batch of 1, so batches of 2 are a 400.
    const model = onnx.ModelProto.decode(
      await readFile(new URL("fixtures/seed-simple/simple_model.onnx", root)),
    );
    for (const value of [model.graph!.input![0]!, model.graph!.output![0]!]) {
      value.type!.tensorType!.shape!.dim![0] = { dimValue: 1 };
    }
    const file = join(persistTo, "simple-batch1.onnx");
    await writeFile(file, onnx.ModelProto.encode(model).finish());
    // With the golden set, whose cases (one row each) it passes: the gates let it start.
    const golden = new URL("fixtures/seed-simple/cases.json", root).pathname;
    const manifest = await target.publish("simple", await prepareVersion(file, { golden }));
    expect(manifest.inputs[0]!.shape).toEqual([1, 10]);

    const load = startLoad([body(1), body(2)]);
    try {
      await sleep(1500);
      const started = await pinion([
        "rollout",
        "simple",
        String(manifest.version),
        "--steps",
        "10,50,100",
        "--interval",
        `${INTERVAL_MS}ms`,
        "--min-requests",
        "20",
        "--max-error-rate",
        "1%",
        "--max-latency-ratio",
        "50",
        "--json",
      ]);
      expect(started.code, started.stderr).toBe(0);
      const state = JSON.parse(started.stdout) as RolloutState;
      const ended = await waitForEnd("simple", 60_000);
      expect(ended.status).toBe("rolled-back");
      expect(ended.expected).toEqual({ split: [{ version: 2, weight: 10_000 }] });
      // What an operator sees (the README quotes it).
      console.log((await pinion(["rollout", "status", "simple"])).stdout);
      expect(ended.outcome).toMatch(/error-rate/);
      expect((await target.aliases("simple")).aliases.production).toEqual({
        split: [{ version: 2, weight: 10_000 }],
      });
      // Once the rollback has reached the isolates, nothing fails any more.
      await sleep(ALIAS_TTL_MS + 500);
      const failedBefore = [...load.failures.values()].reduce((a, b) => a + b, 0);
      await sleep(2000);
      await load.stop();
      const failedAfter = [...load.failures.values()].reduce((a, b) => a + b, 0);
      expect(failedAfter).toBe(failedBefore);

      // Only the candidate failed: the rollout machinery itself failed no request.
      expect([...load.failures.keys()]).toEqual([`simple@${manifest.version}`]);
      expect(load.errors()).toBe(0);

      const records = ofRollout(await target.history("simple"), state.id);
      expect(records[0]).toMatchObject({
        action: "promote",
        rollout: { decision: "start", percent: 10 },
      });
      const rollback = records.at(-1)!;
      expect(rollback).toMatchObject({
        action: "rollback",
        from: {
          split: [
            { version: 2, weight: 9000 },
            { version: manifest.version, weight: 1000 },
          ],
        },
        to: { split: [{ version: 2, weight: 10_000 }] },
        rollout: { decision: "rollback" },
      });
      expect(rollback.gates.find((g) => g.gate === "error-rate")!.passed).toBe(false);
      // Within one interval of the first failed request.
      expect(load.firstFailureAt).toBeDefined();
      expect(Date.parse(rollback.at) - load.firstFailureAt!).toBeLessThanOrEqual(INTERVAL_MS);

      // A later manual rollback walks past the whole rollout, to the change before it.
      const dry = await target.rollback("simple", { alias: "production", dryRun: true });
      expect(dry.change.undoes).not.toBe(rollback.revision);
      expect(records.some((r) => r.revision === dry.change.undoes)).toBe(false);
    } finally {
      await load.stop();
    }
  }, 180_000);

  it("stops when the alias is changed by hand, recorded, and leaves the alias as the person set it", async () => {
    const started = await target.startRollout("simple", {
      alias: "production",
      version: 1,
      steps: [50, 100],
      intervalMs: 60_000,
      minRequests: 1000,
    });
    expect(started.status).toBe("stepping");
    const manual = await target.promote("simple", { alias: "production", version: 2, force: true });
    expect(manual.status).toBe("applied");
    const ended = await waitForEnd("simple", 20_000);
    expect(ended.status).toBe("superseded");
    expect(ended.outcome).toMatch(/promote by admin/);
    expect((await target.aliases("simple")).aliases.production).toEqual({
      split: [{ version: 2, weight: 10_000 }],
    });
    const last = (await target.history("simple")).at(-1)!;
    expect(last).toMatchObject({
      action: "check",
      rollout: { id: started.id, decision: "superseded" },
    });
    const status = await pinion(["rollout", "status", "simple"]);
    expect(status.stdout).toMatch(/superseded/);
  }, 60_000);

  it("survives a restart of the worker: it goes on from its recorded state", async () => {
    const load = startLoad([body(1)]);
    let state: RolloutState;
    try {
      await sleep(1000);
      state = await target.startRollout("simple", {
        alias: "production",
        version: 1,
        steps: [50, 100],
        intervalMs: INTERVAL_MS,
        minRequests: 10,
        // The window spans the restart: the fresh isolates' first requests load onnxruntime
        // (seconds), which a latency ratio would rightly count; this test is about resuming.
        maxLatencyRatio: 1000,
      });
      expect(state).toMatchObject({ status: "stepping", step: 0 });
    } finally {
      await load.stop();
    }
    // The whole wrangler dev (workerd and its Durable Object) goes away mid-rollout…
    await server!.stop();
    server = await startDevServer(persistTo, [
      "--var",
      `PINION_ADMIN_TOKEN:${TOKEN}`,
      "--var",
      `METRICS_FLUSH_MS:${FLUSH_MS}`,
      "--var",
      `ALIAS_TTL_MS:${ALIAS_TTL_MS}`,
    ]);
    target = new RemoteTarget(new URL(server.base), TOKEN);
    // …and the new one finishes it from rollout.json and its alarm.
    const again = startLoad([body(1)]);
    try {
      const ended = await waitForEnd("simple", 90_000);
      expect(ended.id).toBe(state.id);
      expect(ended.status, ended.outcome).toBe("succeeded");
      expect((await target.aliases("simple")).aliases.production).toEqual({
        split: [{ version: 1, weight: 10_000 }],
      });
      const steps = ofRollout(await target.history("simple"), state.id).filter(
        (r) => r.action === "promote",
      );
      expect(steps.map((r) => r.rollout!.percent)).toEqual([50, 100]);
    } finally {
      await again.stop();
    }
    expect([...again.failures]).toEqual([]);
  }, 240_000);
});
