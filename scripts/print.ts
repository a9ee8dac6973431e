/**
 * @module
 * Everything the `pinion` CLI prints: the human lines and tables of each
 * command, their `--json` forms, the upload progress bars and the one-line
 * errors. Commands fetch and decide; this module only formats, so output
 * changes (which CI scripts may parse) happen in one place.
 */
import { SingleBar, Presets } from "cli-progress";
import { PinionError } from "../core/errors";
import { describeEntry, type AliasDocument } from "../core/registry/aliases";
import type { Manifest, VersionSummary } from "../core/registry/manifest";
import type { AuditRecord, GateResult } from "../core/registry/promotion";
import type { ShadowReport } from "../core/registry/shadow-stats";
import type { InferenceResponse } from "../core/protocol/types";
import type { RolloutState } from "../core/registry/rollout";
import {
  errorRate,
  quantileMs,
  shadowAgreement,
  sumSeries,
  type Counters,
  type MetricsReport,
} from "../core/serving/metrics";
import type { PromotionOutcome } from "../core/serving/promoter";
import type { PreparedVersion } from "./lib/prepare";
import type { UploadProgress } from "./lib/upload";

const printJson = (value: unknown) => console.log(JSON.stringify(value, null, 2));

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) {
    console.log(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
  }
}

/** One bar per artifact on stderr; none when stderr is not a terminal (CI logs, pipes). */
export function progressBar(): UploadProgress | undefined {
  if (!process.stderr.isTTY) return undefined;
  const bars = new Map<string, SingleBar>();
  return ({ sha256, sent, total }) => {
    let bar = bars.get(sha256);
    if (!bar) {
      bar = new SingleBar(
        {
          format: `uploading ${sha256.slice(0, 12)} [{bar}] {percentage}% {value}/{total} bytes`,
          stream: process.stderr,
        },
        Presets.shades_classic,
      );
      bar.start(total, 0);
      bars.set(sha256, bar);
    }
    bar.update(sent);
    if (sent >= total) bar.stop();
  };
}

/** A failed command: one line on stderr, the stack too with `--verbose`. */
export function printError(error: unknown, verbose: boolean): void {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`pinion: ${message}`);
  if (verbose && error instanceof Error && !(error instanceof PinionError && !error.stack)) {
    console.error(error.stack);
  }
}

// -- publish and listings ------------------------------------------------------------

/** A warning on stderr, so `--json` output stays parseable. */
export function printNoInt8Plan(reason: string): void {
  console.error(`pinion: no int8 plan: ${reason}; this version runs on onnxruntime`);
}

/**
 * An output whose shape follows the input's values: a warning, not a refusal
 * (detectors, top-k and the like have such outputs legitimately).
 */
export function printValueShaped(output: string, cause: string): void {
  console.error(
    `pinion: warning: the shape of output '${output}' follows the input's values (${cause}): ` +
      "a small request can ask for an answer of any size; the server refuses answers over " +
      "MAX_RESPONSE_ELEMENTS / MAX_RESPONSE_BYTES (422)",
  );
}

export function printPublished(
  file: string,
  prepared: PreparedVersion,
  manifest: Manifest,
  json: boolean,
): void {
  if (json) return printJson(manifest);
  const onnx = manifest.artifacts.onnx;
  if (prepared.conversion.kind === "pth") {
    console.log(
      `converted ${file}: ${prepared.conversion.layers.join(", ")} (${prepared.conversion.activation} between layers)`,
    );
  }
  console.log(
    `published ${manifest.name}@${manifest.version} (${onnx.bytes} bytes, sha256 ${onnx.sha256.slice(0, 12)})`,
  );
  console.log(
    `  inputs:  ${manifest.inputs.map((s) => `${s.name} ${s.datatype} [${s.shape.join(", ")}]`).join("; ")}`,
  );
  console.log(
    `  outputs: ${manifest.outputs.map((s) => `${s.name} ${s.datatype} [${s.shape.join(", ")}]`).join("; ")}`,
  );
  if (manifest.artifacts.golden) console.log(`  golden:  ${manifest.artifacts.golden.bytes} bytes`);
  if (manifest.artifacts.labels) console.log(`  labels:  ${manifest.artifacts.labels.bytes} bytes`);
  if (manifest.artifacts.background) {
    console.log(`  background: ${manifest.artifacts.background.bytes} bytes`);
  }
  if (manifest.placement === "origin") {
    console.log("  placement: origin (the edge forwards its requests to the GPU origin)");
  }
  printQuantization(manifest);
  printPruning(prepared, manifest);
}

