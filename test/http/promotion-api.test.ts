import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { AliasDocument } from "../../core/registry/aliases";
import type { Manifest } from "../../core/registry/manifest";
import type { AuditRecord } from "../../core/registry/promotion";
import type { ShadowReport } from "../../core/registry/shadow-stats";
import { ModelResolver } from "../../core/serving/resolver";
import type { PromotionOutcome } from "../../core/serving/promoter";
import { api, fixtureJson, postJson, publishFixture, registry } from "../worker/helpers";

const ADMIN = { authorization: `Bearer ${env.PINION_ADMIN_TOKEN}` };
const CI = { authorization: "Bearer ci-token" };

async function promote(model: string, body: Record<string, unknown>, headers = CI) {
  const response = await api(`/admin/models/${model}/promotions`, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    outcome: (await response.json()) as PromotionOutcome & { error?: string },
  };
}

async function adminGet<T>(path: string): Promise<T> {
  const response = await api(`/admin/${path}`, { headers: ADMIN });
  expect(response.status).toBe(200);
  return (await response.json()) as T;
}

const aliasesOf = (model: string) => adminGet<AliasDocument>(`models/${model}/aliases`);

interface Cases {
  inputs: number[][];
  expected: number[][];
}
let cases: Cases;
const simpleRequest = (row = 0, parameters?: Record<string, unknown>) => ({
  inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: cases.inputs[row] }],
  ...(parameters ? { parameters } : {}),
});

async function infer(path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await postJson(path, body, headers);
  const json = (await response.json()) as {
    model_version: string;
    outputs: { data: number[] }[];
    error?: string;
  };
  return {
    status: response.status,
    json,
    model: response.headers.get("x-pinion-model"),
    alias: response.headers.get("x-pinion-alias"),
    runtime: response.headers.get("x-pinion-runtime"),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  cases = await fixtureJson<Cases>("seed-simple/cases.json");
  const golden = "seed-simple/cases.json";
  await publishFixture("pr-simple", "seed-simple/simple_model.onnx", 1, { golden });
  await publishFixture("pr-simple", "seed-simple/simple_model.onnx", 2, { golden, int8: true });
  await publishFixture("pr-simple", "seed-simple/simple_model.onnx", 3, { golden });
});

