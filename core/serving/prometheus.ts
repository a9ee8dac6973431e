/**
 * @module
 * The live metrics in Prometheus' text exposition format (version 0.0.4),
 * written directly: prom-client needs Node built-ins, and the format is a few
 * lines per series. Every value is a running total per model, version and
 * alias, so they are counters (and histograms) Prometheus can `rate()`.
 */
import { LATENCY_BUCKETS_MS, type Counters, type Histogram, type MetricsReport } from "./metrics";

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** A label value escaped as the format asks (backslash, double quote, newline). */
const escape = (value: string) =>
  value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

const labels = (pairs: Record<string, string>) =>
  `{${Object.entries(pairs)
    .map(([k, v]) => `${k}="${escape(v)}"`)
    .join(",")}}`;

interface Family {
  name: string;
  help: string;
  type: "counter" | "histogram" | "gauge";
  lines: string[];
}

/** Renders reports (running totals, one per model) as Prometheus text. */
export function prometheusText(reports: readonly MetricsReport[]): string {
  const families = new Map<string, Family>();
  const family = (name: string, type: Family["type"], help: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type, help, lines: [] }));
    return f;
  };
  const counter = (name: string, help: string, base: Record<string, string>, value: number) =>
    family(name, "counter", help).lines.push(`${name}${labels(base)} ${value}`);
  const histogram = (name: string, help: string, base: Record<string, string>, h: Histogram) => {
    const f = family(name, "histogram", help);
    let cumulative = 0;
    LATENCY_BUCKETS_MS.forEach((upper, i) => {
      cumulative += h.counts[i]!;
      f.lines.push(`${name}_bucket${labels({ ...base, le: String(upper / 1000) })} ${cumulative}`);
    });
    cumulative += h.counts[LATENCY_BUCKETS_MS.length]!;
    f.lines.push(`${name}_bucket${labels({ ...base, le: "+Inf" })} ${cumulative}`);
    f.lines.push(`${name}_sum${labels(base)} ${h.sumMs / 1000}`);
    f.lines.push(`${name}_count${labels(base)} ${cumulative}`);
  };
  for (const report of reports) {
    for (const { version, alias, counters: c } of report.series) {
      const base = { model: report.model, version: String(version), alias };
      series(c, base, counter, histogram);
    }
  }
  const out: string[] = [];
  for (const f of families.values()) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.lines);
  }
  return out.length ? `${out.join("\n")}\n` : "";
}

function series(
  c: Counters,
  base: Record<string, string>,
  counter: (name: string, help: string, base: Record<string, string>, value: number) => void,
  histogram: (name: string, help: string, base: Record<string, string>, h: Histogram) => void,
): void {
  if (c.requests > 0) {
    for (const [status_class, n] of Object.entries(c.statusClasses)) {
      counter(
        "pinion_requests_total",
        "Inference requests by status class.",
        { ...base, status_class },
        n,
      );
    }
    for (const [kind, n] of Object.entries(c.errorKinds)) {
      counter(
        "pinion_failures_total",
        "Failed inference requests by error kind.",
        { ...base, kind },
        n,
      );
    }
    histogram(
      "pinion_request_duration_seconds",
      "Inference request latency at the edge, whole request.",
      base,
      c.latency,
    );
    histogram(
      "pinion_compute_duration_seconds",
      "Inference compute phase (the model's run, or the origin's answer).",
      base,
      c.compute,
    );
    for (const [runtime, n] of Object.entries(c.runtimes)) {
      counter(
        "pinion_runtime_requests_total",
        "Inference requests by the runtime that ran them.",
        { ...base, runtime },
        n,
      );
    }
    counter(
      "pinion_cold_loads_total",
      "Requests that loaded the version into an isolate first.",
      base,
      c.coldLoads,
    );
    counter("pinion_request_bytes_total", "Inference request body bytes.", base, c.bytesIn);
    counter("pinion_response_bytes_total", "Inference response body bytes.", base, c.bytesOut);
  }
  const s = c.shadow;
  if (s.samples + s.errors > 0) {
    counter(
      "pinion_shadow_runs_total",
      "Shadow runs of this version behind the alias.",
      base,
      s.samples,
    );
    counter(
      "pinion_shadow_errors_total",
      "Shadow runs of this version that failed.",
      base,
      s.errors,
    );
    counter(
      "pinion_shadow_top1_rows_total",
      "Rows whose top-1 class shadow runs compared.",
      base,
      s.top1Rows,
    );
    counter(
      "pinion_shadow_top1_disagreements_total",
      "Rows whose top-1 class differed from the answer served.",
      base,
      s.top1Disagreements,
    );
  }
}
