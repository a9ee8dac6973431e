/**
 * @module
 * Serving limits, read from the worker's vars (strings) with defaults.
 */
import { z } from "zod";
import { DEFAULT_MAX_EXPLAIN_EVALUATIONS } from "./explanations";
import type { OriginConfig } from "./origin-forwarder";

/** No origin configured, and the reliability settings an origin gets unless told otherwise. */
export const FORWARDER_DEFAULTS: OriginConfig = {
  url: "",
  timeoutMs: 30_000,
  retries: 2,
  breakerThreshold: 5,
  breakerCooldownMs: 10_000,
};

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

export const servingConfigSchema = z.object({
  /** Largest request body accepted, in bytes; larger ones get 413 before being buffered. */
  MAX_REQUEST_BYTES: positiveInt(8 * 1024 * 1024),
  /**
   * Largest JSON text of one response's output data, in bytes, and most output
   * elements, checked before encoding (int8: before running). With the model
   * cache and a request, encoding (array, text, UTF-8 copy) must fit in 128 MB.
   */
  MAX_RESPONSE_BYTES: positiveInt(8 * 1024 * 1024),
  MAX_RESPONSE_ELEMENTS: positiveInt(1024 * 1024),
  /** Bytes of loaded models an isolate keeps (isolates have 128 MB in all). */
  MODEL_CACHE_BYTES: positiveInt(64 * 1024 * 1024),
  /** How long an isolate trusts its list of a model's versions, in ms (0 = always re-list). */
  VERSION_LIST_TTL_MS: z.coerce.number().int().min(0).default(5000),
  /**
   * How long an isolate trusts its copy of a model's aliases, in ms: a
   * promotion reaches every isolate within this bound (R2 reads are strongly
   * consistent). 0 = read them on every request.
   */
  ALIAS_TTL_MS: z.coerce.number().int().min(0).default(5000),
  /** The GPU origin that answers origin-placed versions (empty: none; those versions get 503). */
  ORIGIN_URL: z.string().default(FORWARDER_DEFAULTS.url),
  /** How long the origin may take to answer, in ms (then 504). */
  ORIGIN_TIMEOUT_MS: positiveInt(FORWARDER_DEFAULTS.timeoutMs),
  /** Extra attempts after a connection failure, for requests that can be resent. */
  ORIGIN_RETRIES: z.coerce.number().int().min(0).max(5).default(FORWARDER_DEFAULTS.retries),
  /** Consecutive origin failures after which requests fail fast (503) … */
  ORIGIN_BREAKER_THRESHOLD: positiveInt(FORWARDER_DEFAULTS.breakerThreshold),
  /** … for this long, in ms, before one trial request is let through. */
  ORIGIN_BREAKER_COOLDOWN_MS: positiveInt(FORWARDER_DEFAULTS.breakerCooldownMs),
  /** How often an isolate writes its shadow divergence totals to R2, at most, in ms. */
  SHADOW_FLUSH_MS: z.coerce.number().int().min(0).default(5000),
  /**
   * How often an isolate writes its buffered request metrics, at most, in ms: a
   * request is counted in the aggregate within this bound (plus the write).
   */
  METRICS_FLUSH_MS: z.coerce.number().int().min(0).max(25_000).default(5000),
  /** "false" switches request metrics off (benchmarks compare the two). */
  METRICS_ENABLED: z.enum(["true", "false"]).default("true"),
  /**
   * Benchmarks only: the most times `?repeat=N` may rerun an inference's compute,
   * and `?repeat_decode=N` its decode, in one request (0, the default, disables
   * both). workerd's clock is coarse, so in-worker phases are measured over many runs.
   */
  PINION_BENCH_REPEAT_MAX: z.coerce.number().int().min(0).default(0),
  /** The most model evaluations one explanation may take (samples × background rows, …). */
  MAX_EXPLAIN_EVALUATIONS: positiveInt(DEFAULT_MAX_EXPLAIN_EVALUATIONS),
});

