/**
 * @module
 * Live serving metrics: what each inference request did, per model version
 * and alias, kept in 1-minute buckets (≥ 24 h) and as running totals.
 *
 * An isolate sees only its own traffic, so it buffers counters here
 * (`MetricsRecorder`) and writes them through the `MetricsStore` port at most
 * every `flushMs`, and at the latest `flushMs` after a request — from
 * `waitUntil`, so no request ever waits on it. The store aggregates across
 * isolates (at the edge a Durable Object per model, `worker/model-monitor.ts`).
 * Counters are plain data that merge by addition, so a write that is retried,
 * or two isolates writing the same minute, add up exactly.
 */

/** Upper bounds (ms) of the latency histograms' buckets; one more bucket above the last (+Inf). */
export const LATENCY_BUCKETS_MS: readonly number[] = [
  1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
];

/** A fixed-bucket histogram: `counts[i]` observations ≤ `LATENCY_BUCKETS_MS[i]` (and above the previous bound); the last is +Inf. */
export interface Histogram {
  counts: number[];
  sumMs: number;
}

/** What failed requests' status classes are called. */
export type StatusClass = "2xx" | "4xx" | "5xx";

/** Shadow divergence totals of a version run as an alias's shadow. */
export interface ShadowCounters {
  samples: number;
  errors: number;
  top1Rows: number;
  top1Disagreements: number;
  sumMeanAbsDiff: number;
  maxAbsDiff: number;
}

/** Everything counted for one series (version × alias) over some span of time. */
export interface Counters {
  requests: number;
  /** Requests answered 2xx. */
  success: number;
  /** Requests by status class (`2xx`, `4xx`, `5xx`). */
  statusClasses: Record<string, number>;
  /** Failed requests by error kind (`core/errors.ts`'s kinds). */
  errorKinds: Record<string, number>;
  /** Total request latency, as the server saw it. */
  latency: Histogram;
  /** The compute phase (the model's run, or the origin's answer). */
  compute: Histogram;
  /** Summed durations for Triton's statistics: successful and failed requests, decode. */
  successMs: number;
  failMs: number;
  decodeMs: number;
  /** Requests per runtime that ran them. */
  runtimes: Record<string, number>;
  /** Requests that had to load the version into the isolate first. */
  coldLoads: number;
  bytesIn: number;
  bytesOut: number;
  shadow: ShadowCounters;
  /** When the last request counted here was answered (ms since the epoch; 0: none). */
  lastAt: number;
}

/** One series' counters for one minute, as an isolate flushes them. */
export interface MetricsEntry {
  /** Minutes since the epoch. */
  minute: number;
  version: number;
  /** The alias that chose the version; "" when the path pinned it. */
  alias: string;
  counters: Counters;
}

/** What a report covers: running totals (no `sinceMs`), or the minute buckets from `sinceMs` on. */
export interface MetricsQuery {
  sinceMs?: number;
  version?: number;
  alias?: string;
  /** Include each series' per-minute buckets. */
  minutes?: boolean;
}

export interface SeriesReport {
  version: number;
  alias: string;
  counters: Counters;
  /** Per-minute buckets, oldest first (when asked for). */
  minutes?: { minute: number; counters: Counters }[];
}

export interface MetricsReport {
  model: string;
  /** The window's start (ms since the epoch; the first minute bucket's start), or null for running totals. */
  sinceMs: number | null;
  /** When the report was made (ms since the epoch). */
  at: number;
  series: SeriesReport[];
}

/** The port: where isolates' counters are aggregated and read back. */
export interface MetricsStore {
  write(model: string, entries: MetricsEntry[]): Promise<void>;
  read(model: string, query: MetricsQuery): Promise<MetricsReport>;
}

/** What one inference request did, as the HTTP layer saw it on the way out. */
export interface RequestSample {
  model: string;
  version: number;
  alias?: string;
  statusClass: StatusClass;
  /** The error's kind when the request failed. */
  errorKind?: string;
  totalMs: number;
  computeMs: number;
  decodeMs: number;
  runtime?: string;
  coldLoad: boolean;
  bytesIn: number;
  bytesOut: number;
}

