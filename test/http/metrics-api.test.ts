/**
 * Live metrics inside workerd, through the worker's fetch handler, with the
 * real ModelMonitor Durable Object and R2 emulation (METRICS_FLUSH_MS is 250
 * here: the counters are written from waitUntil a moment after): counts
 * per version and alias, failures by class and kind, histogram sums, and the
 * three views — the statistics extension, /metrics and the admin route — agree.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { LATENCY_BUCKETS_MS, type MetricsReport } from "../../core/serving/metrics";
import type { StatisticsResponse } from "../../core/serving/statistics";
import { api, fixtureJson, postJson, publishFixture } from "../worker/helpers";

const ADMIN = { authorization: "Bearer test-admin-token" };
const MODEL = "mx-simple";

interface Cases {
  inputs: number[][];
}
let cases: Cases;

const request = (row: number) => ({
  inputs: [
    {
      name: "input",
      shape: [1, 10],
      datatype: "FP32",
      data: cases.inputs[row % cases.inputs.length],
    },
  ],
});

async function report(query = ""): Promise<MetricsReport> {
  const response = await api(`/admin/models/${MODEL}/metrics${query}`, { headers: ADMIN });
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as MetricsReport;
}

/** Polls until the model's total request count reaches `count` (the flush runs after each response). */
async function settled(count: number): Promise<MetricsReport> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const now = await report();
    const total = now.series.reduce((sum, s) => sum + s.counters.requests, 0);
    if (total >= count || Date.now() > deadline) return now;
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  cases = await fixtureJson<Cases>("seed-simple/cases.json");
  await publishFixture(MODEL, "seed-simple/simple_model.onnx", 1);
  await publishFixture(MODEL, "seed-simple/simple_model.onnx", 2, { int8: true });
  const promoted = await api(`/admin/models/${MODEL}/promotions`, {
    method: "POST",
    headers: { ...ADMIN, "content-type": "application/json" },
    body: JSON.stringify({ version: 1, force: true, reason: "metrics tests" }),
  });
  expect(promoted.status, await promoted.clone().text()).toBe(200);
});

