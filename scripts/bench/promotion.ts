/**
 * @module
 * `npm run bench:promotion`: the promotion load test of issue 6 as a benchmark.
 * A fresh `wrangler dev` (demo models seeded into a temporary local R2), then
 * 64 connections for 30 s against `POST /v2/models/digits-mlp/infer` (the
 * `production` alias) while the admin API flips `production` between versions
 * 1 and 2 a hundred times, through their gates, and rolls back once. Every
 * response is checked (see `scripts/lib/promotion-load.ts`); prints the
 * figures and exits non-zero if any request failed or any check did.
 *
 * Knobs (environment): BENCH_CONNECTIONS (64), BENCH_SECONDS (30),
 * BENCH_FLIPS (100), ALIAS_TTL_MS (the worker's default, 5000).
 *
 * A run that passes its checks records the figures in docs/benchmarks.md
 * (section bench:promotion; see `report.ts`).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDevServer } from "../lib/dev-server";
import { runPromotionLoad, type PromotionLoadFigures } from "../lib/promotion-load";
import { recordBench } from "./report";

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 30);
const FLIPS = Number(process.env.BENCH_FLIPS ?? 100);
/** Unset: the worker's default (5000 ms), which the load's settling wait also assumes. */
const ALIAS_TTL_MS = process.env.ALIAS_TTL_MS;
const MODEL = "digits-mlp";
const VERSIONS = [1, 2] as const;

/** Prints the figures; returns what it printed. */
function print(f: PromotionLoadFigures): string {
  const rows: [string, string][] = [
    ["requests/s", f.requestsPerSecond.toFixed(0)],
    ["latency p50 (ms)", String(f.latencyP50Ms)],
    ["latency p99 (ms)", String(f.latencyP99Ms)],
    ["latency max (ms)", String(f.latencyMaxMs)],
    ["requests", `${f.requests} in ${f.durationSeconds.toFixed(1)} s (${f.checked} checked)`],
    [
      "failed requests",
      `${f.failed} (${f.non2xx} non-2xx, ${f.errors} errors, ${f.timeouts} timeouts)`,
    ],
    ["violations", String(f.violations)],
    [
      "versions served",
      Object.entries(f.served)
        .map(([version, count]) => `v${version}: ${count}`)
        .join(", "),
    ],
    [
      "flips ok / failed",
      `${f.flipsDone} / ${f.flipsFailed} (mean ${f.flipMeanMs.toFixed(0)} ms, max ${f.flipMaxMs.toFixed(0)} ms each)`,
    ],
    [
      "rollback",
      `${f.rollback.status}${f.rollback.to !== null ? ` → v${f.rollback.to}` : ""}${f.rollback.revision !== null ? ` (revision ${f.rollback.revision})` : ""}${f.rollback.error ? `: ${f.rollback.error}` : ""}`,
    ],
    ["after settling", `${f.settledResponses} responses, ${f.staleAfterSettle} stale`],
    ["audit records", String(f.historyLength)],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = [
    ...rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`),
    ...f.violationExamples.map((example) => `  violation: ${example}`),
    ...f.flipFailures.map((failure) => `  flip failed: ${failure}`),
  ];
  for (const line of lines) console.log(line);
  return lines.join("\n");
}

async function main(): Promise<number> {
  const token = randomBytes(16).toString("hex");
  const persistTo = await mkdtemp(join(tmpdir(), "pinion-bench-promotion-"));
  const vars = ["--var", `PINION_ADMIN_TOKEN:${token}`];
  if (ALIAS_TTL_MS !== undefined) vars.push("--var", `ALIAS_TTL_MS:${ALIAS_TTL_MS}`);
  console.log(
    `Pinion promotion under load: ${CONNECTIONS} connections for ≥ ${SECONDS} s against ${MODEL}'s production alias, ` +
      `${FLIPS} gated flips between v${VERSIONS[0]} and v${VERSIONS[1]} + 1 rollback, wrangler dev on loopback ` +
      `(ALIAS_TTL_MS ${ALIAS_TTL_MS ?? "5000, the default"})\n`,
  );
  const server = await startDevServer(persistTo, vars);
  try {
    const figures = await runPromotionLoad({
      base: server.base,
      token,
      model: MODEL,
      versions: VERSIONS,
      connections: CONNECTIONS,
      seconds: SECONDS,
      flips: FLIPS,
      aliasTtlMs: ALIAS_TTL_MS === undefined ? 5000 : Number(ALIAS_TTL_MS),
      log: (line) => console.log(`  ${line}`),
    });
    console.log("");
    const table = print(figures);
    const ok =
      figures.failed === 0 &&
      figures.violations === 0 &&
      figures.staleAfterSettle === 0 &&
      figures.flipsFailed === 0 &&
      figures.rollback.status === "applied";
    if (!ok) console.error("\nFAILED: see the figures above");
    else await recordBench("promotion", table);
    return ok ? 0 : 1;
  } finally {
    await server.stop();
    await rm(persistTo, { recursive: true, force: true });
  }
}

process.exitCode = await main();
