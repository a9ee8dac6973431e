/**
 * @module
 * Domain errors shared by every layer. Each carries a `kind` that says what went
 * wrong in protocol terms; only `http/errors.ts` turns a kind into a status
 * code, so the registry, the protocol codec and the runtimes stay reusable from
 * the CLI and the origin server. Every error is built by one of the
 * constructors below, never with `new PinionError` elsewhere.
 */

export type ErrorKind =
  | "invalid_argument" // the caller sent something we cannot accept
  | "not_found" // the model or version does not exist
  | "conflict" // a write would break immutability
  | "payload_too_large" // a size from the outside world is over its bound
  | "unsupported_media_type" // a body in an encoding or format this server does not read
  | "not_implemented" // a protocol endpoint this server knows of but does not offer yet
  | "result_too_large" // a valid request whose answer would be larger than this server sends
  | "unauthenticated" // no or wrong credentials (admin API clients)
  | "length_required" // a streamed upload needs its size up front
  | "unauthenticated" // no or wrong credentials
  | "disabled" // the feature is switched off on this server (no admin token configured)
  | "precondition_failed" // the caller pinned something (a digest) the registry does not hold
  | "refused" // a well-formed change that a check turned down (a promotion's gates)
  | "unavailable" // the model exists but cannot be served right now
  | "upstream_failed" // the GPU origin gave a bad answer
  | "upstream_timeout" // the GPU origin did not answer in time
  | "internal"; // a bug or corrupt state: never expected, always logged

export class PinionError extends Error {
  override readonly name = "PinionError";
  constructor(
    readonly kind: ErrorKind,
    message: string,
    options?: {
      cause?: unknown;
      /** Fields the error body carries besides `error` (e.g. a refused promotion's outcome). */
      details?: Record<string, unknown>;
      /** For `unauthenticated`: the realm to challenge for credentials in. */
      realm?: string;
    },
  ) {
    super(message, options);
    this.details = options?.details;
    this.realm = options?.realm;
  }
  readonly details: Record<string, unknown> | undefined;
  readonly realm: string | undefined;
}

export const invalid = (message: string) => new PinionError("invalid_argument", message);
export const notFound = (message: string) => new PinionError("not_found", message);
export const conflict = (message: string) => new PinionError("conflict", message);
export const tooLarge = (message: string) => new PinionError("payload_too_large", message);
export const unsupportedMedia = (message: string) =>
  new PinionError("unsupported_media_type", message);
export const notImplemented = (message: string) => new PinionError("not_implemented", message);
export const resultTooLarge = (message: string) => new PinionError("result_too_large", message);
export const lengthRequired = (message: string) => new PinionError("length_required", message);
export const unauthenticated = (message: string, realm?: string) =>
  new PinionError("unauthenticated", message, { realm });
export const disabled = (message: string) => new PinionError("disabled", message);
export const preconditionFailed = (message: string) =>
  new PinionError("precondition_failed", message);
export const refused = (message: string, details: Record<string, unknown>) =>
  new PinionError("refused", message, { details });
export const unavailable = (message: string, cause?: unknown) =>
  new PinionError("unavailable", message, { cause });

/** How much of a caller's text an error message repeats. */
export const ECHO_CHARS = 64;

/**
 * Caller-supplied text as an error message may repeat it: whole when short,
 * else its first `ECHO_CHARS` characters and its length, so a 100 KB name
 * cannot make a 100 KB error.
 */
export function echo(text: string): string {
  return text.length <= ECHO_CHARS ? text : `${text.slice(0, ECHO_CHARS)}… (${text.length} chars)`;
}

/** A caller-supplied JSON value for an error message, as JSON, cut like `echo`. */
export function echoJson(value: unknown): string {
  if (typeof value === "string" && value.length > ECHO_CHARS) {
    return `${JSON.stringify(value.slice(0, ECHO_CHARS))}… (a string of ${value.length} chars)`;
  }
  return echo(String(JSON.stringify(value)));
}
export const upstreamFailed = (message: string) => new PinionError("upstream_failed", message);
export const upstreamTimedOut = (message: string) => new PinionError("upstream_timeout", message);
export const internal = (message: string, cause?: unknown) =>
  new PinionError("internal", message, { cause });

/** "model 'x' not found": one wording for every place that looks a model up. */
export const modelNotFound = (name: string) => notFound(`model '${name}' not found`);
