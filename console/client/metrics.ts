/**
 * Live traffic from the statistics extension (`GET /v2/models/{name}/stats`,
 * Triton's shape), when the worker offers it. A worker without it answers
 * 501 (or 404): the console then shows its empty state instead of charts.
 */
import { oip, path, ApiError } from "./api";

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
