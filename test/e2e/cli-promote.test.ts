/**
 * The scripted promotion flow end to end with the `pinion` CLI, as a CI job
 * would run it: publish → staging → canary 10 % → shadow → production →
 * rollback against a running `wrangler dev` (admin API), checking what the
 * worker then serves; and the same commands against local R2, where gates run
 * in Node on the same runtimes.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { root, startDevServer, type DevServer } from "../../scripts/lib/dev-server";
import type { AliasDocument } from "../../core/registry/aliases";
import type { AuditRecord } from "../../core/registry/promotion";
import type { ShadowReport } from "../../core/registry/shadow-stats";
import type { PromotionOutcome } from "../../core/serving/promoter";

const run = promisify(execFile);
const TOKEN = "e2e-promote-token";
const fixture = (path: string) => new URL(`fixtures/${path}`, root).pathname;
const PTH = fixture("seed-simple/simple_model.pth");
const GOLDEN = fixture("seed-simple/cases.json");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function pinion(args: string[], env: Record<string, string> = {}): Promise<Result> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      [new URL("bin/pinion.js", root).pathname, ...args],
      {
        cwd: root,
        env: { ...process.env, PINION_ADMIN_TOKEN: TOKEN, ...env },
      },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let server: DevServer | undefined;
let persistTo: string;
let localState: string;
let cases: { inputs: number[][] };

beforeAll(async () => {
  persistTo = await mkdtemp(join(tmpdir(), "pinion-promote-"));
  localState = await mkdtemp(join(tmpdir(), "pinion-promote-local-"));
  cases = JSON.parse(await readFile(GOLDEN, "utf8")) as { inputs: number[][] };
  server = await startDevServer(persistTo, [
    "--var",
    `PINION_ADMIN_TOKEN:${TOKEN}`,
    "--var",
    "ALIAS_TTL_MS:0",
    "--var",
    "SHADOW_FLUSH_MS:0",
  ]);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await rm(persistTo, { recursive: true, force: true });
  await rm(localState, { recursive: true, force: true });
});

async function inferAs(key: string, alias?: string) {
  const path = alias ? `/aliases/${alias}` : "";
  const response = await fetch(`${server!.base}/v2/models/flow${path}/infer`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-pinion-key": key },
    body: JSON.stringify({
      inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: cases.inputs[0] }],
    }),
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { model_version: string };
  expect(response.headers.get("x-pinion-model")).toBe(`flow@${body.model_version}`);
  return { version: Number(body.model_version), alias: response.headers.get("x-pinion-alias") };
}

describe("pinion promote, against wrangler dev", () => {
  const target = () => ["--target", server!.base];
  const json = async <T>(args: string[]): Promise<T> => {
    const result = await pinion([...args, ...target(), "--json"]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    return JSON.parse(result.stdout) as T;
  };
  const aliases = () => json<AliasDocument>(["aliases", "flow"]);

  it("publish → staging → canary 10 % → shadow → production → rollback", async () => {
    for (const extra of [[], ["--quantize", "int8"]]) {
      const published = await pinion([
        "publish",
        "flow",
        PTH,
        "--golden",
        GOLDEN,
        ...extra,
        ...target(),
      ]);
      expect(published.code).toBe(0);
    }
    // First release: version 1 to production.
    const first = await pinion(["promote", "flow", "1", "--reason", "first release", ...target()]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/flow alias production: \(none\) → 1/);
    expect(first.stdout).toMatch(/gate golden: passed — 100 golden cases on ort/);
    expect(first.stdout).toMatch(/applied: revision 1 by admin/);

    // The int8 version to staging, checked there.
    const staging = await json<PromotionOutcome>(["promote", "flow", "2", "--alias", "staging"]);
    expect(staging.status).toBe("applied");
    expect(staging.gates[0]).toMatchObject({ gate: "golden", passed: true });
    expect(staging.gates[0]!.detail).toMatch(/on int8/);
    expect(await inferAs("anyone", "staging")).toEqual({ version: 2, alias: "staging" });

    // Canary: 10 % of production, sticky per key.
    const dry = await pinion(["promote", "flow", "2", "--canary", "10", "--dry-run", ...target()]);
    expect(dry.stdout).toMatch(/1 → 1 \(90%\) \+ 2 \(10%\)/);
    expect(dry.stdout).toMatch(/dry run: nothing written/);
    expect((await aliases()).aliases.production).toEqual({
      split: [{ version: 1, weight: 10000 }],
    });
    await json(["promote", "flow", "2", "--canary", "10", "--reason", "canary"]);
    const versions: number[] = [];
    for (let i = 0; i < 80; i++) {
      const answer = await inferAs(`user-${i}`);
      expect(answer.alias).toBe("production");
      expect((await inferAs(`user-${i}`)).version).toBe(answer.version);
      versions.push(answer.version);
    }
    expect(versions.filter((v) => v === 2).length).toBeGreaterThan(0);
    expect(versions.filter((v) => v === 1).length).toBeGreaterThan(50);

    // Shadow: version 2 also sees the traffic version 1 answers.
    await json(["promote", "flow", "2", "--shadow", "100", "--reason", "shadow"]);
    for (let i = 0; i < 20; i++) await inferAs(`shadow-${i}`);
    let report: ShadowReport | undefined;
    for (let i = 0; i < 50 && !(report && report.samples > 0); i++) {
      report = (await json<ShadowReport[]>(["shadow-report", "flow"]))[0];
      if (!report || report.samples === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(report).toMatchObject({ alias: "production", candidate: 2, primaries: [1], errors: 0 });
    expect(report!.maxAbsDiff).toBeGreaterThan(0);
    const text = await pinion(["shadow-report", "flow", ...target()]);
    expect(text.stdout).toMatch(/^ALIAS\s+REV\s+SHADOW\s+VS\s+SAMPLES/);

    // Full promotion ends the canary and the shadow.
    await json(["promote", "flow", "2", "--reason", "looks good"]);
    expect((await aliases()).aliases.production).toEqual({
      split: [{ version: 2, weight: 10000 }],
    });
    expect(await inferAs("anyone")).toEqual({ version: 2, alias: "production" });

    // Rollback: back to the canary with its shadow.
    const rollback = await pinion(["rollback", "flow", "--reason", "error budget", ...target()]);
    expect(rollback.code).toBe(0);
    expect(rollback.stdout).toMatch(/rollback \(undoing revision 5\)/);
    const restored = (await aliases()).aliases.production!;
    expect(restored.split.map((s) => s.version)).toEqual([1, 2]);
    expect(restored.shadow).toEqual({ version: 2, fraction: 1 });

    const history = await json<AuditRecord[]>(["history", "flow"]);
    expect(history.map((r) => [r.revision, r.action, r.alias, r.actor])).toEqual([
      [1, "promote", "production", "admin"],
      [2, "promote", "staging", "admin"],
      [3, "promote", "production", "admin"],
      [4, "promote", "production", "admin"],
      [5, "promote", "production", "admin"],
      [6, "rollback", "production", "admin"],
    ]);
    expect(history.map((r) => r.reason ?? null)).toEqual([
      "first release",
      null,
      "canary",
      "shadow",
      "looks good",
      "error budget",
    ]);
    const table = await pinion(["history", "flow", ...target()]);
    expect(table.stdout.split("\n")[0]).toMatch(/^REV\s+WHEN\s+WHO\s+ACTION\s+ALIAS\s+FROM\s+TO/);
  }, 240_000);

  it("exit codes tell CI what happened: gate failure 3, not found 6, auth 5, usage 2", async () => {
    // A version without a golden set cannot pass its gates.
    const bare = await pinion(["publish", "flow", PTH, ...target()]);
    expect(bare.stdout).toMatch(/published flow@3/);
    const before = await aliases();
    const refused = await pinion(["promote", "flow", "3", "--alias", "staging", ...target()]);
    expect(refused.code).toBe(3);
    expect(refused.stdout).toMatch(/gate golden: FAILED — flow@3 has no golden set/);
    expect(refused.stdout).toMatch(/refused: a gate failed; the alias is untouched/);
    expect(await aliases()).toEqual(before);
    const forced = await json<PromotionOutcome>([
      "promote",
      "flow",
      "3",
      "--alias",
      "staging",
      "--force",
      "--reason",
      "hotfix",
    ]);
    expect(forced.record).toMatchObject({ forced: true, reason: "hotfix" });

    const missing = await pinion(["promote", "flow", "42", ...target()]);
    expect(missing.code).toBe(6);
    expect(missing.stderr).toMatch(/has no version 42/);
    const wrong = await pinion(["promote", "flow", "1", ...target()], {
      PINION_ADMIN_TOKEN: "nope",
    });
    expect(wrong.code).toBe(5);
    const usage = await pinion(["promote", "flow", "one", ...target()]);
    expect(usage.code).toBe(2);
    const badCanary = await pinion(["promote", "flow", "1", "--canary", "150", ...target()]);
    expect(badCanary.code).toBe(2);
  }, 120_000);
});

describe("pinion promote, against local R2", () => {
  const local = ["--persist-to", ""];
  it("gates run in Node; the actor is the local user or --actor", async () => {
    local[1] = localState;
    for (const extra of [[], ["--quantize", "int8"]]) {
      expect(
        (await pinion(["publish", "loc", PTH, "--golden", GOLDEN, ...extra, ...local])).code,
      ).toBe(0);
    }
    const promoted = await pinion(["promote", "loc", "2", "--actor", "ci-job-17", ...local]);
    expect(promoted.code).toBe(0);
    expect(promoted.stdout).toMatch(/gate golden: passed — 100 golden cases on int8/);
    const history = JSON.parse(
      (await pinion(["history", "loc", "--json", ...local])).stdout,
    ) as AuditRecord[];
    expect(history).toHaveLength(1);
    expect(history[0]).toMatchObject({ actor: "ci-job-17", to: { split: [{ version: 2 }] } });
    const back = await pinion(["rollback", "loc", ...local]);
    expect(back.code).toBe(0);
    const state = JSON.parse(
      (await pinion(["aliases", "loc", "--json", ...local])).stdout,
    ) as AliasDocument;
    expect(state).toMatchObject({ revision: 2, aliases: {} });
  }, 120_000);
});
