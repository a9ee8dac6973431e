/**
 * @module
 * Prometheus metrics for the origin, with prom-client, in a registry of their
 * own (so several servers can live in one process, as in tests). Requests are
 * labelled by route pattern, never by raw path, so model names cannot blow up
 * the label cardinality.
 */
import type { MiddlewareHandler } from "hono";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { LoadEvent } from "./ort-node-runtime";

const FIXED_ROUTES = new Set(["/v2", "/v2/health/live", "/v2/health/ready", "/metrics"]);

/** The route pattern a path belongs to, for metric labels. */
export function routeOf(path: string): string {
  if (FIXED_ROUTES.has(path)) return path;
  const match = /^\/v2\/models\/[^/]+(\/versions\/[^/]+)?(\/ready|\/infer)?$/.exec(path);
  if (!match) return "unmatched";
  return `/v2/models/{name}${match[1] ? "/versions/{version}" : ""}${match[2] ?? ""}`;
}

export interface MetricsSources {
  /** Versions loaded now, and the bytes the cache counts for them. */
  cache: () => { models: number; bytes: number };
}

export class OriginMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"method" | "route" | "status">;
  private readonly duration: Histogram<"method" | "route">;
  private readonly inFlightGauge: Gauge;
  private readonly loads: Histogram<"outcome">;
  private inFlight = 0;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: "pinion_origin_requests_total",
      help: "HTTP requests answered, by route pattern, method and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.duration = new Histogram({
      name: "pinion_origin_request_duration_seconds",
      help: "Time to answer an HTTP request, by route pattern and method",
      labelNames: ["method", "route"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.inFlightGauge = new Gauge({
      name: "pinion_origin_requests_in_flight",
      help: "HTTP requests being answered now",
      registers,
      collect: () => this.inFlightGauge.set(this.inFlight),
    });
    this.loads = new Histogram({
      name: "pinion_origin_model_load_seconds",
      help: "Time to load a version: fetch and verify its artifact, create the session",
      labelNames: ["outcome"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    const loaded: Gauge = new Gauge({
      name: "pinion_origin_models_loaded",
      help: "Versions loaded in the model cache",
      registers,
      collect: () => loaded.set(sources.cache().models),
    });
    const bytes: Gauge = new Gauge({
      name: "pinion_origin_model_cache_bytes",
      help: "Estimated bytes held by loaded versions (what the cache budget counts)",
      registers,
      collect: () => bytes.set(sources.cache().bytes),
    });
  }

  /** Process metrics (CPU, memory, event loop lag, GC): for the server process, not for tests. */
  collectProcessMetrics(): void {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Requests being answered now. */
  get requestsInFlight(): number {
    return this.inFlight;
  }

  /** Counts and times every request; outermost, so it sees the final status. */
  middleware(): MiddlewareHandler {
    return async (c, next) => {
      const started = performance.now();
      this.inFlight++;
      try {
        await next();
      } finally {
        this.inFlight--;
        const route = routeOf(c.req.path);
        const method = c.req.method;
        this.requests.inc({ method, route, status: String(c.res.status) });
        this.duration.observe({ method, route }, (performance.now() - started) / 1000);
      }
    };
  }

  observeLoad(event: LoadEvent): void {
    this.loads.observe({ outcome: event.model ? "ok" : "error" }, event.seconds);
  }

  async render(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