/** How a shadow run went: a divergence, or an error. */
export interface ShadowSample {
  model: string;
  alias: string;
  /** The shadow version. */
  version: number;
  divergence?: {
    maxAbsDiff: number;
    meanAbsDiff: number;
    top1Rows: number;
    top1Disagreements: number;
  };
}

export const MINUTE_MS = 60_000;

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: MINUTE_MS,
  h: 3_600_000,
  d: 86_400_000,
};

/** `500ms`, `30s`, `15m`, `2h`, `1d` (or a bare number of ms) in ms; undefined when not one. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * UNIT_MS[match[2] ?? "ms"]!;
  return Number.isFinite(ms) ? ms : undefined;
}
/** Minute buckets are kept this long (24 h plus an hour of slack). */
export const RETENTION_MINUTES = 25 * 60;

export const minuteOf = (ms: number) => Math.floor(ms / MINUTE_MS);

export const emptyHistogram = (): Histogram => ({
  counts: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0),
  sumMs: 0,
});

export const emptyShadow = (): ShadowCounters => ({
  samples: 0,
  errors: 0,
  top1Rows: 0,
  top1Disagreements: 0,
  sumMeanAbsDiff: 0,
  maxAbsDiff: 0,
});

export function emptyCounters(): Counters {
  return {
    requests: 0,
    success: 0,
    statusClasses: {},
    errorKinds: {},
    latency: emptyHistogram(),
    compute: emptyHistogram(),
    successMs: 0,
    failMs: 0,
    decodeMs: 0,
    runtimes: {},
    coldLoads: 0,
    bytesIn: 0,
    bytesOut: 0,
    shadow: emptyShadow(),
    lastAt: 0,
  };
}

/** The bucket an observation falls in. */
export function bucketIndex(ms: number): number {
  for (let i = 0; i < LATENCY_BUCKETS_MS.length; i++) if (ms <= LATENCY_BUCKETS_MS[i]!) return i;
  return LATENCY_BUCKETS_MS.length;
}

function observe(histogram: Histogram, ms: number): void {
  histogram.counts[bucketIndex(ms)]! += 1;
  histogram.sumMs += ms;
}

function addRecord(into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, n] of Object.entries(from)) into[key] = (into[key] ?? 0) + n;
}

function addHistogram(into: Histogram, from: Histogram): void {
  for (let i = 0; i < into.counts.length; i++) into.counts[i]! += from.counts[i] ?? 0;
  into.sumMs += from.sumMs;
}

/** Adds `from` into `into` (and returns it): counters merge by addition, maxima by max. */
export function addCounters(into: Counters, from: Counters): Counters {
  into.requests += from.requests;
  into.success += from.success;
  addRecord(into.statusClasses, from.statusClasses);
  addRecord(into.errorKinds, from.errorKinds);
  addHistogram(into.latency, from.latency);
  addHistogram(into.compute, from.compute);
  into.successMs += from.successMs;
  into.failMs += from.failMs;
  into.decodeMs += from.decodeMs;
  addRecord(into.runtimes, from.runtimes);
  into.coldLoads += from.coldLoads;
  into.bytesIn += from.bytesIn;
  into.bytesOut += from.bytesOut;
  const s = into.shadow;
  const t = from.shadow;
  s.samples += t.samples;
  s.errors += t.errors;
  s.top1Rows += t.top1Rows;
  s.top1Disagreements += t.top1Disagreements;
  s.sumMeanAbsDiff += t.sumMeanAbsDiff;
  s.maxAbsDiff = Math.max(s.maxAbsDiff, t.maxAbsDiff);
  into.lastAt = Math.max(into.lastAt, from.lastAt);
  return into;
}

