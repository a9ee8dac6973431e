/**
 * The rollout driver inside workerd, on the real parts: the alias store and
 * rollout state in the R2 emulation, metrics totals in the real ModelMonitor
 * Durable Object (fed as isolates feed it), gates through a real data plane.
 * Only the driver's clock is controlled, so windows can be stepped through
 * without waiting; the wrangler dev e2e test runs it on real time.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import kernelsWasm from "../../../build/kernels.wasm";
import { planRollback } from "../../../core/registry/promotion";
import { RolloutStore, type RolloutState } from "../../../core/registry/rollout";
import { Int8Runtime } from "../../../core/runtimes/int8/int8-runtime";
import { OrtRuntime } from "../../../core/runtimes/ort/ort-runtime";
import { parseServingConfig } from "../../../core/serving/config";
import { edgeDataPlane } from "../../../core/serving/data-plane";
import { runGates } from "../../../core/serving/gates";
import {
  addCounters,
  countersOf,
  emptyCounters,
  minuteOf,
  type Counters,
  type MetricsEntry,
  type RequestSample,
} from "../../../core/serving/metrics";
import { DEFAULT_POLICY, evaluate, RolloutDriver, stepEntry } from "../../../core/serving/rollout";
import { monitorMetricsStore } from "../../../worker/monitor-client";
import { loadOrt } from "../../../worker/ort-workerd";
import { publishFixture, registry } from "../../worker/helpers";

let now = Date.now();
const store = () => monitorMetricsStore(env.MONITOR);

/** What isolates would flush for `n` requests of `version` behind `alias`. */
async function traffic(model: string, version: number, n: number, failed = 0, ms = 5) {
  const sample = (ok: boolean): RequestSample => ({
    model,
    version,
    alias: "production",
    statusClass: ok ? "2xx" : "5xx",
    ...(ok ? {} : { errorKind: "internal" }),
    totalMs: ms,
    computeMs: 1,
    decodeMs: 0,
    coldLoad: false,
    bytesIn: 100,
    bytesOut: 100,
  });
  const entries: MetricsEntry[] = [];
  for (let i = 0; i < n; i++) {
    entries.push({
      minute: minuteOf(Date.now()),
      version,
      alias: "production",
      counters: countersOf(sample(i >= failed), Date.now()),
    });
  }
  await store().write(model, entries);
}

function driver(): RolloutDriver {
  const reg = registry();
  const plane = edgeDataPlane(
    reg,
    [new Int8Runtime(kernelsWasm), new OrtRuntime(loadOrt)],
    parseServingConfig({ ALIAS_TTL_MS: "0", VERSION_LIST_TTL_MS: "0" }),
  );
  return new RolloutDriver({
    aliases: reg.aliases,
    rollouts: new RolloutStore(env.MODELS),
    versions: (model) => reg.listVersions(model),
    totals: (model, alias) => store().read(model, { alias }),
    gates: async (model, candidate, baseline, minAgreement) =>
      runGates(
        plane,
        await plane.manifest(model, String(candidate)),
        await plane.manifest(model, String(baseline)),
        { minAgreement },
      ),
    now: () => now,
  });
}

async function setUp(model: string) {
  await publishFixture(model, "seed-simple/simple_model.onnx", 1, {
    golden: "seed-simple/cases.json",
  });
  await publishFixture(model, "seed-simple/simple_model.onnx", 2, {
    golden: "seed-simple/cases.json",
  });
  await registry().aliases.commit(model, async (snapshot) => ({
    change: {
      model,
      alias: "production",
      action: "promote",
      baseRevision: snapshot.document.revision,
      from: null,
      to: stepEntry(1, 1, 100),
      noop: false,
    },
    details: { actor: "test", forced: true, gates: [] },
  }));
}

const production = async (model: string) =>
  (await registry().aliases.read(model)).document.aliases.production;

beforeAll(async () => {
  await setUp("ro-healthy");
  await setUp("ro-failing");
  await setUp("ro-manual");
});

const policy = { steps: [10, 50, 100], intervalMs: 10_000, minRequests: 20 };