/** The pruning report: what each hidden layer kept, then fp32 / pruned / pruned + int8 side by side. */
function printPruning(prepared: PreparedVersion, manifest: Manifest): void {
  const p = manifest.pruning;
  if (!p) return;
  const how =
    p.method === "golden-effect"
      ? "units ranked by measured effect on the golden set"
      : "units ranked by weight norm (no golden set)";
  const asked = p.requested === "auto" ? `auto, within ${p.maxAccuracyDrop} points` : "as asked";
  console.log(`  pruned:  ${(p.fraction * 100).toFixed(1)}% of hidden units (${asked}; ${how})`);
  for (const l of p.layers)
    console.log(`    ${l.name}: ${l.units} → ${l.kept} units (${l.removed} removed)`);
  if (p.layers.every((l) => l.removed === 0)) {
    console.log("    nothing could be removed within the drop: this version is the unpruned model");
  }
  const search = prepared.pruning?.search ?? [];
  if (search.length > 0) {
    const steps = search.map(
      (s) =>
        `${(s.fraction * 100).toFixed(1)}%→${s.score.toFixed(2)}${s.int8Score !== undefined ? `/${s.int8Score.toFixed(2)}` : ""}${s.accepted ? "" : "✗"}`,
    );
    console.log(
      `    search (fraction→score${search[0]!.int8Score !== undefined ? "/int8" : ""}): ${steps.join(" ")}`,
    );
  }
  const metric = p.accuracy?.metric === "agreement" ? "agreement" : "accuracy";
  const rows = (prepared.pruning?.variants ?? []).map((v) => [
    v.variant,
    v.runtime,
    v.score !== undefined ? `${v.score.toFixed(2)}%` : "-",
    String(v.parameters),
    String(v.bytes),
    v.medianMicros !== undefined ? `${v.medianMicros.toFixed(2)} µs` : "-",
  ]);
  if (rows.length === 0) return;
  const widths = [0, 1, 2, 3, 4, 5].map((i) =>
    Math.max(
      ...[["model", "runtime", metric, "parameters", "bytes", "batch-1 median"], ...rows].map(
        (r) => r[i]!.length,
      ),
    ),
  );
  const line = (cells: string[]) =>
    console.log(
      `    ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")}`,
    );
  line(["model", "runtime", metric, "parameters", "bytes", "batch-1 median"]);
  rows.forEach(line);
}

function printQuantization(manifest: Manifest): void {
  const q = manifest.quantization;
  if (!q || !manifest.artifacts.int8) return;
  console.log(`  int8:    plan ${manifest.artifacts.int8.bytes} bytes; served by the int8 runtime`);
  if (q.maxSequence !== undefined) {
    console.log(`    sequences of up to ${q.maxSequence} tokens`);
  }
  for (const l of q.layers) {
    console.log(
      `    ${l.name} ${l.k}→${l.n} ${l.activation}: weight SQNR ${l.sqnrDb.toFixed(1)} dB (absmax ${l.absmaxSqnrDb.toFixed(1)} dB)`,
    );
  }
  const a = q.accuracy;
  if (!a) return;
  const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
  console.log(`    accuracy on ${a.cases} golden cases vs fp32:`);
  console.log(
    `      cosine ${a.cosine.toFixed(6)} (worst case ${a.minCosine.toFixed(6)}), max abs error ${a.maxAbsError.toExponential(2)}, SQNR ${a.sqnrDb.toFixed(1)} dB`,
  );
  if (a.top1Agreement !== undefined) console.log(`      top-1 agreement ${pct(a.top1Agreement)}`);
  if (a.int8Accuracy !== undefined) {
    console.log(`      accuracy: int8 ${pct(a.int8Accuracy)}, fp32 ${pct(a.fp32Accuracy!)}`);
  }
}

