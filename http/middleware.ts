/**
 * @module
 * Cross-cutting: every request's trace, reported on the way out as
 * `Server-Timing` and the `x-pinion-*` headers that say what served it; and
 * the request body limit.
 */
import type { Context, MiddlewareHandler } from "hono";
import { invalid, tooLarge } from "../core/errors";
import { Trace } from "../core/serving/trace";

export type AppVariables = { requestId: string; trace: Trace };

/**
 * Gives the request a trace, and reports it on the way out (errors included):
 * phase timings plus the total in `Server-Timing`, and the version, alias and
 * runtime that served it.
 */
export function traceHeaders(): MiddlewareHandler<{ Variables: AppVariables }> {
  return async (c, next) => {
    const started = performance.now();
    const trace = new Trace();
    c.set("trace", trace);
    await next();
    const headers = c.res.headers;
    if (trace.model !== undefined) headers.set("x-pinion-model", trace.model);
    if (trace.alias !== undefined) headers.set("x-pinion-alias", trace.alias);
    if (trace.runtime !== undefined) headers.set("x-pinion-runtime", trace.runtime);
    if (trace.repeat !== undefined) headers.set("x-pinion-compute-repeat", String(trace.repeat));
    const metrics = trace.timing.entries().map(([phase, ms]) => `${phase};dur=${ms.toFixed(2)}`);
    metrics.push(`total;dur=${(performance.now() - started).toFixed(2)}`);
    headers.set("Server-Timing", metrics.join(", "));
  };
}

/**
 * Rejects bodies over `maxBytes` with 413 — from Content-Length when it is sent,
 * else while streaming — so an unbounded body is never buffered.
 *
 * A streamed body that goes over is read on and dropped, up to `maxBytes`
 * more, before the 413 is sent. Once the worker holds the body's stream,
 * workerd no longer drains what is left after the response, as it does for a
 * body never touched: answering mid-body leaves the rest in the connection,
 * and under `wrangler dev` the next request on it then failed ("Your worker
 * restarted mid-request", or a GET that waited for another request). A body
 * more than twice the limit is cancelled instead: reading it all would let one
 * request keep the worker busy for as long as it likes.
 */
export function limitBody(maxBytes: (c: Context) => number): MiddlewareHandler {
  return async (c, next) => {
    const limit = maxBytes(c);
    const over = () =>
      tooLarge(`request body is larger than this server's limit of ${limit} bytes`);
    const body = c.req.raw.body;
    if (!body) return next();
    const declared = c.req.header("content-length");
    if (declared !== undefined && c.req.header("transfer-encoding") === undefined) {
      if (Number(declared) > limit) throw over();
      return next();
    }
    const reader = body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read().catch(unreadable);
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await drain(reader, limit);
        throw over();
      }
      chunks.push(value);
    }
    const whole = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      whole.set(chunk, offset);
      offset += chunk.byteLength;
    }
    c.req.raw = new Request(c.req.raw, { body: whole });
    return next();
  };
}

/** Reads the rest of a stream, keeping nothing; cancels it if it goes on past `maxBytes`. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, maxBytes: number) {
  let dropped = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      dropped += value.byteLength;
      if (dropped > maxBytes) {
        await reader.cancel();
        return;
      }
    }
  } catch {
    // The client went away: nothing is left to drain.
  }
}

/** A body that breaks off (the client disconnected) is the request's fault, not a server error. */
export function unreadable(cause: unknown): never {
  throw invalid(
    `the request body could not be read to its end: ${cause instanceof Error ? cause.message : String(cause)}`,
  );
}