/** `later` minus `earlier`, for running totals read at two times (a window's counts). */
export function subtractCounters(later: Counters, earlier: Counters): Counters {
  const minus = (a: Record<string, number>, b: Record<string, number>) => {
    const out: Record<string, number> = {};
    for (const [key, n] of Object.entries(a)) {
      const d = n - (b[key] ?? 0);
      if (d !== 0) out[key] = d;
    }
    return out;
  };
  const hist = (a: Histogram, b: Histogram): Histogram => ({
    counts: a.counts.map((n, i) => n - (b.counts[i] ?? 0)),
    sumMs: a.sumMs - b.sumMs,
  });
  return {
    requests: later.requests - earlier.requests,
    success: later.success - earlier.success,
    statusClasses: minus(later.statusClasses, earlier.statusClasses),
    errorKinds: minus(later.errorKinds, earlier.errorKinds),
    latency: hist(later.latency, earlier.latency),
    compute: hist(later.compute, earlier.compute),
    successMs: later.successMs - earlier.successMs,
    failMs: later.failMs - earlier.failMs,
    decodeMs: later.decodeMs - earlier.decodeMs,
    runtimes: minus(later.runtimes, earlier.runtimes),
    coldLoads: later.coldLoads - earlier.coldLoads,
    bytesIn: later.bytesIn - earlier.bytesIn,
    bytesOut: later.bytesOut - earlier.bytesOut,
    shadow: {
      samples: later.shadow.samples - earlier.shadow.samples,
      errors: later.shadow.errors - earlier.shadow.errors,
      top1Rows: later.shadow.top1Rows - earlier.shadow.top1Rows,
      top1Disagreements: later.shadow.top1Disagreements - earlier.shadow.top1Disagreements,
      sumMeanAbsDiff: later.shadow.sumMeanAbsDiff - earlier.shadow.sumMeanAbsDiff,
      // A maximum cannot be taken apart: the later one bounds the window's.
      maxAbsDiff: later.shadow.maxAbsDiff,
    },
    lastAt: later.lastAt,
  };
}

/** Adds one request to `c` in place (the hot path: no allocation but new record keys). */
export function countRequest(c: Counters, sample: RequestSample, at: number): Counters {
  const ok = sample.statusClass === "2xx";
  c.requests += 1;
  if (ok) c.success += 1;
  c.statusClasses[sample.statusClass] = (c.statusClasses[sample.statusClass] ?? 0) + 1;
  if (!ok) {
    const kind = sample.errorKind ?? "unknown";
    c.errorKinds[kind] = (c.errorKinds[kind] ?? 0) + 1;
  }
  observe(c.latency, sample.totalMs);
  observe(c.compute, sample.computeMs);
  if (ok) c.successMs += sample.totalMs;
  else c.failMs += sample.totalMs;
  c.decodeMs += sample.decodeMs;
  if (sample.runtime !== undefined) {
    c.runtimes[sample.runtime] = (c.runtimes[sample.runtime] ?? 0) + 1;
  }
  if (sample.coldLoad) c.coldLoads += 1;
  c.bytesIn += sample.bytesIn;
  c.bytesOut += sample.bytesOut;
  c.lastAt = Math.max(c.lastAt, at);
  return c;
}

/** The counters of one request. */
export function countersOf(sample: RequestSample, at: number): Counters {
  return countRequest(emptyCounters(), sample, at);
}

/** Failed requests (any status class but 2xx) over all requests; 0 without requests. */
export function errorRate(c: Counters): number {
  return c.requests === 0 ? 0 : (c.requests - c.success) / c.requests;
}

/**
 * The `q` quantile of a histogram in ms, interpolated linearly inside its
 * bucket (the +Inf bucket answers its lower bound); undefined when empty.
 */
export function quantileMs(h: Histogram, q: number): number | undefined {
  const total = h.counts.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const n = h.counts[i]!;
    if (n > 0 && seen + n >= rank) {
      const lower = i === 0 ? 0 : LATENCY_BUCKETS_MS[i - 1]!;
      const upper = LATENCY_BUCKETS_MS[i];
      if (upper === undefined) return lower;
      return lower + ((upper - lower) * Math.max(0, rank - seen)) / n;
    }
    seen += n;
  }
  return LATENCY_BUCKETS_MS.at(-1)!;
}

/** Top-1 agreement of shadow runs with the answers served (1 without samples). */
export function shadowAgreement(s: ShadowCounters): number {
  return s.top1Rows === 0 ? 1 : 1 - s.top1Disagreements / s.top1Rows;
}