describe("RolloutDriver", () => {
  it("waits without traffic, advances healthy windows, and ends at 100 %", async () => {
    const d = driver();
    const model = "ro-healthy";
    const started = await d.start(model, { alias: "production", version: 2, policy, actor: "t" });
    expect(started).toMatchObject({ status: "stepping", step: 0, baseline: 1 });
    expect(await production(model)).toEqual(stepEntry(1, 2, 10));
    await expect(
      d.start(model, { alias: "production", version: 2, policy, actor: "t" }),
    ).rejects.toThrow(/already has a rollout/);

    // The interval passes with too little traffic: a wait, recorded, nothing moves.
    now += 10_000;
    await traffic(model, 2, 5);
    let tick = await d.tick(model);
    expect(tick.state).toMatchObject({
      status: "stepping",
      step: 0,
      lastCheck: { decision: "wait" },
    });
    expect(tick.nextAt).toBe(now + 2000);
    // Enough healthy traffic: the next step.
    await traffic(model, 2, 20);
    await traffic(model, 1, 200);
    now += 1000;
    tick = await d.tick(model);
    expect(tick.state).toMatchObject({ step: 1, lastCheck: { decision: "advance" } });
    expect(await production(model)).toEqual(stepEntry(1, 2, 50));
    // The new window starts empty: the earlier traffic does not count for it.
    now += 10_000;
    expect((await d.tick(model)).state).toMatchObject({ step: 1, lastCheck: { decision: "wait" } });
    await traffic(model, 2, 25);
    await traffic(model, 1, 25);
    now += 1;
    tick = await d.tick(model);
    expect(tick.state).toMatchObject({ status: "succeeded", step: 2 });
    expect(tick.nextAt).toBeUndefined();
    expect(await production(model)).toEqual(stepEntry(1, 2, 100));

    const history = await registry().aliases.history(model);
    const ours = history.filter((r) => r.rollout?.id === started.id);
    expect(ours.map((r) => `${r.action}:${r.rollout!.decision}:${r.rollout!.percent}`)).toEqual([
      "promote:start:10",
      "check:wait:10",
      "promote:advance:50",
      "check:wait:50",
      "promote:advance:100",
    ]);
  });

  it("rolls back to the state before the rollout on a breach, before the interval is over", async () => {
    const d = driver();
    const model = "ro-failing";
    const started = await d.start(model, { alias: "production", version: 2, policy, actor: "t" });
    await traffic(model, 2, 20, 2); // 10 % failed, far over 0.5 %
    await traffic(model, 1, 180);
    now += 2000;
    const tick = await d.tick(model);
    expect(tick.state).toMatchObject({ status: "rolled-back", expected: stepEntry(1, 1, 100) });
    expect(tick.state!.outcome).toMatch(/error-rate: 2 of 20 candidate requests failed/);
    expect(await production(model)).toEqual(stepEntry(1, 1, 100));
    const history = await registry().aliases.history(model);
    expect(history.at(-1)).toMatchObject({
      action: "rollback",
      rollout: { id: started.id, decision: "rollback" },
    });
    // A later manual rollback undoes what came before the rollout, not one of its steps.
    const document = (await registry().aliases.read(model)).document;
    const plan = planRollback({ document, versions: [1, 2] }, history, "production");
    expect(plan.undoes).toBe(1);
  });

  it("stops when the alias is changed by hand; pause, resume and abort are recorded", async () => {
    const d = driver();
    const model = "ro-manual";
    await d.start(model, { alias: "production", version: 2, policy, actor: "t" });
    expect((await d.pause(model, "ops")).status).toBe("paused");
    expect((await d.tick(model)).state!.status).toBe("paused");
    expect((await d.resume(model, "ops")).status).toBe("stepping");
    expect((await d.abort(model, "ops")).status).toBe("aborted");
    expect(await production(model)).toEqual(stepEntry(1, 1, 100));

    await d.start(model, { alias: "production", version: 2, policy, actor: "t" });
    await registry().aliases.commit(model, async (snapshot) => ({
      change: {
        model,
        alias: "production",
        action: "promote",
        baseRevision: snapshot.document.revision,
        from: snapshot.document.aliases.production!,
        to: stepEntry(1, 2, 100),
        noop: false,
      },
      details: { actor: "someone", forced: true, gates: [] },
    }));
    const tick = await d.tick(model);
    expect(tick.state).toMatchObject({ status: "superseded" });
    expect(tick.state!.outcome).toMatch(/promote by someone/);
    expect(await production(model)).toEqual(stepEntry(1, 2, 100));
    const decisions = (await registry().aliases.history(model))
      .filter((r) => r.rollout)
      .map((r) => r.rollout!.decision);
    expect(decisions).toEqual(["start", "paused", "resumed", "aborted", "start", "superseded"]);
  });
});

describe("a window's latency checks", () => {
  /** `n` successful requests of `ms` each, counted as the monitor counts them. */
  const window = (n: number, ms: number): Counters => {
    let c = emptyCounters();
    for (let i = 0; i < n; i++) {
      c = addCounters(
        c,
        countersOf(
          {
            model: "m",
            version: 1,
            alias: "production",
            statusClass: "2xx",
            totalMs: ms,
            computeMs: 1,
            decodeMs: 0,
            coldLoad: false,
            bytesIn: 1,
            bytesOut: 1,
          },
          0,
        ),
      );
    }
    return c;
  };
  const stepping = (policy: Partial<RolloutState["policy"]>) =>
    ({
      status: "stepping",
      baseline: 1,
      candidate: 2,
      policy: { ...DEFAULT_POLICY, minRequests: 20, ...policy },
    }) as RolloutState;
  const gate = (checks: { gate: string; passed: boolean }[], name: string) =>
    checks.find((c) => c.gate === name);

  it("fails a candidate whose p99 is over the ratio to the baseline's, passes one under it", () => {
    const policy = { maxLatencyRatio: 1.5 };
    const slow = evaluate(stepping(policy), window(30, 40), window(30, 8));
    expect(slow.enough).toBe(true);
    expect(gate(slow.checks, "latency-ratio")).toMatchObject({ passed: false });
    const fast = evaluate(stepping(policy), window(30, 8), window(30, 8));
    expect(gate(fast.checks, "latency-ratio")).toMatchObject({ passed: true });
  });

  it("skips the ratio while the baseline has too little traffic, and checks an absolute p99", () => {
    const few = evaluate(stepping({ maxLatencyRatio: 1.5 }), window(30, 40), window(3, 8));
    expect(gate(few.checks, "latency-ratio")).toMatchObject({ passed: true, skipped: true });
    const p99 = evaluate(stepping({ maxP99Ms: 20 }), window(30, 40), window(30, 8));
    expect(gate(p99.checks, "p99")).toMatchObject({ passed: false });
    expect(
      gate(evaluate(stepping({ maxP99Ms: 20 }), window(30, 8), window(30, 8)).checks, "p99"),
    ).toMatchObject({ passed: true });
  });

  it("waits while the candidate has fewer requests than the policy's minimum", () => {
    expect(evaluate(stepping({}), window(5, 8), window(30, 8)).enough).toBe(false);
  });
});
