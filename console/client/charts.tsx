/**
 * Live charts per version (requests/s, mean latency, error rate) drawn with
 * uPlot from the statistics endpoint's cumulative counters, polled every few
 * seconds while the page is open. Without that endpoint: a clear empty state.
 */
import { useEffect, useRef, useState } from "hono/jsx/dom";
import uPlot from "uplot";
import { readStats, type VersionStats } from "./metrics";

const POLL_MS = 5000;
const KEEP_POINTS = 120;
const COLOURS = ["#0b57d0", "#b3261e", "#146c2e", "#7d5700"];

interface Series {
  times: number[];
  perVersion: Map<
    string,
    { rps: (number | null)[]; latencyMs: (number | null)[]; errorRate: (number | null)[] }
  >;
}

type State =
  | { kind: "checking" }
  | { kind: "unavailable" }
  | { kind: "error"; message: string }
  | { kind: "live"; series: Series };

export function LiveCharts({ name }: { name: string }) {
  const [state, setState] = useState<State>({ kind: "checking" });

  useEffect(() => {
    let stopped = false;
    let previous: { at: number; stats: VersionStats[] } | undefined;
    const series: Series = { times: [], perVersion: new Map() };
    let timer: ReturnType<typeof setTimeout> | undefined;

    const poll = async () => {
      try {
        const stats = await readStats(name);
        if (stopped) return;
        if (stats === null) {
          setState({ kind: "unavailable" });
          return; // no endpoint: nothing to poll
        }
        const at = Date.now() / 1000;
        if (previous) addPoint(series, previous, { at, stats });
        previous = { at, stats };
        setState({
          kind: "live",
          series: { times: [...series.times], perVersion: new Map(series.perVersion) },
        });
      } catch (error) {
        if (!stopped) setState({ kind: "error", message: (error as Error).message });
      }
      if (!stopped) timer = setTimeout(poll, POLL_MS);
    };
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [name]);

  if (state.kind === "checking")
    return (
      <p class="muted" role="status">
        Checking for live metrics…
      </p>
    );
  if (state.kind === "unavailable") {
    return (
      <div class="empty" data-testid="metrics-empty">
        <p>
          <strong>No live metrics on this worker yet.</strong> Charts of requests/s, latency and
          error rate per version appear here once the worker answers the statistics extension (
          <code>GET /v2/models/{name}/stats</code>, which answered “not supported”).
        </p>
      </div>
    );
  }
  if (state.kind === "error")
    return (
      <p class="error" role="alert">
        Metrics unavailable: {state.message}
      </p>
    );
  if (state.series.times.length < 2) {
    return (
      <p class="muted" role="status">
        Collecting live metrics (a point every {POLL_MS / 1000} s)…
      </p>
    );
  }
  const versions = [...state.series.perVersion.keys()].sort();
  return (
    <div class="charts" data-testid="charts">
      <Chart
        title="Requests per second"
        series={state.series}
        versions={versions}
        pick="rps"
        unit="req/s"
      />
      <Chart
        title="Mean latency"
        series={state.series}
        versions={versions}
        pick="latencyMs"
        unit="ms"
      />
      <Chart
        title="Error rate"
        series={state.series}
        versions={versions}
        pick="errorRate"
        unit="%"
      />
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
      const gap = () => new Array<number | null>(series.times.length - 1).fill(null);
      line = { rps: gap(), latencyMs: gap(), errorRate: gap() };
      series.perVersion.set(s.version, line);
    }
    line.rps.push((ok + failed) / seconds);
    line.latencyMs.push(ok > 0 ? ns / ok / 1e6 : null);
    line.errorRate.push(ok + failed > 0 ? (failed / (ok + failed)) * 100 : null);
  }
  for (const [version, line] of series.perVersion) {
    if (!seen.has(version)) {
      line.rps.push(null);
      line.latencyMs.push(null);
      line.errorRate.push(null);
    }
  }
  if (series.times.length > KEEP_POINTS) {
    series.times.shift();
    for (const line of series.perVersion.values()) {
      line.rps.shift();
      line.latencyMs.shift();
      line.errorRate.shift();
    }
  }
}

function Chart({
  title,
  series,
  versions,
  pick,
  unit,
}: {
  title: string;
  series: Series;
  versions: string[];
  pick: "rps" | "latencyMs" | "errorRate";
  unit: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = [
    series.times,
    ...versions.map((v) => series.perVersion.get(v)![pick]),
  ] as uPlot.AlignedData;

  useEffect(() => {
    const element = box.current!;
    const width = Math.max(260, element.clientWidth);
    plot.current = new uPlot(
      {
        width,
        height: 180,
        series: [
          {},
          ...versions.map((v, i) => ({
            label: `v${v}`,
            stroke: COLOURS[i % COLOURS.length],
            width: 2,
            spanGaps: false,
          })),
        ],
        axes: [{}, { label: unit }],
      },
      data,
      element,
    );
    const resize = () =>
      plot.current?.setSize({ width: Math.max(260, element.clientWidth), height: 180 });
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
      <div ref={box} role="img" aria-label={`${title} per version over the last minutes`} />
    </figure>
  );
}
