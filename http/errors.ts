/**
 * @module
 * The only place that knows status codes: domain error kinds to HTTP statuses,
 * and the JSON error body every failure gets, `{"error": "..."}` — unknown
 * paths (404) and wrong methods (405) included.
 */
import type { Context, Env, Hono, MiddlewareHandler, NotFoundHandler, Schema } from "hono";
import { HTTPException } from "hono/http-exception";
import { methodNotAllowed } from "hono/method-not-allowed";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { PinionError, type ErrorKind } from "../core/errors";

export const STATUS_OF: Record<ErrorKind, ContentfulStatusCode> = {
  invalid_argument: 400,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  not_implemented: 501,
  // The request is well-formed and valid, and not too large itself (so neither 400 nor 413);
  // its answer is, and the caller can fix that (fewer rows, fewer outputs): a 4xx, not a 5xx.
  result_too_large: 422,
  length_required: 411,
  unauthenticated: 401,
  // A switched-off API answers as if it were not there.
  disabled: 404,
  precondition_failed: 412,
  refused: 422,
  unavailable: 503,
  upstream_failed: 502,
  upstream_timeout: 504,
  internal: 500,
};

/**
 * The kind a status stands for: the CLI reads the admin API's answers with the
 * same table the server wrote them with (first kind listed wins: 404 is
 * `not_found`; 403 counts as `unauthenticated`).
 */
export function kindOfStatus(status: number): ErrorKind {
  if (status === 403) return "unauthenticated";
  const kind = (Object.keys(STATUS_OF) as ErrorKind[]).find((k) => STATUS_OF[k] === status);
  return kind ?? (status >= 500 ? "unavailable" : "invalid_argument");
}

export function errorResponse(c: Context, error: unknown): Response {
  if (error instanceof PinionError) {
    const status = STATUS_OF[error.kind];
    // 501 is a known endpoint not offered yet: nothing went wrong here.
    if (status >= 500 && status !== 501) logError(c, error);
    const challenge =
      error.kind === "unauthenticated"
        ? { "WWW-Authenticate": `Bearer realm="${error.realm ?? "pinion"}"` }
        : undefined;
    return c.json({ error: error.message, ...error.details }, status, challenge);
  }
  if (error instanceof HTTPException) {
    return c.json(
      { error: error.message || "request failed" },
      error.status as ContentfulStatusCode,
    );
  }
  logError(c, error);
  return c.json(
    {
      error: `internal error; quote request id ${c.get("requestId") ?? "(none)"} when reporting it`,
    },
    500,
  );
}

function logError(c: Context, error: unknown): void {
  console.error(
    JSON.stringify({
      event: "request_failed",
      requestId: c.get("requestId"),
      method: c.req.method,
      path: c.req.path,
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      cause:
        error instanceof Error && error.cause instanceof Error ? error.cause.message : undefined,
    }),
  );
}

/** 405 with an `Allow` header and a JSON error, for paths `routes` has under other methods. */
export function jsonMethodNotAllowed<E extends Env>(
  routes: Hono<E, Schema, string>,
): MiddlewareHandler<E> {
  return methodNotAllowed({
    app: routes,
    onMethodNotAllowed: (c, methods) =>
      c.json(
        { error: `${c.req.method} is not allowed on ${c.req.path}; use ${methods.join(" or ")}` },
        405,
        { Allow: methods.join(", ") },
      ),
  });
}

/** The JSON 404 for paths no route knows. */
export const jsonNotFound: NotFoundHandler = (c) =>
  c.json(
    { error: `no such endpoint: ${c.req.method} ${c.req.path}; see GET /v2 and /v2/models/{name}` },
    404,
  );