describe("live metrics", () => {
  it("count every request per version and alias, failures by class and kind, and agree across views", async () => {
    const sent = { aliasOk: 7, pinnedOk: 5, aliasBad: 3 };
    for (let i = 0; i < sent.aliasOk; i++) {
      expect((await postJson(`/v2/models/${MODEL}/infer`, request(i))).status).toBe(200);
    }
    for (let i = 0; i < sent.pinnedOk; i++) {
      expect((await postJson(`/v2/models/${MODEL}/versions/2/infer`, request(i))).status).toBe(200);
    }
    for (let i = 0; i < sent.aliasBad; i++) {
      // A wrong shape: resolved (so counted against version 1), then refused with a 400.
      const bad = { inputs: [{ name: "input", shape: [1, 3], datatype: "FP32", data: [1, 2, 3] }] };
      expect((await postJson(`/v2/models/${MODEL}/infer`, bad)).status).toBe(400);
    }
    const total = sent.aliasOk + sent.pinnedOk + sent.aliasBad;
    const totals = await settled(total);
    const series = (version: number, alias: string) =>
      totals.series.find((s) => s.version === version && s.alias === alias)!.counters;

    const production = series(1, "production");
    expect(production.requests).toBe(sent.aliasOk + sent.aliasBad);
    expect(production.success).toBe(sent.aliasOk);
    expect(production.statusClasses).toEqual({ "2xx": sent.aliasOk, "4xx": sent.aliasBad });
    expect(production.errorKinds).toEqual({ invalid_argument: sent.aliasBad });
    const pinned = series(2, "");
    expect(pinned.requests).toBe(sent.pinnedOk);
    expect(pinned.runtimes).toEqual({ int8: sent.pinnedOk });
    expect(pinned.coldLoads).toBeGreaterThanOrEqual(1);
    expect(pinned.coldLoads).toBeLessThanOrEqual(sent.pinnedOk);
    for (const c of [production, pinned]) {
      // Every request lands in exactly one bucket of each histogram.
      expect(c.latency.counts).toHaveLength(LATENCY_BUCKETS_MS.length + 1);
      expect(c.latency.counts.reduce((a, b) => a + b, 0)).toBe(c.requests);
      expect(c.compute.counts.reduce((a, b) => a + b, 0)).toBe(c.requests);
      expect(c.latency.sumMs).toBeCloseTo(c.successMs + c.failMs, 6);
      expect(c.bytesIn).toBeGreaterThan(0);
      expect(c.bytesOut).toBeGreaterThan(0);
    }

    // The minute buckets of the last 15 minutes hold the same counts.
    const windowed = await report("?since=15m");
    expect(windowed.sinceMs).not.toBeNull();
    const fromMinutes = windowed.series.find((s) => s.version === 1 && s.alias === "production")!;
    expect(fromMinutes.counters.requests).toBe(production.requests);
    expect(fromMinutes.minutes!.reduce((sum, m) => sum + m.counters.requests, 0)).toBe(
      production.requests,
    );

    // Triton's statistics extension: per version, all aliases added up.
    const stats = (await (await api(`/v2/models/${MODEL}/stats`)).json()) as StatisticsResponse;
    expect(stats.model_stats.map((s) => s.version)).toEqual(["1", "2"]);
    const [v1, v2] = stats.model_stats;
    expect(v1!.inference_count).toBe(sent.aliasOk);
    expect(v1!.inference_stats.success.count).toBe(sent.aliasOk);
    expect(v1!.inference_stats.fail.count).toBe(sent.aliasBad);
    expect(v1!.inference_stats.success.ns).toBe(Math.round(production.successMs * 1e6));
    expect(v1!.last_inference).toBe(production.lastAt);
    expect(v2!.inference_count).toBe(sent.pinnedOk);
    const one = (await (
      await api(`/v2/models/${MODEL}/versions/2/stats`)
    ).json()) as StatisticsResponse;
    expect(one.model_stats).toEqual([v2]);
    const viaAlias = (await (
      await api(`/v2/models/${MODEL}/aliases/production/stats`)
    ).json()) as StatisticsResponse;
    expect(viaAlias.model_stats.find((s) => s.version === "2")!.inference_count).toBe(0);
    const all = (await (await api("/v2/models/stats")).json()) as StatisticsResponse;
    expect(all.model_stats.filter((s) => s.name === MODEL)).toEqual(stats.model_stats);

    // Prometheus text: the same counts and bucket sums.
    const prom = await api("/metrics", { headers: ADMIN });
    expect(prom.status).toBe(200);
    expect(prom.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await prom.text();
    const value = (line: string) =>
      Number(
        text
          .split("\n")
          .find((l) => l.startsWith(line))!
          .split(" ")
          .at(-1),
      );
    const labels = `model="${MODEL}",version="1",alias="production"`;
    expect(value(`pinion_requests_total{${labels},status_class="2xx"}`)).toBe(sent.aliasOk);
    expect(value(`pinion_requests_total{${labels},status_class="4xx"}`)).toBe(sent.aliasBad);
    expect(value(`pinion_failures_total{${labels},kind="invalid_argument"}`)).toBe(sent.aliasBad);
    expect(value(`pinion_request_duration_seconds_count{${labels}}`)).toBe(production.requests);
    expect(value(`pinion_request_duration_seconds_bucket{${labels},le="+Inf"}`)).toBe(
      production.requests,
    );
    expect(value(`pinion_request_duration_seconds_sum{${labels}}`)).toBeCloseTo(
      production.latency.sumMs / 1000,
      9,
    );
  });

  it("stats of a version that does not exist is a 404; /metrics needs the admin token", async () => {
    expect((await api(`/v2/models/${MODEL}/versions/9/stats`)).status).toBe(404);
    expect((await api("/v2/models/mx-none/stats")).status).toBe(404);
    expect((await api("/metrics")).status).toBe(401);
    expect((await api("/metrics", { headers: { authorization: "Bearer wrong" } })).status).toBe(
      401,
    );
    const bad = await api(`/admin/models/${MODEL}/metrics?since=yesterday-ish`, { headers: ADMIN });
    expect(bad.status).toBe(400);
  });
});
