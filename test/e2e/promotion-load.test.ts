/**
 * Issue 6, "Reliability, measured": 64 connections for at least 30 s against
 * digits-mlp's `production` alias through a real `wrangler dev`, while the
 * admin API flips the alias between versions 1 (fp32, onnxruntime) and 2
 * (int8) a hundred times, through their gates, then rolls it back. Every
 * response is checked against what its version answers when pinned (see
 * `scripts/lib/promotion-load.ts`); the figures are printed for CI logs.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevServer, type DevServer } from "../../scripts/lib/dev-server";
import { runPromotionLoad } from "../../scripts/lib/promotion-load";
import { RemoteTarget } from "../../scripts/lib/targets";

const TOKEN = "e2e-promotion-load-token";
const MODEL = "digits-mlp";
const CONNECTIONS = 64;
const SECONDS = 30;
const FLIPS = 100;

describe("promotion under load through wrangler dev", () => {
  let persistTo: string;
  let server: DevServer | undefined;

  beforeAll(async () => {
    persistTo = await mkdtemp(join(tmpdir(), "pinion-promotion-load-"));
    // The worker's default ALIAS_TTL_MS (5 s): propagation as deployed.
    server = await startDevServer(persistTo, ["--var", `PINION_ADMIN_TOKEN:${TOKEN}`]);
  });

  afterAll(async () => {
    await server?.stop();
    if (persistTo) await rm(persistTo, { recursive: true, force: true });
  });

  it("answers every request correctly while production flips 100 times and rolls back", async () => {
    const figures = await runPromotionLoad({
      base: server!.base,
      token: TOKEN,
      model: MODEL,
      versions: [1, 2],
      connections: CONNECTIONS,
      seconds: SECONDS,
      flips: FLIPS,
      aliasTtlMs: 5000,
    });
    const { violationExamples, flipFailures, ...summary } = figures;
    console.log(
      `promotion under load (${CONNECTIONS} connections, ${FLIPS} flips + rollback): ` +
        `${figures.requestsPerSecond.toFixed(0)} requests/s, p50 ${figures.latencyP50Ms} ms, ` +
        `p99 ${figures.latencyP99Ms} ms\n${JSON.stringify(summary, null, 2)}`,
    );

    // The two versions answer the test input differently, so outputs tell them apart.
    expect(figures.outputsDiffer).toBe(true);
    // 0 failed requests, every response checked and correct.
    expect(figures.requests).toBeGreaterThan(1000);
    expect(figures.durationSeconds).toBeGreaterThanOrEqual(SECONDS);
    expect(figures.checked).toBe(figures.requests);
    for (const example of violationExamples) console.log(`violation: ${example}`);
    expect(figures.non2xx).toBe(0);
    expect(figures.errors).toBe(0);
    expect(figures.timeouts).toBe(0);
    expect(figures.violations, violationExamples.join("\n")).toBe(0);
    // Both versions answered, and nothing else did.
    expect(Object.keys(figures.served).sort()).toEqual(["1", "2"]);
    expect(figures.served["1"]).toBeGreaterThan(0);
    expect(figures.served["2"]).toBeGreaterThan(0);
    expect(figures.served["1"]! + figures.served["2"]!).toBe(figures.requests);
    // Every flip passed its gates and applied; the rollback undid the last one (2 → 1).
    expect(flipFailures).toEqual([]);
    expect(figures.flipsDone).toBe(FLIPS);
    expect(figures.flipsFailed).toBe(0);
    expect(figures.rollback).toMatchObject({ status: "applied", to: 2 });
    // Within the alias TTL (+1 s) of the rollback, only the restored version answers.
    expect(figures.settledResponses).toBeGreaterThan(0);
    expect(figures.staleAfterSettle).toBe(0);

    // The audit log has the setup, every flip and the rollback, in order.
    expect(figures.historyLength).toBeGreaterThanOrEqual(FLIPS + 1);
    const history = await new RemoteTarget(new URL(server!.base), TOKEN).history(MODEL);
    expect(history).toHaveLength(figures.historyLength);
    expect(history.map((r) => r.revision)).toEqual(history.map((_, i) => i + 1));
    const flips = history.slice(-(FLIPS + 1), -1);
    flips.forEach((record, i) => {
      const to = i % 2 === 0 ? 2 : 1;
      expect(record).toMatchObject({
        action: "promote",
        alias: "production",
        actor: "admin",
        forced: false,
        from: { split: [{ version: 3 - to, weight: 10_000 }] },
        to: { split: [{ version: to, weight: 10_000 }] },
        reason: `promotion-load: flip ${i + 1} of ${FLIPS}`,
      });
      expect(record.gates.length).toBeGreaterThan(0);
      expect(record.gates.every((g) => g.passed)).toBe(true);
    });
    expect(history.at(-1)).toMatchObject({
      action: "rollback",
      alias: "production",
      undoes: flips.at(-1)!.revision,
      from: { split: [{ version: 1, weight: 10_000 }] },
      to: { split: [{ version: 2, weight: 10_000 }] },
      aliases: { production: { split: [{ version: 2, weight: 10_000 }] } },
    });
  }, 300_000);
});
