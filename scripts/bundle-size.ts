/**
 * @module
 * `npm run size`: what `wrangler deploy` would upload, with onnxruntime-web and
 * without it (`--define PINION_WITH_ORT:false`, for fleets whose versions are
 * all int8), from `wrangler deploy --dry-run --outdir`, and the web console's
 * static assets (its first view; budget 150 KB gzip). The table goes into
 * docs/benchmarks.md (section bench:size; see `bench/report.ts`).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { recordBench } from "./bench/report";
import { buildConsole } from "./build-console";

const run = promisify(execFile);
const wrangler = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");

/** What docs/benchmarks.md gets: the table, as printed. */
const printed: string[] = [];

function print(line: string): void {
  console.log(line);
  printed.push(line);
}

async function measure(label: string, extra: string[]): Promise<void> {
  const outdir = await mkdtemp(join(tmpdir(), "pinion-size-"));
  try {
    await run(process.execPath, [wrangler, "deploy", "--dry-run", "--outdir", outdir, ...extra], {
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
    });
    let raw = 0;
    let gzip = 0;
    const parts: string[] = [];
    for (const file of await readdir(outdir)) {
      if (file.endsWith(".map") || file === "README.md") continue;
      const bytes = await readFile(join(outdir, file));
      raw += (await stat(join(outdir, file))).size;
      gzip += gzipSync(bytes).byteLength;
      parts.push(
        `${file.replace(/^[0-9a-f]{40}-/, "")} ${(bytes.byteLength / 1024).toFixed(0)} KiB`,
      );
    }
    const kib = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
    print(
      `${label.padEnd(22)} ${kib(raw).padStart(10)} ${kib(gzip).padStart(10)} gzip   (${parts.join(", ")})`,
    );
  } finally {
    await rm(outdir, { recursive: true, force: true });
  }
}

print(`${"bundle".padEnd(22)} ${"upload".padStart(10)} ${"".padStart(10)}`);
await measure("with onnxruntime-web", []);
await measure("int8 only", ["--define", "PINION_WITH_ORT:false"]);
const consoleAssets = await buildConsole();
const sum = (key: "bytes" | "gzip") => consoleAssets.reduce((total, a) => total + a[key], 0);
print(
  `${"console assets".padEnd(22)} ${`${(sum("bytes") / 1024).toFixed(0)} KiB`.padStart(10)} ${`${(sum("gzip") / 1024).toFixed(0)} KiB`.padStart(10)} gzip   (${consoleAssets.map((a) => `${a.file} ${(a.gzip / 1024).toFixed(0)} KiB gzip`).join(", ")}; static assets, not in the worker)`,
);
await recordBench("size", printed.join("\n"));
