/**
 * Issue 6, concurrent promotions: eight `pinion promote` processes at once
 * against one `wrangler dev`'s admin API, on two models and several aliases,
 * under two named admin tokens. The final state must equal one serial order of
 * the changes, and the audit log must hold exactly one record per applied
 * change, with contiguous revisions, each moving its alias from the state the
 * previous record left. Then the refusals: a missing version (exit 6) and a
 * wrong token (exit 5) leave the aliases untouched.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { root, startDevServer, type DevServer } from "../../scripts/lib/dev-server";
import type { AliasDocument, AliasEntry } from "../../core/registry/aliases";
import type { AuditRecord } from "../../core/registry/promotion";
import type { PromotionOutcome } from "../../core/serving/promoter";

const run = promisify(execFile);
const TOKENS = { "ci-a": "token-for-ci-a", "ci-b": "token-for-ci-b" } as const;
type Actor = keyof typeof TOKENS;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function pinion(args: string[], token: string): Promise<Result> {
  const bin = new URL("bin/pinion.js", root).pathname;
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], {
      cwd: root,
      env: { ...process.env, PINION_ADMIN_TOKEN: token, PINION_TARGET: "" },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

interface Promotion {
  model: string;
  version: number;
  alias: string;
  force: boolean;
  actor: Actor;
  reason: string;
}

/**
 * Full promotions only, so each applies in any order: every one is applied,
 * except the two identical `digits-mlp staging → 2`, of which exactly one is
 * (the other finds the alias already there: a no-op).
 */
const PROMOTIONS: Promotion[] = [
  { model: "simple", version: 1, alias: "production", force: true, actor: "ci-a", reason: "p1" },
  { model: "simple", version: 2, alias: "production", force: true, actor: "ci-b", reason: "p2" },
  { model: "simple", version: 2, alias: "staging", force: true, actor: "ci-a", reason: "p3" },
  { model: "simple", version: 1, alias: "qa", force: false, actor: "ci-b", reason: "p4" },
  {
    model: "digits-mlp",
    version: 1,
    alias: "production",
    force: true,
    actor: "ci-a",
    reason: "p5",
  },
  {
    model: "digits-mlp",
    version: 2,
    alias: "production",
    force: false,
    actor: "ci-b",
    reason: "p6",
  },
  { model: "digits-mlp", version: 2, alias: "staging", force: true, actor: "ci-a", reason: "p7" },
  { model: "digits-mlp", version: 2, alias: "staging", force: true, actor: "ci-b", reason: "p8" },
];

const single = (version: number): AliasEntry => ({ split: [{ version, weight: 10_000 }] });

