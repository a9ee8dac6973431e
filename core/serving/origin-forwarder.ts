/**
 * @module
 * The edge's side of origin placement: versions too large for an isolate are
 * answered by the companion GPU origin (`origin/`, or Triton/KServe speaking
 * OIP v2). This is not a `Runtime`: nothing is decoded or run here; the OIP
 * request is passed through to the origin, pinned to the exact version and
 * ONNX digest the registry holds, and the answer is streamed back.
 *
 * Reliability, per isolate: a deadline per request (for the origin's whole
 * answer), retries with backoff
 * after connection failures where the request can be sent again unchanged (a
 * body we hold, not a stream), and a circuit breaker so a dead origin fails fast. Failures are domain errors
 * (503 unavailable, 502 bad answer, 504 timeout); callers never see a hang.
 */
import { PinionError, unavailable, upstreamFailed, upstreamTimedOut } from "../errors";
import type { Manifest } from "../registry/manifest";

export interface OriginConfig {
  /** Base URL of the origin, e.g. `https://origin.internal:8081`; empty = none configured. */
  url: string;
  /** Sent as `Authorization: Bearer …`; the origin's PINION_ORIGIN_TOKEN. */
  token?: string;
  /** Until the origin's response headers arrive. */
  timeoutMs: number;
  /** Extra attempts after a connection failure, when the request can be resent. */
  retries: number;
  /** Consecutive failures that open the circuit. */
  breakerThreshold: number;
  /** How long an open circuit fails fast before letting one trial request through. */
  breakerCooldownMs: number;
}

/**
 * Closed → (threshold consecutive failures) → open: fail fast for the
 * cooldown → half-open: one trial request; its success closes the circuit,
 * its failure opens it again.
 */
export class CircuitBreaker {
  private failures = 0;
  private openedAt: number | undefined;
  private trialInFlight = false;

  constructor(
    private readonly threshold: number,
    private readonly cooldownMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get state(): "closed" | "open" | "half-open" {
    if (this.openedAt === undefined) return "closed";
    return this.now() - this.openedAt >= this.cooldownMs ? "half-open" : "open";
  }

  /** Milliseconds until an open circuit lets a trial through. */
  get retryInMs(): number {
    return this.openedAt === undefined
      ? 0
      : Math.max(0, this.cooldownMs - (this.now() - this.openedAt));
  }

  /** Whether a request may go to the origin now (claims the trial slot when half-open). */
  tryAcquire(): boolean {
    const state = this.state;
    if (state === "closed") return true;
    if (state === "open" || this.trialInFlight) return false;
    this.trialInFlight = true;
    return true;
  }

  success(): void {
    this.failures = 0;
    this.openedAt = undefined;
    this.trialInFlight = false;
  }

  failure(): void {
    this.trialInFlight = false;
    this.failures += 1;
    if (this.openedAt !== undefined || this.failures >= this.threshold) this.openedAt = this.now();
  }
}

export interface ForwardRequest {
  /** `infer` (POST) or `ready` (GET), on the origin's path pinned to the manifest's version. */
  endpoint: "infer" | "ready";
  manifest: Manifest;
  /** A held body can be resent on retry; a stream is sent once. */
  body?: Uint8Array | ReadableStream<Uint8Array> | null;
  contentType?: string;
  /** `Inference-Header-Content-Length` of a binary tensor data body, passed on unchanged. */
  inferenceHeaderLength?: string;
  requestId: string;
  traceparent?: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Answers up to this size (by Content-Length) are read whole before they are passed on. */
const HELD_ANSWER_BYTES = 1024 * 1024;

/** Headers of the origin's answer that the caller gets. */
const PASSED_HEADERS = [
  "content-type",
  "content-length",
  "server-timing",
  "inference-header-content-length",
];

export class OriginForwarder {
  readonly breaker: CircuitBreaker;

  constructor(
    private readonly config: OriginConfig,
    private readonly fetcher: typeof fetch = (input, init) => fetch(input, init),
    now: () => number = Date.now,
  ) {
    this.breaker = new CircuitBreaker(config.breakerThreshold, config.breakerCooldownMs, now);
  }

  async forward(request: ForwardRequest): Promise<Response> {
    const { manifest } = request;
    const label = `${manifest.name}@${manifest.version}`;
    if (!this.config.url) {
      throw unavailable(`${label} is served by the GPU origin, but ORIGIN_URL is not configured`);
    }
    if (!this.breaker.tryAcquire()) {
      throw unavailable(
        `the origin is failing; ${label} is not tried again for ${Math.ceil(this.breaker.retryInMs / 1000)} s (circuit open)`,
      );
    }
    const path = `/v2/models/${encodeURIComponent(manifest.name)}/versions/${manifest.version}/${request.endpoint}`;
    const url = new URL(
      path,
      this.config.url.endsWith("/") ? this.config.url : `${this.config.url}/`,
    );
    const headers = new Headers({
      "x-pinion-artifact-sha256": manifest.artifacts.onnx.sha256,
      "x-request-id": request.requestId,
    });
    if (this.config.token) headers.set("authorization", `Bearer ${this.config.token}`);
    if (request.traceparent) headers.set("traceparent", request.traceparent);
    if (request.contentType) headers.set("content-type", request.contentType);
    if (request.inferenceHeaderLength !== undefined) {
      headers.set("inference-header-content-length", request.inferenceHeaderLength);
    }
    const resendable = !(request.body instanceof ReadableStream);
    const attempts = resendable ? 1 + this.config.retries : 1;

    let response: Response | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        response = await this.fetcher(url, {
          method: request.endpoint === "infer" ? "POST" : "GET",
          headers,
          // Never a SharedArrayBuffer view here; the cast only narrows TypeScript's ArrayBufferLike.
          ...(request.body ? { body: request.body as BodyInit } : {}),
          signal: AbortSignal.timeout(this.config.timeoutMs),
        });
        break;
      } catch (error) {
        const name = (error as Error).name;
        if (name === "TimeoutError" || name === "AbortError") {
          this.breaker.failure();
          throw upstreamTimedOut(
            `the origin did not answer ${label} within ${this.config.timeoutMs} ms`,
          );
        }
        if (attempt >= attempts) {
          this.breaker.failure();
          throw unavailable(
            `cannot reach the origin for ${label} (${attempts} attempt${attempts > 1 ? "s" : ""}): ${(error as Error).message}`,
            error,
          );
        }
        // The body is ours to resend: back off and retry. workerd reports a refused and a
        // dropped connection alike, so a retried inference may have reached the origin
        // (at-least-once; inference has no side effects, and the breaker bounds the load).
        await sleep(50 * 2 ** (attempt - 1));
      }
    }
    return this.accept(response, label);
  }

