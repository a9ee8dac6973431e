/**
 * Live charts per version, drawn with uPlot. The source is feature-detected:
 * the admin metrics route's 1-minute buckets (requests/s, p50 and p99 latency,
 * error rate over the last hour), else the statistics extension's cumulative
 * counters polled every few seconds (requests/s, mean latency, error rate),
 * else — a worker with neither (404/501) — a clear empty state.
 */
import { useEffect, useRef, useState } from "hono/jsx/dom";
import uPlot from "uplot";
import {
  latencyQuantile,
  readMinutes,
  readStats,
  type MinuteTotals,
  type VersionStats,
} from "./metrics";

const STATS_POLL_MS = 5000;
const MINUTES_POLL_MS = 30_000;
const KEEP_POINTS = 120;
const COLOURS = ["#0b57d0", "#b3261e", "#146c2e", "#7d5700"];

type Metric = "rps" | "p50" | "p99" | "meanMs" | "errorRate";
type Line = Record<Metric, (number | null)[]>;

interface Series {
  /** Seconds since the epoch, one per point. */
  times: number[];
  perVersion: Map<string, Line>;
}

const CHARTS: Record<"minutes" | "stats", { metric: Metric; title: string; unit: string }[]> = {
  minutes: [
    { metric: "rps", title: "Requests per second (per minute)", unit: "req/s" },
    { metric: "p50", title: "p50 latency", unit: "ms" },
    { metric: "p99", title: "p99 latency", unit: "ms" },
    { metric: "errorRate", title: "Error rate", unit: "%" },
  ],
  stats: [
    { metric: "rps", title: "Requests per second", unit: "req/s" },
    { metric: "meanMs", title: "Mean latency", unit: "ms" },
    { metric: "errorRate", title: "Error rate", unit: "%" },
  ],
};

type State =
  | { kind: "checking" }
  | { kind: "unavailable" }
  | { kind: "error"; message: string }
  | { kind: "live"; source: "minutes" | "stats"; series: Series };

const emptyLine = (length: number): Line => ({
  rps: new Array(length).fill(null),
  p50: new Array(length).fill(null),
  p99: new Array(length).fill(null),
  meanMs: new Array(length).fill(null),
  errorRate: new Array(length).fill(null),
});

/** The admin route's buckets as chart series: one point per minute, per version. */
function minutesSeries(versions: Map<string, Map<number, MinuteTotals>>): Series {
  const minutes = [...new Set([...versions.values()].flatMap((m) => [...m.keys()]))].sort(
    (a, b) => a - b,
  );
  const perVersion = new Map<string, Line>();
  for (const [version, byMinute] of versions) {
    const line = emptyLine(minutes.length);
    minutes.forEach((minute, i) => {
      const total = byMinute.get(minute);
      if (!total || total.requests === 0) return;
      line.rps[i] = total.requests / 60;
      line.p50[i] = latencyQuantile(total.latencyCounts, 0.5);
      line.p99[i] = latencyQuantile(total.latencyCounts, 0.99);
      line.errorRate[i] = ((total.requests - total.success) / total.requests) * 100;
    });
    perVersion.set(version, line);
  }
  return { times: minutes.map((m) => m * 60), perVersion };
}

