/**
 * @module
 * Cross-cutting response headers: `Server-Timing` on every response, and the
 * bounded JSON body reader used by the inference route.
 */
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { invalid, tooLarge } from "../errors";
import { Timing } from "../serving/timing";

export type AppVariables = { requestId: string; timing: Timing };

/** Records phase timings for the request and reports them, plus the total, on the way out. */
export function serverTiming(): MiddlewareHandler<{ Variables: AppVariables }> {
  return async (c, next) => {
    const started = performance.now();
    const timing = new Timing();
    c.set("timing", timing);
    await next();
    const metrics = timing.entries().map(([phase, ms]) => `${phase};dur=${ms.toFixed(2)}`);
    metrics.push(`total;dur=${(performance.now() - started).toFixed(2)}`);
    c.res.headers.set("Server-Timing", metrics.join(", "));
  };
}

/**
 * Rejects bodies over `maxBytes` with 413 — from Content-Length when it is sent,
 * else while streaming — so an unbounded body is never buffered.
 */
export function limitBody(maxBytes: (c: Context) => number): MiddlewareHandler {
  return (c, next) =>
    bodyLimit({
      maxSize: maxBytes(c),
      onError: () => {
        throw tooLarge(`request body is larger than this server's limit of ${maxBytes(c)} bytes`);
      },
    })(c, next);
}

/** Parses the (already size-limited) body as JSON, with a message that says what is wrong. */
export async function readJson(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === "") throw invalid("request body is empty; send an inference request as JSON");
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalid(`request body is not valid JSON: ${(error as Error).message}`);
  }
}
