/**
 * @module
 * The only place that knows status codes: domain error kinds to HTTP statuses,
 * and the JSON error body every failure gets, `{"error": "..."}`.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { PinionError, type ErrorKind } from "../errors";

export const STATUS_OF: Record<ErrorKind, ContentfulStatusCode> = {
  invalid_argument: 400,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  precondition_failed: 412,
  unavailable: 503,
  internal: 500,
};

export function errorResponse(c: Context, error: unknown): Response {
  if (error instanceof PinionError) {
    const status = STATUS_OF[error.kind];
    if (status >= 500) logError(c, error);
    return c.json({ error: error.message }, status);
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