  /** Checks the origin's answer before streaming it on; anything off is a 502. */
  private async accept(response: Response, label: string): Promise<Response> {
    const status = response.status;
    const contentType = response.headers.get("content-type") ?? "";
    const isJson = contentType.includes("application/json");
    // A successful answer with binary outputs: JSON header, then tensor data.
    const isBinary =
      status < 400 &&
      contentType.includes("application/octet-stream") &&
      response.headers.has("inference-header-content-length");
    if (status >= 500 || (!isJson && !isBinary)) {
      const detail = isJson
        ? await errorText(response)
        : `a ${contentType || "body without content type"}`;
      if (status >= 500 || status < 400) this.breaker.failure();
      throw upstreamFailed(`the origin answered ${label} with ${status}: ${detail}`);
    }
    if (status === 412) {
      this.breaker.success();
      throw upstreamFailed(
        `the origin holds different bytes for ${label}: ${await errorText(response)}`,
      );
    }
    if (status === 401 || status === 403) {
      this.breaker.success();
      throw upstreamFailed(
        `the origin refused this worker's token (${status}); check PINION_ORIGIN_TOKEN`,
      );
    }
    if (status < 400 && response.headers.get("x-pinion-model") !== label) {
      // A different version (or something that is not Pinion's protocol) answered.
      await response.body?.cancel();
      this.breaker.failure();
      throw upstreamFailed(
        `the origin answered for ${response.headers.get("x-pinion-model") ?? "no model"}, not ${label}`,
      );
    }
    // A healthy origin, also when it rejects the caller's request (400, 404, 413): pass it on.
    this.breaker.success();
    const headers = new Headers();
    for (const name of PASSED_HEADERS) {
      const value = response.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    let failure: unknown;
    const body = this.watched(response, label, (error) => (failure = error));
    const declared = Number(response.headers.get("content-length") ?? NaN);
    if (body && Number.isInteger(declared) && declared <= HELD_ANSWER_BYTES) {
      // A typical OIP answer: read it whole before answering, so a stall or a short
      // answer becomes a clean 504/502 rather than a broken 200 (larger ones stream).
      let bytes: ArrayBuffer;
      try {
        bytes = await new Response(body).arrayBuffer();
      } catch (error) {
        const cause = failure ?? error;
        throw cause instanceof PinionError
          ? cause
          : upstreamFailed(
              `the origin's answer for ${label} broke off: ${(cause as Error).message}`,
            );
      }
      return new Response(bytes, { status, headers });
    }
    return new Response(body, { status, headers });
  }

  /**
   * The answer's body, streamed on, but cut off (and counted as an origin
   * failure) when the origin goes quiet for the timeout mid-body or ends it
   * short of its Content-Length: the caller gets a broken response, never a
   * hang or a silently truncated 200.
   */
  private watched(
    response: Response,
    label: string,
    failed: (error: unknown) => void,
  ): ReadableStream<Uint8Array> | null {
    if (!response.body) return null;
    const reader = response.body.getReader();
    const declared = Number(response.headers.get("content-length") ?? NaN);
    const timeoutMs = this.config.timeoutMs;
    const breaker = this.breaker;
    let received = 0;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const stalled = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(upstreamTimedOut(`the origin stalled mid-answer for ${label}`)),
            timeoutMs,
          );
        });
        try {
          const { done, value } = await Promise.race([reader.read(), stalled]);
          if (done) {
            if (Number.isInteger(declared) && received !== declared) {
              throw upstreamFailed(
                `the origin's answer for ${label} ended after ${received} of ${declared} bytes`,
              );
            }
            controller.close();
            return;
          }
          received += value.byteLength;
          controller.enqueue(value);
        } catch (caught) {
          // The request's deadline (AbortSignal.timeout) also covers the body.
          const name = (caught as Error).name;
          const error =
            name === "TimeoutError" || name === "AbortError"
              ? upstreamTimedOut(
                  `the origin did not finish answering ${label} within ${timeoutMs} ms`,
                )
              : caught;
          breaker.failure();
          failed(error);
          void reader.cancel().catch(() => undefined);
          controller.error(error);
        } finally {
          if (timer !== undefined) clearTimeout(timer);
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    });
  }
}

async function errorText(response: Response): Promise<string> {
  const text = (await response.text()).slice(0, 500);
  try {
    return (JSON.parse(text) as { error?: string }).error ?? text;
  } catch {
    return text;
  }
}