export type ServingConfig = {
  maxRequestBytes: number;
  /** Bounds on one answer's outputs (none when absent: the origin's servers have the memory). */
  maxResponseBytes?: number;
  maxResponseElements?: number;
  modelCacheBytes: number;
  versionListTtlMs: number;
  aliasTtlMs: number;
  shadowFlushMs: number;
  /** METRICS_FLUSH_MS (5000 when absent). */
  metricsFlushMs?: number;
  /** False when METRICS_ENABLED is "false". */
  metricsEnabled?: boolean;
  benchRepeatMax?: number;
  /** The most model evaluations one explanation may take. */
  maxExplainEvaluations?: number;
  /** Where origin-placed versions go; FORWARDER_DEFAULTS (none) when absent. */
  origin?: OriginConfig;
};

export function parseServingConfig(vars: Record<string, unknown>): ServingConfig {
  const unset = (value: unknown) => (value === "" || value === null ? undefined : value);
  const parsed = servingConfigSchema.parse({
    MAX_REQUEST_BYTES: unset(vars.MAX_REQUEST_BYTES),
    MAX_RESPONSE_BYTES: unset(vars.MAX_RESPONSE_BYTES),
    MAX_RESPONSE_ELEMENTS: unset(vars.MAX_RESPONSE_ELEMENTS),
    MODEL_CACHE_BYTES: unset(vars.MODEL_CACHE_BYTES),
    VERSION_LIST_TTL_MS: unset(vars.VERSION_LIST_TTL_MS),
    ALIAS_TTL_MS: unset(vars.ALIAS_TTL_MS),
    SHADOW_FLUSH_MS: unset(vars.SHADOW_FLUSH_MS),
    METRICS_FLUSH_MS: unset(vars.METRICS_FLUSH_MS),
    METRICS_ENABLED: unset(vars.METRICS_ENABLED),
    ORIGIN_URL: unset(vars.ORIGIN_URL),
    ORIGIN_TIMEOUT_MS: unset(vars.ORIGIN_TIMEOUT_MS),
    ORIGIN_RETRIES: unset(vars.ORIGIN_RETRIES),
    ORIGIN_BREAKER_THRESHOLD: unset(vars.ORIGIN_BREAKER_THRESHOLD),
    ORIGIN_BREAKER_COOLDOWN_MS: unset(vars.ORIGIN_BREAKER_COOLDOWN_MS),
    PINION_BENCH_REPEAT_MAX: unset(vars.PINION_BENCH_REPEAT_MAX),
    MAX_EXPLAIN_EVALUATIONS: unset(vars.MAX_EXPLAIN_EVALUATIONS),
  });
  return {
    maxRequestBytes: parsed.MAX_REQUEST_BYTES,
    maxResponseBytes: parsed.MAX_RESPONSE_BYTES,
    maxResponseElements: parsed.MAX_RESPONSE_ELEMENTS,
    modelCacheBytes: parsed.MODEL_CACHE_BYTES,
    versionListTtlMs: parsed.VERSION_LIST_TTL_MS,
    aliasTtlMs: parsed.ALIAS_TTL_MS,
    shadowFlushMs: parsed.SHADOW_FLUSH_MS,
    metricsFlushMs: parsed.METRICS_FLUSH_MS,
    metricsEnabled: parsed.METRICS_ENABLED === "true",
    origin: {
      url: parsed.ORIGIN_URL,
      timeoutMs: parsed.ORIGIN_TIMEOUT_MS,
      retries: parsed.ORIGIN_RETRIES,
      breakerThreshold: parsed.ORIGIN_BREAKER_THRESHOLD,
      breakerCooldownMs: parsed.ORIGIN_BREAKER_COOLDOWN_MS,
      ...(typeof vars.PINION_ORIGIN_TOKEN === "string" && vars.PINION_ORIGIN_TOKEN
        ? { token: vars.PINION_ORIGIN_TOKEN }
        : {}),
    },
    benchRepeatMax: parsed.PINION_BENCH_REPEAT_MAX,
    maxExplainEvaluations: parsed.MAX_EXPLAIN_EVALUATIONS,
  };
}