export function LiveCharts({ name }: { name: string }) {
  const [state, setState] = useState<State>({ kind: "checking" });

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let source: "minutes" | "stats" | undefined;
    let previous: { at: number; stats: VersionStats[] } | undefined;
    const series: Series = { times: [], perVersion: new Map() };

    const poll = async () => {
      try {
        if (source !== "stats") {
          const minutes = await readMinutes(name, "60m");
          if (stopped) return;
          if (minutes !== null) {
            source = "minutes";
            setState({ kind: "live", source, series: minutesSeries(minutes) });
            timer = setTimeout(poll, MINUTES_POLL_MS);
            return;
          }
        }
        const stats = await readStats(name);
        if (stopped) return;
        if (stats === null) {
          setState({ kind: "unavailable" });
          return; // neither source: nothing to poll
        }
        source = "stats";
        const at = Date.now() / 1000;
        if (previous) addPoint(series, previous, { at, stats });
        previous = { at, stats };
        setState({
          kind: "live",
          source,
          series: { times: [...series.times], perVersion: new Map(series.perVersion) },
        });
        timer = setTimeout(poll, STATS_POLL_MS);
      } catch (error) {
        if (stopped) return;
        setState({ kind: "error", message: (error as Error).message });
        timer = setTimeout(poll, STATS_POLL_MS);
      }
    };
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [name]);

  if (state.kind === "checking") {
    return (
      <p class="muted" role="status">
        Checking for live metrics…
      </p>
    );
  }
  if (state.kind === "unavailable") {
    return (
      <div class="empty" data-testid="metrics-empty">
        <p>
          <strong>No live metrics on this worker yet.</strong> Charts of requests/s, latency and
          error rate per version appear here once the worker offers them (
          <code>GET /admin/models/{name}/metrics</code> or the statistics extension,{" "}
          <code>GET /v2/models/{name}/stats</code>; both answered “not found” or “not supported”).
        </p>
      </div>
    );
  }
  if (state.kind === "error") {
    return (
      <p class="error" role="alert">
        Metrics unavailable: {state.message}
      </p>
    );
  }
  const points = state.series.times.length;
  if (points < (state.source === "stats" ? 2 : 1)) {
    return (
      <p class="muted" role="status" data-testid="metrics-collecting">
        {state.source === "stats"
          ? `Collecting live metrics (a point every ${STATS_POLL_MS / 1000} s)…`
          : "No requests in the last hour."}
      </p>
    );
  }
  const versions = [...state.series.perVersion.keys()].sort();
  return (
    <div class="charts" data-testid="charts">
      {CHARTS[state.source].map((chart) => (
        <Chart
          title={chart.title}
          series={state.series}
          versions={versions}
          pick={chart.metric}
          unit={chart.unit}
          window={state.source === "minutes" ? "hour" : "auto"}
        />
      ))}
    </div>
  );
}

function addPoint(
  series: Series,
  before: { at: number; stats: VersionStats[] },
  now: { at: number; stats: VersionStats[] },
) {
  const seconds = now.at - before.at;
  series.times.push(now.at);
  const seen = new Set<string>();
  for (const s of now.stats) {
    seen.add(s.version);
    const old = before.stats.find((b) => b.version === s.version);
    const ok = s.success.count - (old?.success.count ?? 0);
    const failed = s.fail.count - (old?.fail.count ?? 0);
    const ns = s.success.ns - (old?.success.ns ?? 0);
    let line = series.perVersion.get(s.version);
    if (!line) {
      line = emptyLine(series.times.length - 1);
      series.perVersion.set(s.version, line);
    }
    line.rps.push((ok + failed) / seconds);
    line.meanMs.push(ok > 0 ? ns / ok / 1e6 : null);
    line.errorRate.push(ok + failed > 0 ? (failed / (ok + failed)) * 100 : null);
    line.p50.push(null);
    line.p99.push(null);
  }
  for (const [version, line] of series.perVersion) {
    if (!seen.has(version)) for (const values of Object.values(line)) values.push(null);
  }
  if (series.times.length > KEEP_POINTS) {
    series.times.shift();
    for (const line of series.perVersion.values()) {
      for (const values of Object.values(line)) values.shift();
    }
  }
}

function Chart({
  title,
  series,
  versions,
  pick,
  unit,
  window,
}: {
  title: string;
  series: Series;
  versions: string[];
  pick: Metric;
  unit: string;
  /** "hour": the last hour of minute buckets; "auto": the points collected so far. */
  window: "hour" | "auto";
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = [
    series.times,
    ...versions.map((v) => series.perVersion.get(v)![pick]),
  ] as uPlot.AlignedData;

  useEffect(() => {
    const element = box.current!;
    const width = () => Math.max(260, element.clientWidth);
    plot.current = new uPlot(
      {
        width: width(),
        height: 180,
        series: [
          {},
          ...versions.map((v, i) => ({
            label: `v${v}`,
            stroke: COLOURS[i % COLOURS.length],
            width: 2,
            points: { show: series.times.length < 3 },
          })),
        ],
        axes: [{}, { label: unit }],
        // The minute buckets cover the last hour: show that hour, even with one point in it.
        ...(window === "hour"
          ? {
              scales: {
                x: {
                  time: true,
                  range: (): uPlot.Range.MinMax => [
                    Date.now() / 1000 - 3600,
                    Date.now() / 1000 + 60,
                  ],
                },
              },
            }
          : {}),
      },
      data,
      element,
    );
    const resize = () => plot.current?.setSize({ width: width(), height: 180 });
    addEventListener("resize", resize);
    return () => {
      removeEventListener("resize", resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [versions.join(",")]);

  useEffect(() => {
    plot.current?.setData(data);
  });

  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title} per version`} />
    </figure>
  );
}
