/**
 * @module
 * Cross-cutting: every request's trace, reported on the way out as
 * `Server-Timing` and the `x-pinion-*` headers that say what served it; and
 * the request body limit.
 */
import type { Context, MiddlewareHandler } from "hono";
import { invalid, tooLarge, unsupportedMedia } from "../core/errors";
import { Trace } from "../core/serving/trace";

export type AppVariables = { requestId: string; trace: Trace };

/**
 * Gives the request a trace, and reports it on the way out (errors included):
 * phase timings plus the total in `Server-Timing`, and the version, alias and
 * runtime that served it; error responses are marked not to be compressed.
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
    if (trace.decodeRepeat !== undefined) {
      headers.set("x-pinion-decode-repeat", String(trace.decodeRepeat));
    }
    const metrics = trace.timing.entries().map(([phase, ms]) => `${phase};dur=${ms.toFixed(2)}`);
    metrics.push(`total;dur=${(performance.now() - started).toFixed(2)}`);
    headers.set("Server-Timing", metrics.join(", "));
    // Error bodies are never compressed: clients (tritonclient among them) read them as they
    // come, whatever they sent in Accept-Encoding. Cloudflare's front line (and Miniflare's
    // emulation of it under `wrangler dev`) gzips JSON for clients that accept it unless the
    // response already names its encoding: `identity` says it is sent as is, and
    // `no-transform` asks every proxy on the way to leave it so.
    if (c.res.status >= 400) {
      if (!headers.has("Content-Encoding")) headers.set("Content-Encoding", "identity");
      headers.set("Cache-Control", "no-transform");
    }
  };
}

/** `Content-Encoding` values a request body may have, and the decompressor each needs. */
const DECODERS: Record<string, "gzip" | "deflate" | null> = {
  identity: null,
  gzip: "gzip",
  "x-gzip": "gzip",
  // HTTP's "deflate" is the zlib format (RFC 1950), which DecompressionStream calls "deflate".
  deflate: "deflate",
};

/**
 * Rejects bodies over `maxBytes` with 413 — from Content-Length when it is sent,
 * else while streaming — so an unbounded body is never buffered.
 *
 * A body sent with `Content-Encoding: gzip` or `deflate` is decompressed as it
 * streams in, and the limit applies to the decompressed bytes: a small body
 * that inflates past it (a zip bomb) is a 413 as soon as it does. The handler
 * then sees the decompressed body, without `Content-Encoding`, with its
 * decompressed length. Other encodings are a 415; a body that does not
 * decompress is a 400.
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
    const body = c.req.raw.body;
    if (!body) return next();
    const encoding = (c.req.header("content-encoding") ?? "identity").trim().toLowerCase();
    const format = DECODERS[encoding];
    if (format === undefined) {
      throw unsupportedMedia(
        `request bodies may be sent with Content-Encoding gzip or deflate, not ${JSON.stringify(encoding.slice(0, 40))}`,
      );
    }
    const compressed = format !== null;
    const over = () =>
      tooLarge(
        `request body is larger than this server's limit of ${limit} bytes${compressed ? " once decompressed" : ""}`,
      );
    const declared = c.req.header("content-length");
    if (!compressed && declared !== undefined && c.req.header("transfer-encoding") === undefined) {
      if (Number(declared) > limit) throw over();
      return next();
    }
    // The compressed bytes are bounded too: a body that inflates to little or nothing (empty
    // deflate blocks) must not keep the worker reading for as long as the client likes.
    let compressedOver = false;
    const reader = (
      compressed
        ? (bounded(body, limit, () => (compressedOver = true)) as typeof body).pipeThrough(
            new DecompressionStream(format),
          )
        : body
    ).getReader();
    const failed = compressed
      ? (cause: unknown): never => {
          if (compressedOver) {
            throw tooLarge(`request body is larger than this server's limit of ${limit} bytes`);
          }
          throw invalid(
            `the request body is not valid ${encoding} data: ${cause instanceof Error ? cause.message : String(cause)}`,
          );
        }
      : unreadable;
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read().catch(failed);
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
    const headers = new Headers(c.req.raw.headers);
    headers.delete("content-encoding");
    headers.delete("transfer-encoding");
    headers.set("content-length", String(size));
    c.req.raw = new Request(c.req.raw, { body: whole, headers });
    return next();
  };
}

/** `stream`, failing (after calling `onOver`) once more than `maxBytes` have passed through. */
function bounded(
  stream: ReadableStream<Uint8Array>,
  maxBytes: number,
  onOver: () => void,
): ReadableStream<Uint8Array> {
  let seen = 0;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (seen > maxBytes) {
          onOver();
          controller.error(new Error("over the limit"));
          return;
        }
        controller.enqueue(chunk);
      },
    }),
  );
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
