/**
 * @module
 * Writes a finished benchmark's table into `docs/benchmarks.md`, so the figures
 * there come from the bench scripts rather than from hand edits. Each bench has
 * its own section between `<!-- bench:{name}:start -->` and
 * `<!-- bench:{name}:end -->`; {@link recordBench} replaces what is between them
 * with the table, the date (ISO), the machine (CPU model, cores, memory, Node)
 * and the command that produced it. Call it only once a run has completed and
 * passed its checks. Under `CI=true` it writes nothing, so CI runs leave the
 * tree clean.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";

/** The sections of docs/benchmarks.md, one per bench script. */
export type BenchName =
  | "kernels"
  | "runtime"
  | "text"
  | "protocol"
  | "promotion"
  | "origin"
  | "size"
  | "explain"
  | "metrics";

const DOC = fileURLToPath(new URL("../../docs/benchmarks.md", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** This machine, in one line: CPU model, cores, memory, Node version. */
export function machine(): string {
  const cpu = cpus();
  const model = cpu[0]?.model.trim() || "unknown CPU";
  const gib = (totalmem() / 1024 ** 3).toFixed(1);
  return `${model}, ${cpu.length} cores, ${gib} GiB, Node ${process.version}`;
}

/** How this run was started: the BENCH_* knobs that were set, then the npm script (or the file). */
export function command(): string {
  const knobs = Object.entries(process.env)
    .filter(([key, value]) => key.startsWith("BENCH_") && value !== undefined)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, value]) => `${key}=${value}`);
  // Under `npm run bench:…` or `npm run size`, that script; otherwise (tsx by hand, npx) the file.
  const event = process.env.npm_lifecycle_event;
  const script = process.argv[1] ? relative(ROOT, process.argv[1]) : "?";
  const run = event && /^(bench:|size$)/.test(event) ? `npm run ${event}` : `npx tsx ${script}`;
  return [...knobs, run].join(" ");
}

/** The section's new content: when, where and how, then the table as printed. */
export function section(table: string, date = new Date()): string {
  const fence = table.includes("```") ? "~~~" : "```";
  return [
    `Measured ${date.toISOString().slice(0, 10)} on ${machine()}, with \`${command()}\`:`,
    "",
    `${fence}text`,
    // Without trailing spaces, as Prettier would leave the file.
    table
      .split("\n")
      .map((line) => line.trimEnd())
      .join("\n")
      .replace(/\s+$/, ""),
    fence,
  ].join("\n");
}

/**
 * Replaces bench `name`'s section of docs/benchmarks.md with `table` (what the
 * bench printed). Does nothing under CI=true; warns, and leaves the file alone,
 * if the section's markers are missing.
 */
export async function recordBench(name: BenchName, table: string): Promise<void> {
  if (process.env.CI === "true" || process.env.CI === "1") return;
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  let doc: string;
  try {
    doc = await readFile(DOC, "utf8");
  } catch (error) {
    console.warn(`\nnot recorded: cannot read ${relative(ROOT, DOC)} (${String(error)})`);
    return;
  }
  const from = doc.indexOf(start);
  const to = doc.indexOf(end, from);
  if (from < 0 || to < 0) {
    console.warn(`\nnot recorded: ${relative(ROOT, DOC)} has no ${start} … ${end} section`);
    return;
  }
  const updated = `${doc.slice(0, from + start.length)}\n\n${section(table)}\n\n${doc.slice(to)}`;
  // Write beside it, then rename: an interrupted write never leaves half a file.
  const scratch = `${DOC}.${process.pid}.tmp`;
  await writeFile(scratch, updated);
  await rename(scratch, DOC);
  console.log(`\nrecorded in ${relative(ROOT, DOC)} (section bench:${name})`);
}