export function printModels(models: string[], json: boolean): void {
  // One line, unlike the other --json outputs: scripts already read it that way.
  if (json) return console.log(JSON.stringify(models));
  if (models.length === 0) return console.log("no models");
  for (const name of models) console.log(name);
}

/** The table needs at least one version: the command refuses an empty list first. */
export function printVersions(versions: VersionSummary[], json: boolean): void {
  if (json) return printJson(versions);
  // The PRUNED column only when a version was pruned, so other listings read as before.
  const pruned = versions.some((v) => v.pruned !== undefined);
  table(
    [
      "VERSION",
      "BYTES",
      "SHA256",
      "RUNTIME",
      "PLACEMENT",
      "CREATED",
      "SOURCE",
      ...(pruned ? ["PRUNED"] : []),
    ],
    versions.map((v) => [
      String(v.version),
      String(v.bytes),
      v.sha256.slice(0, 12),
      v.runtime,
      v.placement,
      v.createdAt,
      v.source ?? "",
      ...(pruned ? [v.pruned ?? ""] : []),
    ]),
  );
}

// -- aliases and promotion ------------------------------------------------------------

function printGates(gates: readonly GateResult[]): void {
  for (const g of gates) {
    const verdict = g.skipped ? "skipped" : g.passed ? "passed" : "FAILED";
    console.log(`  gate ${g.gate}: ${verdict} — ${g.detail}`);
  }
}

/** A promotion's or rollback's plan, its gates, and what became of it. */
export function printOutcome(outcome: PromotionOutcome, json: boolean): void {
  if (json) return printJson(outcome);
  const { change } = outcome;
  const what =
    change.action === "rollback" ? `rollback (undoing revision ${change.undoes})` : "promote";
  console.log(
    `${change.model} alias ${change.alias}: ${describeEntry(change.from)} → ${describeEntry(change.to)}  [${what}, at revision ${change.baseRevision}]`,
  );
  printGates(outcome.gates);
  switch (outcome.status) {
    case "applied":
      console.log(
        `applied: revision ${outcome.record!.revision} by ${outcome.record!.actor}${outcome.forced ? " (forced)" : ""}`,
      );
      break;
    case "noop":
      console.log("nothing to do: the alias is already in that state");
      break;
    case "dry-run":
      console.log("dry run: nothing written");
      break;
    case "gates-failed":
      console.log("refused: a gate failed; the alias is untouched (--force to override)");
  }
}

export function printAliases(model: string, document: AliasDocument, json: boolean): void {
  if (json) return printJson(document);
  const names = Object.keys(document.aliases).sort();
  if (names.length === 0) {
    return console.log(`${model} has no aliases; requests without a version get the latest`);
  }
  console.log(`${model} aliases at revision ${document.revision}:`);
  table(
    ["ALIAS", "SERVES"],
    names.map((name) => [name, describeEntry(document.aliases[name])]),
  );
}

export function printHistory(model: string, records: AuditRecord[], json: boolean): void {
  if (json) return printJson(records);
  if (records.length === 0) return console.log(`${model} has no alias changes yet`);
  table(
    ["REV", "WHEN", "WHO", "ACTION", "ALIAS", "FROM", "TO", "GATES", "REASON"],
    records.map((r) => [
      String(r.revision),
      r.at,
      r.actor,
      r.action + (r.undoes !== undefined ? ` #${r.undoes}` : ""),
      r.alias,
      describeEntry(r.from),
      describeEntry(r.to),
      (r.forced ? "FORCED " : "") +
        (r.gates
          .map((g) => `${g.gate}:${g.skipped ? "skip" : g.passed ? "ok" : "fail"}`)
          .join(",") || "-"),
      r.reason ?? "",
    ]),
  );
}

