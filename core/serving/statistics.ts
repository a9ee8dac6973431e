/**
 * @module
 * Triton's statistics extension (`GET /v2/models[/{name}[/versions/{v}]]/stats`)
 * from the live metrics: one `model_stat` per version, cumulative since the
 * model's metrics began (as Triton's are since the server started). Pinion
 * does not batch requests, so every request is one execution; `queue`,
 * `compute_output` and the response cache stay zero. `compute_input` is the
 * decode phase, `compute_infer` the compute phase.
 */
import type { Counters } from "./metrics";

export interface DurationStat {
  count: number;
  ns: number;
}

export interface ModelStat {
  name: string;
  version: string;
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats: Record<
    | "success"
    | "fail"
    | "queue"
    | "compute_input"
    | "compute_infer"
    | "compute_output"
    | "cache_hit"
    | "cache_miss",
    DurationStat
  >;
  response_stats: Record<string, never>;
  batch_stats: never[];
  memory_usage: never[];
}

export interface StatisticsResponse {
  model_stats: ModelStat[];
}

const ns = (ms: number) => Math.round(ms * 1e6);
const zero = (): DurationStat => ({ count: 0, ns: 0 });

/** One version's `model_stat` from its counters (all aliases added up). */
export function modelStat(name: string, version: number, c: Counters): ModelStat {
  const failed = c.requests - c.success;
  return {
    name,
    version: String(version),
    last_inference: c.lastAt,
    inference_count: c.success,
    execution_count: c.success,
    inference_stats: {
      success: { count: c.success, ns: ns(c.successMs) },
      fail: { count: failed, ns: ns(c.failMs) },
      queue: zero(),
      compute_input: { count: c.requests, ns: ns(c.decodeMs) },
      compute_infer: { count: c.requests, ns: ns(c.compute.sumMs) },
      compute_output: zero(),
      cache_hit: zero(),
      cache_miss: zero(),
    },
    response_stats: {},
    batch_stats: [],
    memory_usage: [],
  };
}
