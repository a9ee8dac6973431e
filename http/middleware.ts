/**
 * @module
 * Cross-cutting response headers: `Server-Timing` on every response, and the
 * bounded JSON body reader used by the inference route.
 */
import type { Context, MiddlewareHandler } from "hono";
import { invalid, tooLarge } from "../core/errors";
import { Timing } from "../core/serving/timing";

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
function unreadable(cause: unknown): never {
  throw invalid(
    `the request body could not be read to its end: ${cause instanceof Error ? cause.message : String(cause)}`,
  );
}

/** Parses the (already size-limited) body as JSON, with a message that says what is wrong. */
export async function readJson(c: Context): Promise<unknown> {
  const text = await c.req.text().catch(unreadable);
  if (text.trim() === "") throw invalid("request body is empty; send an inference request as JSON");
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalid(`request body is not valid JSON: ${(error as Error).message}`);
  }
}