describe("aliases in the data plane", () => {
  it("without aliases the latest version answers; pinned versions never change meaning", async () => {
    const latest = await infer("/v2/models/pr-simple/infer", simpleRequest());
    expect(latest).toMatchObject({ status: 200, model: "pr-simple@3", alias: null });
    const pinned = await infer("/v2/models/pr-simple/versions/1/infer", simpleRequest());
    expect(pinned.json.model_version).toBe("1");
  });

  it("production answers unversioned requests; other aliases by path or OIP parameter; headers say what ran", async () => {
    const first = await promote("pr-simple", { version: 1, reason: "first release" });
    expect(first.status).toBe(200);
    expect(first.outcome.status).toBe("applied");
    expect(first.outcome.record).toMatchObject({ actor: "ci-deploy", reason: "first release" });
    expect(first.outcome.gates).toEqual([
      expect.objectContaining({ gate: "golden", passed: true }),
    ]);
    const staged = await promote("pr-simple", { version: 2, alias: "staging" });
    expect(staged.outcome.status).toBe("applied");

    const byDefault = await infer("/v2/models/pr-simple/infer", simpleRequest(4));
    expect(byDefault).toMatchObject({ model: "pr-simple@1", alias: "production", runtime: "ort" });
    expect(byDefault.json.model_version).toBe("1");
    for (let i = 0; i < 10; i++) {
      expect(byDefault.json.outputs[0]!.data[i]).toBeCloseTo(cases.expected[4]![i]!, 5);
    }
    const byPath = await infer("/v2/models/pr-simple/aliases/staging/infer", simpleRequest());
    expect(byPath).toMatchObject({ model: "pr-simple@2", alias: "staging", runtime: "int8" });
    const byParameter = await infer(
      "/v2/models/pr-simple/infer",
      simpleRequest(0, { alias: "staging" }),
    );
    expect(byParameter).toMatchObject({ model: "pr-simple@2", alias: "staging" });
    const pinned = await infer("/v2/models/pr-simple/versions/3/infer", simpleRequest());
    expect(pinned).toMatchObject({ model: "pr-simple@3", alias: null });

    const metadata = await api("/v2/models/pr-simple/aliases/staging");
    expect(metadata.headers.get("x-pinion-model")).toBe("pr-simple@2");
    const ready = await api("/v2/models/pr-simple/aliases/staging/ready");
    expect(ready.status).toBe(200);
    expect(ready.headers.get("x-pinion-runtime")).toBe("int8");

    expect((await infer("/v2/models/pr-simple/aliases/nope/infer", simpleRequest())).status).toBe(
      404,
    );
    expect(
      (await infer("/v2/models/pr-simple/versions/1/infer", simpleRequest(0, { alias: "staging" })))
        .status,
    ).toBe(400);
  });

  it("a canary split is sticky per x-pinion-key and shares traffic by weight", async () => {
    await publishFixture("pr-canary", "seed-simple/simple_model.onnx", 1, {
      golden: "seed-simple/cases.json",
    });
    await publishFixture("pr-canary", "seed-simple/simple_model.onnx", 2, {
      golden: "seed-simple/cases.json",
    });
    await promote("pr-canary", { version: 1 });
    const canary = await promote("pr-canary", { version: 2, canary: 30 });
    expect(canary.outcome.change.to!.split).toEqual([
      { version: 1, weight: 7000 },
      { version: 2, weight: 3000 },
    ]);
    const seen = new Map<number, number>();
    for (let i = 0; i < 60; i++) {
      const headers = { "x-pinion-key": `user-${i}` };
      const a = await infer("/v2/models/pr-canary/infer", simpleRequest(), headers);
      const b = await infer("/v2/models/pr-canary/infer", simpleRequest(), headers);
      expect(b.model).toBe(a.model);
      const v = Number(a.json.model_version);
      seen.set(v, (seen.get(v) ?? 0) + 1);
    }
    expect(seen.get(1)).toBeGreaterThan(25);
    expect(seen.get(2)).toBeGreaterThan(5);
  });

  it("a promotion is visible within ALIAS_TTL_MS and not before (per-isolate cache)", async () => {
    await publishFixture("pr-ttl", "seed-simple/simple_model.onnx", 1);
    await publishFixture("pr-ttl", "seed-simple/simple_model.onnx", 2);
    let now = 1_000_000;
    const resolver = new ModelResolver(
      registry(),
      { versionListTtlMs: 0, aliasTtlMs: 5000, maxArtifactBytes: 1 << 24 },
      () => now,
    );
    await promote("pr-ttl", { version: 1, force: true });
    expect((await resolver.resolve({ name: "pr-ttl" })).manifest.version).toBe(1);
    await promote("pr-ttl", { version: 2, force: true });
    now += 4999;
    expect((await resolver.resolve({ name: "pr-ttl" })).manifest.version).toBe(1);
    now += 1;
    expect((await resolver.resolve({ name: "pr-ttl" })).manifest.version).toBe(2);
  });
});

