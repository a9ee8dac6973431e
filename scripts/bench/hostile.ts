/**
 * @module
 * `npm run bench:hostile`: the mixed load run of issue 12. A fresh `wrangler
 * dev` (demo models seeded into a temporary local R2), then 100 keep-alive
 * connections for 30 s of good inferences mixed with bad requests — invalid
 * JSON, wrong shapes, unknown models and paths, a 100 KB datatype, bodies over
 * MAX_REQUEST_BYTES with Content-Length and chunked (see
 * `scripts/lib/hostile-load.ts`). Prints the figures and exits non-zero on any
 * 5xx, connection error, or answer that is not what its request must get.
 *
 * Knobs (environment): BENCH_CONNECTIONS (100), BENCH_SECONDS (30).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDevServer } from "../lib/dev-server";
import { runHostileLoad } from "../lib/hostile-load";

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 30);

const persistTo = await mkdtemp(join(tmpdir(), "pinion-bench-hostile-"));
let failed = true;
try {
  console.log(`starting wrangler dev (demo models into ${persistTo})…`);
  const server = await startDevServer(persistTo);
  try {
    console.log(`${CONNECTIONS} connections for ${SECONDS} s against ${server.base}…`);
    const f = await runHostileLoad({
      base: server.base,
      connections: CONNECTIONS,
      seconds: SECONDS,
    });
    const rows: [string, string][] = [
      ["requests", `${f.requests} in ${f.durationSeconds.toFixed(1)} s`],
      ["requests/s", f.requestsPerSecond.toFixed(0)],
      [
        "statuses",
        Object.entries(f.statuses)
          .map(([s, n]) => `${s}: ${n}`)
          .join(", "),
      ],
      ["5xx", String(f.serverErrors)],
      ["connection errors", String(f.errors)],
      ["good answers correct", String(f.goodCorrect)],
      ["unexpected answers", String(f.unexpected)],
      [
        "kinds",
        Object.entries(f.kinds)
          .map(([k, n]) => `${k} ${n}`)
          .join(", "),
      ],
    ];
    for (const [label, value] of rows) console.log(`${label.padEnd(22)} ${value}`);
    for (const example of f.examples) console.log(`  ${example}`);
    failed = f.serverErrors > 0 || f.errors > 0 || f.unexpected > 0;
  } finally {
    await server.stop();
  }
} finally {
  await rm(persistTo, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