export function printShadowReports(model: string, reports: ShadowReport[], json: boolean): void {
  if (json) return printJson(reports);
  if (reports.length === 0) return console.log(`${model} has no shadow samples yet`);
  table(
    [
      "ALIAS",
      "REV",
      "SHADOW",
      "VS",
      "SAMPLES",
      "ERRORS",
      "MAX|DIFF|",
      "MEAN|DIFF|",
      "TOP-1 DISAGREE",
    ],
    reports.map((r) => [
      r.alias,
      String(r.revision),
      String(r.candidate),
      r.primaries.join(","),
      String(r.samples),
      String(r.errors),
      r.maxAbsDiff.toExponential(2),
      r.meanAbsDiff.toExponential(2),
      r.top1Rows > 0 ? `${(r.top1Disagreement * 100).toFixed(2)}% of ${r.top1Rows}` : "-",
    ]),
  );
}

/**
 * An explanation: what was predicted and against what, then the input
 * elements with the largest attributions (by magnitude) with their position
 * in the input and their share of the attribution mass.
 */
export function printExplanation(
  response: InferenceResponse,
  inputShape: readonly number[],
  top: number,
  json: boolean,
): void {
  if (json) {
    console.log(JSON.stringify(response, null, 2));
    return;
  }
  const p = response.parameters ?? {};
  const attributions = response.outputs.find((o) => o.name === "attributions")!.data as number[];
  const total = attributions.reduce((a, v) => a + v, 0);
  const mass = attributions.reduce((a, v) => a + Math.abs(v), 0) || 1;
  console.log(
    `${response.model_name}@${response.model_version} on ${p.runtime}: ${p.method}, ${p.samples} samples, ${p.evaluations} evaluations, baseline ${p.baseline}`,
  );
  const fmt = (v: unknown) => (typeof v === "number" ? v.toFixed(4) : String(v));
  console.log(
    `  output ${p.target_output}[${p.target}] = ${fmt(p.prediction)}; base ${fmt(p.base_value)}; attributions sum to ${fmt(total)}`,
  );
  // Positions within one instance: the input's shape without its batch axis.
  const row = inputShape.slice(1);
  const position = (index: number) => {
    if (row.length <= 1) return String(index);
    const at: number[] = [];
    let rest = index;
    for (let axis = row.length - 1; axis >= 0; axis--) {
      at.unshift(rest % row[axis]!);
      rest = Math.floor(rest / row[axis]!);
    }
    return `[${at.join(",")}]`;
  };
  printHeatmap(attributions, row);
  const ranked = attributions
    .map((value, index) => ({ value, index }))
    .sort((a, b) => Math.abs(b.value) - Math.abs(a.value))
    .slice(0, top);
  table(
    ["element", "attribution", "share"],
    ranked.map(({ value, index }) => [
      position(index),
      (value >= 0 ? "+" : "") + value.toFixed(5),
      `${((100 * Math.abs(value)) / mass).toFixed(1)} %`,
    ]),
  );
}
// -- live metrics and rollouts --------------------------------------------------------

const pct = (n: number) => `${(n * 100).toFixed(2)}%`;
const ms = (n: number | undefined) => (n === undefined ? "-" : n.toFixed(1));

/** `pinion stats`: one row per version (all aliases added up), then one per version × alias. */
export function printStats(report: MetricsReport, json: boolean): void {
  if (json) return printJson(report);
  const window =
    report.sinceMs === null
      ? "running totals"
      : `since ${new Date(report.sinceMs).toISOString()} (1-minute buckets)`;
  console.log(`${report.model}: ${window}, at ${new Date(report.at).toISOString()}`);
  if (report.series.length === 0) return console.log("no requests counted");
  const row = (label: string, alias: string, c: Counters) => [
    label,
    alias,
    String(c.requests),
    String(c.requests - c.success),
    pct(errorRate(c)),
    ms(quantileMs(c.latency, 0.5)),
    ms(quantileMs(c.latency, 0.99)),
    ms(c.requests ? c.compute.sumMs / c.requests : undefined),
    Object.entries(c.runtimes)
      .map(([r, n]) => `${r}:${n}`)
      .join(" ") || "-",
    String(c.coldLoads),
    String(c.bytesIn),
    String(c.bytesOut),
    c.shadow.samples + c.shadow.errors > 0
      ? `${pct(shadowAgreement(c.shadow))} of ${c.shadow.top1Rows}`
      : "-",
  ];
  const byVersion = sumSeries(report.series, (s) => s.version);
  const rows: string[][] = [];
  for (const [version, counters] of [...byVersion].sort((a, b) => Number(a[0]) - Number(b[0]))) {
    rows.push(row(String(version), "(all)", counters));
    for (const s of report.series.filter((x) => x.version === version)) {
      rows.push(row("", s.alias || "(pinned)", s.counters));
    }
  }
  table(
    [
      "VERSION",
      "ALIAS",
      "REQUESTS",
      "FAILED",
      "ERR%",
      "P50MS",
      "P99MS",
      "COMPUTE",
      "RUNTIMES",
      "COLD",
      "BYTES-IN",
      "BYTES-OUT",
      "SHADOW-AGREE",
    ],
    rows,
  );
}