describe("promotion through the admin API", () => {
  it("needs a token, and records the token's name as the actor", async () => {
    expect(
      (await promote("pr-simple", { version: 1 }, { authorization: "Bearer nope" })).status,
    ).toBe(401);
    const response = await api("/admin/models/pr-simple/promotions", { method: "POST" });
    expect(response.status).toBe(401);
  });

  it("a missing version is a 404 and leaves the alias untouched", async () => {
    const before = await aliasesOf("pr-simple");
    const { status, outcome } = await promote("pr-simple", { version: 99 });
    expect(status).toBe(404);
    expect(outcome.error).toMatch(/has no version 99/);
    expect(await aliasesOf("pr-simple")).toEqual(before);
    expect((await promote("no-such-model", { version: 1 })).status).toBe(404);
  });

  it("dry runs plan and gate without writing", async () => {
    const before = await aliasesOf("pr-simple");
    const { status, outcome } = await promote("pr-simple", { version: 3, dryRun: true });
    expect(status).toBe(200);
    expect(outcome.status).toBe("dry-run");
    expect(outcome.change).toMatchObject({
      from: { split: [{ version: 1 }] },
      to: { split: [{ version: 3 }] },
    });
    expect(outcome.gates[0]).toMatchObject({ gate: "golden", passed: true });
    expect(await aliasesOf("pr-simple")).toEqual(before);
  });

  it("a version whose artifact fails sha256 fails its gate (422, alias untouched); --force applies and is logged as forced", async () => {
    await publishFixture("pr-tamper", "seed-simple/simple_model.onnx", 1, {
      golden: "seed-simple/cases.json",
    });
    const v2: Manifest = await publishFixture("pr-tamper", "seed-simple/simple_model.onnx", 2, {
      golden: "seed-simple/cases.json",
      int8: true,
    });
    expect((await promote("pr-tamper", { version: 1 })).outcome.status).toBe("applied");
    await env.MODELS.put(v2.artifacts.int8!.key, new Uint8Array(v2.artifacts.int8!.bytes).fill(7));
    const refused = await promote("pr-tamper", { version: 2, reason: "try" });
    expect(refused.status).toBe(422);
    expect(refused.outcome.status).toBe("gates-failed");
    expect(refused.outcome.error).toMatch(/golden: .*sha256/);
    expect((await aliasesOf("pr-tamper")).aliases.production!.split).toEqual([
      { version: 1, weight: 10000 },
    ]);
    const forced = await promote("pr-tamper", { version: 2, force: true, reason: "hotfix" });
    expect(forced.status).toBe(200);
    expect(forced.outcome.record).toMatchObject({ forced: true, reason: "hotfix" });
    expect(forced.outcome.record!.gates[0]).toMatchObject({ gate: "golden", passed: false });
    const { records } = await adminGet<{ records: AuditRecord[] }>("models/pr-tamper/history");
    expect(records.map((r) => [r.revision, r.forced])).toEqual([
      [1, false],
      [2, true],
    ]);
  });

  it("the agreement gate compares top-1 classes with the current version", async () => {
    await publishFixture("pr-digits", "digits-mlp/digits_mlp.onnx", 1, {
      golden: "digits-mlp/testset.json",
    });
    await publishFixture("pr-digits", "digits-mlp/digits_mlp.onnx", 2, {
      golden: "digits-mlp/testset.json",
      int8: true,
    });
    expect((await promote("pr-digits", { version: 1 })).outcome.status).toBe("applied");
    const { status, outcome } = await promote("pr-digits", { version: 2, minAgreement: 0.99 });
    expect(status).toBe(200);
    const agreement = outcome.gates.find((g) => g.gate === "agreement")!;
    expect(agreement.passed).toBe(true);
    expect(agreement.measured).toBeGreaterThanOrEqual(0.99);
    expect(agreement.detail).toMatch(/360 golden inputs/);
    const golden = outcome.gates.find((g) => g.gate === "golden")!;
    expect(golden).toMatchObject({ passed: true });
    expect(golden.detail).toMatch(/on int8/);
  });

  it("rollback restores the previous state, then walks back; history records everything", async () => {
    await publishFixture("pr-rollback", "seed-simple/simple_model.onnx", 1);
    await publishFixture("pr-rollback", "seed-simple/simple_model.onnx", 2);
    await publishFixture("pr-rollback", "seed-simple/simple_model.onnx", 3);
    for (const version of [1, 2, 3]) await promote("pr-rollback", { version, force: true });
    const rollback = async () => {
      const response = await api("/admin/models/pr-rollback/rollbacks", {
        method: "POST",
        headers: { ...ADMIN, "content-type": "application/json" },
        body: JSON.stringify({ reason: "bad metrics" }),
      });
      expect(response.status).toBe(200);
      return (await response.json()) as PromotionOutcome;
    };
    expect((await rollback()).change.to).toEqual({ split: [{ version: 2, weight: 10000 }] });
    expect((await infer("/v2/models/pr-rollback/infer", simpleRequest())).model).toBe(
      "pr-rollback@2",
    );
    expect((await rollback()).change.to).toEqual({ split: [{ version: 1, weight: 10000 }] });
    const { records } = await adminGet<{ records: AuditRecord[] }>("models/pr-rollback/history");
    expect(records.map((r) => [r.action, r.undoes ?? null, r.actor])).toEqual([
      ["promote", null, "ci-deploy"],
      ["promote", null, "ci-deploy"],
      ["promote", null, "ci-deploy"],
      ["rollback", 3, "admin"],
      ["rollback", 2, "admin"],
    ]);
    const limited = await adminGet<{ records: AuditRecord[] }>(
      "models/pr-rollback/history?limit=2",
    );
    expect(limited.records.map((r) => r.revision)).toEqual([4, 5]);
  });
});