/** The series of a report added up per version (over aliases), or per alias (over versions). */
export function sumSeries(
  series: readonly SeriesReport[],
  by: (s: SeriesReport) => string | number,
): Map<string | number, Counters> {
  const sums = new Map<string | number, Counters>();
  for (const s of series) {
    const key = by(s);
    let into = sums.get(key);
    if (!into) sums.set(key, (into = emptyCounters()));
    addCounters(into, s.counters);
  }
  return sums;
}

/** Buffered entries before an isolate drops the oldest (a store unreachable for long). */
const MAX_BUFFERED = 10_000;

/**
 * An isolate's buffer of counters. `observe` is synchronous and cheap; the
 * returned promise (for `waitUntil`) writes the buffer out, throttled with a
 * trailing write: a request's counters reach the store within `flushMs` of
 * its response (plus the write itself), even when traffic stops.
 */
export class MetricsRecorder {
  private buffer = new Map<string, { model: string; entry: MetricsEntry }>();
  private lastFlush = -Infinity;
  private trailing: Promise<void> | undefined;

  constructor(
    private readonly store: MetricsStore,
    readonly flushMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one inference request; the promise is the flush, for `waitUntil`. */
  observe(sample: RequestSample): Promise<void> {
    const at = this.now();
    countRequest(this.entry(sample.model, sample.version, sample.alias ?? "", at), sample, at);
    return this.flushSoon();
  }

  /** Counts one shadow run of `version` behind `alias`. */
  observeShadow(sample: ShadowSample): Promise<void> {
    const at = this.now();
    const c = emptyCounters();
    const d = sample.divergence;
    if (d) {
      c.shadow.samples = 1;
      c.shadow.top1Rows = d.top1Rows;
      c.shadow.top1Disagreements = d.top1Disagreements;
      c.shadow.sumMeanAbsDiff = d.meanAbsDiff;
      c.shadow.maxAbsDiff = Number.isFinite(d.maxAbsDiff) ? d.maxAbsDiff : Number.MAX_VALUE;
    } else {
      c.shadow.errors = 1;
    }
    this.add(sample.model, sample.version, sample.alias, 0, c);
    return this.flushSoon();
  }

  private add(model: string, version: number, alias: string, at: number, counters: Counters) {
    addCounters(this.entry(model, version, alias, at), counters);
  }

  /** The buffered counters of one series in the minute of `at` (0: now). */
  private entry(model: string, version: number, alias: string, at: number): Counters {
    const minute = minuteOf(at || this.now());
    const key = `${model}\u0000${minute}\u0000${version}\u0000${alias}`;
    const held = this.buffer.get(key);
    if (held) return held.entry.counters;
    if (this.buffer.size >= MAX_BUFFERED) {
      this.buffer.delete(this.buffer.keys().next().value!);
    }
    const counters = emptyCounters();
    this.buffer.set(key, { model, entry: { minute, version, alias, counters } });
    return counters;
  }

  private flushSoon(): Promise<void> {
    const wait = this.lastFlush + this.flushMs - this.now();
    if (wait <= 0) return this.flush();
    if (!this.trailing) {
      this.trailing = new Promise<void>((resolve) => setTimeout(resolve, wait)).then(() => {
        this.trailing = undefined;
        return this.flush();
      });
    }
    return this.trailing;
  }

  /** Writes everything buffered; what fails to write is kept for the next flush. Never throws. */
  async flush(): Promise<void> {
    this.lastFlush = this.now();
    if (this.buffer.size === 0) return;
    const held = this.buffer;
    this.buffer = new Map();
    const byModel = new Map<string, MetricsEntry[]>();
    for (const { model, entry } of held.values()) {
      let list = byModel.get(model);
      if (!list) byModel.set(model, (list = []));
      list.push(entry);
    }
    await Promise.all(
      [...byModel].map(async ([model, entries]) => {
        try {
          await this.store.write(model, entries);
        } catch (error) {
          for (const e of entries)
            this.add(model, e.version, e.alias, e.minute * MINUTE_MS, e.counters);
          console.error(
            JSON.stringify({ event: "metrics_flush_failure", model, error: String(error) }),
          );
        }
      }),
    );
  }
}