describe("concurrent promotions from separate CLI processes", () => {
  let persistTo: string;
  let server: DevServer | undefined;
  let base: string;

  const cli = (args: string[], actor: Actor = "ci-a") =>
    pinion([...args, "--target", base], TOKENS[actor]);
  const aliasesOf = async (model: string) => {
    const result = await cli(["aliases", model, "--json"]);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as AliasDocument;
  };
  const historyOf = async (model: string) => {
    const result = await cli(["history", model, "--json"]);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as AuditRecord[];
  };

  beforeAll(async () => {
    persistTo = await mkdtemp(join(tmpdir(), "pinion-promotion-concurrency-"));
    const named = Object.entries(TOKENS)
      .map(([name, token]) => `${name}=${token}`)
      .join(",");
    server = await startDevServer(persistTo, ["--var", `PINION_ADMIN_TOKENS:${named}`]);
    base = server.base;
  });

  afterAll(async () => {
    await server?.stop();
    if (persistTo) await rm(persistTo, { recursive: true, force: true });
  });

  it("applies every change once, in one serial order that the audit log records", async () => {
    for (const model of ["simple", "digits-mlp"]) {
      expect(await historyOf(model)).toEqual([]);
      expect((await aliasesOf(model)).aliases).toEqual({});
    }

    const results = await Promise.all(
      PROMOTIONS.map((p) =>
        cli(
          [
            "promote",
            p.model,
            String(p.version),
            "--alias",
            p.alias,
            "--reason",
            p.reason,
            "--json",
            ...(p.force ? ["--force"] : []),
          ],
          p.actor,
        ),
      ),
    );
    const outcomes = results.map((result, i) => {
      expect(result.code, `${JSON.stringify(PROMOTIONS[i])}: ${result.stderr}`).toBe(0);
      return JSON.parse(result.stdout) as PromotionOutcome;
    });

    // Which applied: all but one of the identical pair.
    const statuses = outcomes.map((o) => o.status);
    expect(statuses.slice(0, 6)).toEqual(Array(6).fill("applied"));
    expect([...statuses.slice(6)].sort()).toEqual(["applied", "noop"]);

    for (const model of ["simple", "digits-mlp"]) {
      const mine = PROMOTIONS.map((p, i) => ({ ...p, outcome: outcomes[i]! })).filter(
        (p) => p.model === model,
      );
      const applied = mine.filter((p) => p.outcome.status === "applied");
      const history = await historyOf(model);

      // Exactly one record per applied change, revisions 1..n.
      expect(history).toHaveLength(applied.length);
      expect(history.map((r) => r.revision)).toEqual(history.map((_, i) => i + 1));
      const byRevision = new Map(history.map((r) => [r.revision, r]));
      for (const p of applied) {
        const record = p.outcome.record!;
        // What each process was told is what the log holds, and it is what that process asked for.
        expect(byRevision.get(record.revision)).toEqual(record);
        expect(record).toMatchObject({
          model,
          action: "promote",
          alias: p.alias,
          to: single(p.version),
          actor: p.actor,
          forced: p.force,
          reason: p.reason,
        });
        if (!p.force) {
          expect(record.gates.length).toBeGreaterThan(0);
          expect(record.gates.every((g) => g.passed || g.skipped)).toBe(true);
        }
      }
      expect(new Set(applied.map((p) => p.outcome.record!.revision)).size).toBe(applied.length);

      // Replaying the records in revision order: each moved its alias from the state the
      // previous one left, and its `aliases` is exactly the state after it.
      let state: Record<string, AliasEntry> = {};
      for (const record of history) {
        expect(record.from, `revision ${record.revision}`).toEqual(state[record.alias] ?? null);
        state = { ...state, [record.alias]: record.to! };
        expect(record.aliases, `revision ${record.revision}`).toEqual(state);
      }

      // The served state is the last record's.
      const document = await aliasesOf(model);
      expect(document.revision).toBe(history.length);
      expect(document.aliases).toEqual(history.at(-1)!.aliases);
      expect(document.aliases).toEqual(state);
    }

    const simple = await aliasesOf("simple");
    expect(Object.keys(simple.aliases).sort()).toEqual(["production", "qa", "staging"]);
    expect(simple.aliases.staging).toEqual(single(2));
    expect(simple.aliases.qa).toEqual(single(1));
    const digits = await aliasesOf("digits-mlp");
    expect(digits.aliases.staging).toEqual(single(2));
  }, 240_000);

  it("refuses a missing version with exit 6 and leaves the aliases untouched", async () => {
    const before = await aliasesOf("simple");
    const historyBefore = await historyOf("simple");

    const missing = await cli(["promote", "simple", "99", "--json"]);
    expect(missing.code).toBe(6);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toMatch(/^pinion: .*404 model 'simple' has no version 99/);

    const forced = await cli(["promote", "simple", "99", "--alias", "staging", "--force"]);
    expect(forced.code).toBe(6);

    const noModel = await cli(["promote", "no-such-model", "1"]);
    expect(noModel.code).toBe(6);
    expect(noModel.stderr).toMatch(/model 'no-such-model' not found/);

    expect(await aliasesOf("simple")).toEqual(before);
    expect(await historyOf("simple")).toEqual(historyBefore);
  }, 120_000);

  it("refuses a wrong token with exit 5 and leaves the aliases untouched", async () => {
    const before = await aliasesOf("simple");
    const historyBefore = await historyOf("simple");
    const target = before.aliases.production!.split[0]!.version === 1 ? 2 : 1;

    const wrong = await pinion(
      ["promote", "simple", String(target), "--force", "--target", base],
      "not-a-token",
    );
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toMatch(/401 missing or wrong admin token/);
    const rollback = await pinion(["rollback", "simple", "--target", base], "not-a-token");
    expect(rollback.code).toBe(5);

    expect(await aliasesOf("simple")).toEqual(before);
    expect(await historyOf("simple")).toEqual(historyBefore);

    // The same promotion with a valid token does apply: the refusal was the token's doing.
    const ok = await cli(["promote", "simple", String(target), "--force", "--json"], "ci-b");
    expect(ok.code, ok.stderr).toBe(0);
    expect((JSON.parse(ok.stdout) as PromotionOutcome).record).toMatchObject({
      revision: historyBefore.length + 1,
      actor: "ci-b",
      from: before.aliases.production,
      to: single(target),
    });
  }, 120_000);
});
