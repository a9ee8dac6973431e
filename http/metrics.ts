/**
 * @module
 * Counting inference requests for the live metrics (`core/serving/metrics.ts`):
 * on the way out of every `POST …/infer`, what the trace says served it, its
 * status class and error kind, timings and sizes go into the isolate's buffer,
 * and the buffer's flush goes to `waitUntil` — the response never waits on it.
 * Status codes become classes here, where the HTTP layer knows them.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { notImplemented, PinionError } from "../core/errors";
import type { StatusClass } from "../core/serving/metrics";
import { PROMETHEUS_CONTENT_TYPE, prometheusText } from "../core/serving/prometheus";
import { requireToken, type AdminVariables } from "./admin";
import { errorResponse, kindOfStatus } from "./errors";
import type { PlaneVariables } from "./oip-routes";

const statusClass = (status: number): StatusClass =>
  status < 400 ? "2xx" : status < 500 ? "4xx" : "5xx";

/** Lets work outlive the response: Workers keep the isolate for it; Node just runs it. */
export function afterResponse(c: Context, work: Promise<void>): void {
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    void work;
  }
}

export function recordMetrics(): MiddlewareHandler<{ Variables: PlaneVariables }> {
  return async (c, next) => {
    const started = performance.now();
    await next();
    const recorder = c.var.plane?.metrics;
    if (!recorder || c.req.method !== "POST" || !c.req.path.endsWith("/infer")) return;
    const trace = c.var.trace;
    // A request that never named a version (unknown model, bad path) has nothing to count against.
    const at = trace.model?.lastIndexOf("@") ?? -1;
    if (at < 0) return;
    const status = c.res.status;
    const timings = new Map(trace.timing.entries());
    const error = c.error;
    const length = (headers: Headers) => Number(headers.get("content-length") ?? 0) || 0;
    afterResponse(
      c,
      recorder.observe({
        model: trace.model!.slice(0, at),
        version: Number(trace.model!.slice(at + 1)),
        ...(trace.alias !== undefined ? { alias: trace.alias } : {}),
        statusClass: statusClass(status),
        ...(status >= 400
          ? {
              errorKind:
                error instanceof PinionError
                  ? error.kind
                  : error
                    ? "internal"
                    : kindOfStatus(status),
            }
          : {}),
        totalMs: performance.now() - started,
        computeMs: timings.get("compute") ?? 0,
        decodeMs: timings.get("decode") ?? 0,
        ...(trace.runtime !== undefined ? { runtime: trace.runtime } : {}),
        coldLoad: trace.coldLoad === true,
        bytesIn: length(c.req.raw.headers),
        bytesOut: trace.bytesOut ?? length(c.res.headers),
      }),
    );
  };
}

/**
 * `GET /metrics`: Prometheus text for every model's running totals, behind
 * the admin token (the numbers tell how a deployment is used).
 */
export function prometheusRoutes(): Hono<{ Variables: AdminVariables }> {
  const app = new Hono<{ Variables: AdminVariables }>();
  app.get("/metrics", requireToken(), async (c) => {
    const store = c.var.admin.metrics;
    if (!store) throw notImplemented("this server keeps no live metrics");
    const models = await c.var.admin.registry.listModels();
    const reports = await Promise.all(models.map((model) => store.read(model, {})));
    return c.body(prometheusText(reports), 200, { "content-type": PROMETHEUS_CONTENT_TYPE });
  });
  app.onError((error, c) => errorResponse(c, error));
  return app;
}