describe("shadow traffic", () => {
  async function waitForReport(model: string, samples: number): Promise<ShadowReport> {
    for (let i = 0; i < 100; i++) {
      const { reports } = await adminGet<{ reports: ShadowReport[] }>(`models/${model}/shadow`);
      if (reports[0] && reports[0].samples + reports[0].errors >= samples) return reports[0];
      await sleep(50);
    }
    throw new Error("no shadow report");
  }

  it("mirrors to the candidate after answering, and reports divergence", async () => {
    await publishFixture("pr-shadow", "seed-simple/simple_model.onnx", 1, {
      golden: "seed-simple/cases.json",
    });
    await publishFixture("pr-shadow", "seed-simple/simple_model.onnx", 2, {
      golden: "seed-simple/cases.json",
      int8: true,
    });
    await promote("pr-shadow", { version: 1 });
    const shadow = await promote("pr-shadow", { version: 2, shadow: 100 });
    expect(shadow.outcome.change.to).toEqual({
      split: [{ version: 1, weight: 10000 }],
      shadow: { version: 2, fraction: 1 },
    });
    for (let i = 0; i < 5; i++) {
      const answer = await infer("/v2/models/pr-shadow/infer", simpleRequest(i));
      expect(answer).toMatchObject({ status: 200, model: "pr-shadow@1", runtime: "ort" });
    }
    const report = await waitForReport("pr-shadow", 5);
    expect(report).toMatchObject({ alias: "production", candidate: 2, primaries: [1], errors: 0 });
    expect(report.samples).toBeGreaterThanOrEqual(5);
    // int8 against fp32: close, but not identical.
    expect(report.maxAbsDiff).toBeGreaterThan(0);
    expect(report.maxAbsDiff).toBeLessThan(0.05);
  });

  it("a failing shadow version never reaches the caller; its failures are counted", async () => {
    await publishFixture("pr-shadow-bad", "seed-simple/simple_model.onnx", 1);
    const v2 = await publishFixture("pr-shadow-bad", "seed-simple/simple_model.onnx", 2, {
      int8: true,
    });
    await promote("pr-shadow-bad", { version: 1, force: true });
    await promote("pr-shadow-bad", { version: 2, shadow: 100, force: true });
    await env.MODELS.put(v2.artifacts.int8!.key, new Uint8Array(v2.artifacts.int8!.bytes));
    for (let i = 0; i < 3; i++) {
      const answer = await infer("/v2/models/pr-shadow-bad/infer", simpleRequest(i));
      expect(answer.status).toBe(200);
      expect(answer.model).toBe("pr-shadow-bad@1");
    }
    const report = await waitForReport("pr-shadow-bad", 3);
    expect(report.errors).toBeGreaterThanOrEqual(3);
    expect(report.samples).toBe(0);
  });
});