/** `pinion rollout …`: where the rollout is, its last check, how it ended. */
export function printRollout(model: string, state: RolloutState | null, json: boolean): void {
  if (json) return printJson(state);
  if (!state) return console.log(`${model}: no rollout`);
  const p = state.policy;
  const at =
    state.step < 0
      ? "shadow phase"
      : `step ${state.step + 1} of ${p.steps.length} (${p.steps[state.step]}%)`;
  console.log(
    `${model} rollout ${state.id.slice(0, 8)}: version ${state.candidate} on '${state.alias}' (baseline ${state.baseline}) — ${state.status}, ${at}`,
  );
  console.log(
    `  steps ${p.steps.join(", ")}%, every ${p.intervalMs / 1000}s; max error rate ${pct(p.maxErrorRate)}` +
      (p.maxP99Ms !== undefined ? `, max p99 ${p.maxP99Ms} ms` : "") +
      (p.maxLatencyRatio !== undefined ? `, max latency ratio ${p.maxLatencyRatio}` : "") +
      `, min agreement ${pct(p.minAgreement)}, min requests ${p.minRequests}` +
      (p.shadowFirstMs ? `, shadow first ${p.shadowFirstMs / 1000}s` : ""),
  );
  console.log(
    `  alias now: ${describeEntry(state.expected)}; before: ${describeEntry(state.before)}`,
  );
  if (state.lastCheck) {
    console.log(
      `  last check ${new Date(state.lastCheck.at).toISOString()}: ${state.lastCheck.decision}`,
    );
    for (const c of state.lastCheck.checks) {
      console.log(
        `    ${c.gate}: ${c.skipped ? "skipped" : c.passed ? "passed" : "FAILED"} — ${c.detail}`,
      );
    }
  }
  if (state.outcome) console.log(`  ${state.outcome}`);
}

/** Positive attributions by magnitude (a fifth of the largest each), then negative ones. */
const UP = " .:*#";
const DOWN = " .-=%";
/** Widest image printed as a heatmap, in columns. */
const MAX_HEATMAP_COLUMNS = 64;

/**
 * Image-shaped inputs (two or more axes per instance, at most 64 columns) get
 * a character heatmap per channel: `.:*#` for growing positive attribution,
 * `.-=%` for negative, relative to the largest magnitude.
 */
function printHeatmap(attributions: readonly number[], row: readonly number[]): void {
  if (row.length < 2) return;
  const [h, w] = [row.at(-2)!, row.at(-1)!];
  if (w > MAX_HEATMAP_COLUMNS) return;
  const channels = attributions.length / (h * w);
  const largest = Math.max(...attributions.map(Math.abs)) || 1;
  for (let c = 0; c < channels; c++) {
    console.log(channels > 1 ? `  channel ${c}:` : "  heatmap (+ .:*#, − .-=%):");
    for (let r = 0; r < h; r++) {
      let line = "    ";
      for (let col = 0; col < w; col++) {
        const value = attributions[c * h * w + r * w + col]!;
        const level = Math.min(4, Math.ceil((Math.abs(value) / largest) * 4));
        line += (value >= 0 ? UP : DOWN)[level]!.repeat(2);
      }
      console.log(line.trimEnd());
    }
  }
}
