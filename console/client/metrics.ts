/**
 * Live traffic from the statistics extension (`GET /v2/models/{name}/stats`,
 * Triton's shape), when the worker offers it. A worker without it answers
 * 501 (or 404): the console then shows its empty state instead of charts.
 */
import { admin, oip, path, ApiError } from "./api";

export interface VersionStats {
  version: string;
  inferenceCount: number;
  success: { count: number; ns: number };
  fail: { count: number; ns: number };
}

interface TritonStats {
  model_stats?: {
    version: string;
    inference_count?: number;
    inference_stats?: {
      success?: { count: number; ns: number };
      fail?: { count: number; ns: number };
    };
  }[];
}

/** Per-version cumulative counters, or null when this worker has no statistics endpoint. */
export async function readStats(name: string): Promise<VersionStats[] | null> {
  try {
    const stats = await oip<TritonStats>(`models/${path(name)}/stats`);
    return (stats.model_stats ?? []).map((s) => ({
      version: String(s.version),
      inferenceCount: s.inference_count ?? 0,
      success: s.inference_stats?.success ?? { count: 0, ns: 0 },
      fail: s.inference_stats?.fail ?? { count: 0, ns: 0 },
    }));
  } catch (error) {
    if (error instanceof ApiError && (error.status === 501 || error.status === 404)) return null;
    throw error;
  }
}

/** The upper bounds (ms) of the latency histogram's buckets (docs/api.md, live metrics); the last is open. */
export const LATENCY_BUCKETS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/** One version's traffic in one minute, summed over the aliases that sent it. */
export interface MinuteTotals {
  requests: number;
  success: number;
  latencyCounts: number[];
}

interface MetricsAnswer {
  series: {
    version: number;
    minutes?: {
      minute: number;
      counters: { requests: number; success: number; latency: { counts: number[] } };
    }[];
  }[];
}

/**
 * Per-version, per-minute totals from the admin metrics route
 * (`GET /admin/models/{name}/metrics?since=…`), or null when this worker has
 * no such route (404/501).
 */
export async function readMinutes(
  name: string,
  since: string,
): Promise<Map<string, Map<number, MinuteTotals>> | null> {
  let answer: MetricsAnswer;
  try {
    answer = await admin<MetricsAnswer>(`models/${path(name)}/metrics?since=${since}`);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 501 || error.status === 404)) return null;
    throw error;
  }
  const versions = new Map<string, Map<number, MinuteTotals>>();
  for (const series of answer.series) {
    const minutes = versions.get(String(series.version)) ?? new Map<number, MinuteTotals>();
    versions.set(String(series.version), minutes);
    for (const { minute, counters } of series.minutes ?? []) {
      const total = minutes.get(minute) ?? { requests: 0, success: 0, latencyCounts: [] };
      total.requests += counters.requests;
      total.success += counters.success;
      counters.latency.counts.forEach((count, i) => {
        total.latencyCounts[i] = (total.latencyCounts[i] ?? 0) + count;
      });
      minutes.set(minute, total);
    }
  }
  return versions;
}

/** The latency (a bucket's upper bound, ms) under which `quantile` of the requests finished. */
export function latencyQuantile(counts: number[], quantile: number): number | null {
  const total = counts.reduce((sum, c) => sum + c, 0);
  if (total === 0) return null;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i]!;
    if (seen >= quantile * total)
      return LATENCY_BUCKETS_MS[Math.min(i, LATENCY_BUCKETS_MS.length - 1)]!;
  }
  return LATENCY_BUCKETS_MS.at(-1)!;
}
