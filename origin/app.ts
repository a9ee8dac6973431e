/**
 * @module
 * The origin server's HTTP application: the edge's OIP v2 routes and data plane
 * (imported, not copied) over onnxruntime-node, plus what the edge→origin
 * contract adds:
 *
 * - `authorization: Bearer <PINION_ORIGIN_TOKEN>` on `/v2/models/…`, compared
 *   in constant time (401 otherwise); no token configured means no auth, with a
 *   warning at startup. `/v2`, the health probes and `/metrics` are open.
 * - `x-pinion-artifact-sha256`: when sent, it must equal the version's ONNX
 *   artifact digest in the manifest, else 412 naming both.
 * - `x-request-id` echoed (or generated), `traceparent` carried into the logs,
 *   `x-pinion-model: name@version`, `x-pinion-runtime: origin` and
 *   `Server-Timing` on responses.
 * - Readiness that turns false while the server drains, and Prometheus metrics.
 *
 * `createOriginApp` needs no socket: `app.fetch` answers `Request`s; see
 * `server.ts` for listening and shutdown.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono, type MiddlewareHandler } from "hono";
import { requestId } from "hono/request-id";
import ort from "onnxruntime-node";
import { echo, invalid, preconditionFailed } from "../core/errors";
import { secretsEqual, tokenAuth } from "../http/auth";
import { errorResponse, jsonMethodNotAllowed, jsonNotFound } from "../http/errors";
import { traceHeaders } from "../http/middleware";
import { oipRoutes, SERVER_METADATA, type PlaneVariables } from "../http/oip-routes";
import type { ServerMetadata } from "../core/protocol/types";
import { ModelRegistry } from "../core/registry/registry";
import { nodeSha256 } from "./digest";
import type { ObjectStore } from "../core/registry/store";
import { DataPlane } from "../core/serving/data-plane";
import { Executor, type RuntimeChoice } from "../core/serving/executor";
import { ModelCache } from "../core/serving/model-cache";
import { ModelResolver } from "../core/serving/resolver";
import { SERVER_DEFAULTS } from "./config";
import { jsonLogger, parseTraceparent, type Logger } from "./log";
import { OriginMetrics } from "./metrics";
import { OrtNodeRuntime } from "./ort-node-runtime";
import { chooseProviders, type ProviderChoice } from "./providers";

export interface OriginOptions {
  store: ObjectStore;
  /** The bearer token callers must send; undefined or empty turns auth off. */
  token?: string;
  /** Execution providers to try, in order (default `["cpu"]`). */
  providers?: readonly string[];
  /** Bytes of loaded sessions kept (estimated as twice the ONNX file). */
  cacheBytes?: number;
  /** Largest request body accepted, in bytes; larger ones get 413 before being buffered. */
  maxRequestBytes?: number;
  /** How long a model's version list is trusted for unpinned requests, in ms. */
  versionListTtlMs?: number;
  /** Where a temporary directory for artifacts is made (default: the OS's). */
  tmpDir?: string;
  log?: Logger;
}

/** What `GET /v2` answers on the origin: OIP server metadata plus how it runs models. */
export interface OriginServerMetadata extends ServerMetadata {
  runtime: "origin";
  onnxruntime: string;
  execution_providers: string[];
  execution_providers_requested: string[];
}

export interface OriginApp {
  readonly app: Hono<{ Variables: OriginVariables }>;
  readonly plane: DataPlane;
  /** The loaded sessions. */
  readonly cache: ModelCache;
  readonly metrics: OriginMetrics;
  readonly providers: ProviderChoice;
  /** Where artifacts are streamed to while their sessions are created; empty in between. */
  readonly tmpDir: string;
  readonly draining: boolean;
  /** Readiness goes false and responses ask clients to close their connections. */
  startDraining(): void;
  /** Unloads every session (once its requests end) and deletes the temporary directory. */
  close(): Promise<void>;
}

type OriginVariables = PlaneVariables & { requestId: string };

/** The origin serves every version's ONNX graph, whatever the edge would have chosen. */
const originRuntimeChoice: RuntimeChoice = (_manifest, requested) => {
  if (requested !== undefined && requested !== "origin" && requested !== "ort") {
    throw invalid(
      `runtime '${echo(requested)}' is not served here: the origin runs every version's ONNX graph on onnxruntime-node ('origin')`,
    );
  }
  return "origin";
};

/** The model-scoped OIP paths; the edge pins versions, direct callers may not. */
const MODEL_PATHS = ["", "/versions/:version"].flatMap((pinned) =>
  ["", "/ready", "/infer"].map((tail) => `/v2/models/:name${pinned}${tail}`),
);

export async function createOriginApp(options: OriginOptions): Promise<OriginApp> {
  const log = options.log ?? jsonLogger;
  const token = options.token || undefined;
  const registry = new ModelRegistry(options.store, { digests: nodeSha256 });
  const providers = await chooseProviders(options.providers ?? SERVER_DEFAULTS.providers);
  log({
    level: providers.failed.length > 0 ? "warn" : "info",
    event: "execution_providers",
    active: providers.active,
    requested: providers.requested,
    ...(providers.failed.length > 0 ? { failed: providers.failed } : {}),
  });
  if (!token) {
    log({
      level: "warn",
      event: "auth_disabled",
      message: "PINION_ORIGIN_TOKEN is not set: anyone who can reach this server can run models",
    });
  }

  const tmp = await mkdtemp(join(options.tmpDir ?? tmpdir(), "pinion-origin-"));
  const cacheBytes = options.cacheBytes ?? SERVER_DEFAULTS.cacheBytes;
  const maxRequestBytes = options.maxRequestBytes ?? SERVER_DEFAULTS.maxRequestBytes;
  const cache = new ModelCache(cacheBytes);
  const metrics = new OriginMetrics({
    cache: () => ({ models: cache.keys().length, bytes: cache.bytesHeld }),
  });
  const runtime = new OrtNodeRuntime({
    registry,
    providers: providers.active,
    tmpDir: tmp,
    budgetBytes: cacheBytes,
    onLoad: (event) => {
      metrics.observeLoad(event);
      const fields = {
        model: event.manifest.name,
        version: event.manifest.version,
        seconds: Number(event.seconds.toFixed(3)),
      };
      if (event.model) {
        log({ level: "info", event: "model_loaded", ...fields, bytesHeld: event.model.bytesHeld });
      } else {
        const message = event.error instanceof Error ? event.error.message : String(event.error);
        // The cause keeps what clients are not told (file paths on this host).
        const cause = event.error instanceof Error ? event.error.cause : undefined;
        log({
          level: "error",
          event: "model_load_failed",
          ...fields,
          error: message,
          ...(cause !== undefined
            ? { cause: cause instanceof Error ? cause.message : String(cause) }
            : {}),
        });
      }
    },
  });
  const versionListTtlMs = options.versionListTtlMs ?? SERVER_DEFAULTS.versionListTtlMs;
  // The origin is where origin-placed versions run: no forwarder, and no shadow
  // runs (the edge mirrors requests; it sends the origin pinned versions).
  const executor = new Executor(
    registry,
    [runtime],
    cache,
    { maxRequestBytes },
    originRuntimeChoice,
  );
  const plane = new DataPlane({
    resolver: new ModelResolver(registry, {
      versionListTtlMs,
      // Direct callers may use aliases too; the edge always sends pinned versions.
      aliasTtlMs: versionListTtlMs,
      maxArtifactBytes: cacheBytes,
    }),
    executor,
    maxRequestBytes,
  });

  let draining = false;
  const serverMetadata = (): OriginServerMetadata => ({
    ...SERVER_METADATA,
    // The origin keeps no live metrics (the edge counts every request, origin-placed ones too).
    extensions: SERVER_METADATA.extensions.filter((e) => e !== "statistics"),
    runtime: "origin",
    onnxruntime: ort.env.versions.node ?? "unknown",
    execution_providers: providers.active,
    execution_providers_requested: providers.requested,
  });

  const routes = new Hono<{ Variables: OriginVariables }>();
  routes.route(
    "/",
    oipRoutes({
      serverMetadata,
      ready: async () => !draining && (await plane.registryReachable()),
    }),
  );
  routes.get("/metrics", async (c) => {
    const { body, contentType } = await metrics.render();
    return c.body(body, 200, { "content-type": contentType });
  });

  const app = new Hono<{ Variables: OriginVariables }>();
  app.use(metrics.middleware());
  app.use(requestId());
  app.use(requestLog(log));
  app.use(traceHeaders());
  app.use(async (c, next) => {
    await next();
    c.res.headers.set("x-pinion-runtime", "origin");
    // Draining, or refusing a request whose body may be unread (401, 404, 412, 413…):
    // the client must not send another request on this connection.
    const hasBody = c.req.header("content-length") !== "0" && c.req.method === "POST";
    if (draining || (c.res.status >= 400 && hasBody)) c.res.headers.set("connection", "close");
  });
  app.use(jsonMethodNotAllowed(routes));
  app.use(async (c, next) => {
    c.set("plane", plane);
    await next();
  });
  app.use("/v2/models/*", requireToken(token));
  for (const path of MODEL_PATHS) app.use(path, pinVersion());
  app.route("/", routes);
  app.notFound(jsonNotFound);
  app.onError((error, c) => errorResponse(c, error));

  return {
    app,
    plane,
    cache,
    metrics,
    providers,
    tmpDir: tmp,
    get draining() {
      return draining;
    },
    startDraining() {
      draining = true;
    },
    async close() {
      cache.evictAll();
      await rm(tmp, { recursive: true, force: true });
    },
  };
}

/** With a token configured, `/v2/models/…` needs it; without one, auth is off. */
function requireToken(token: string | undefined): MiddlewareHandler {
  if (!token) return (_c, next) => next();
  return tokenAuth(
    "pinion-origin",
    "missing or wrong origin token (Authorization: Bearer …)",
    (given) => secretsEqual(given, token),
  );
}

/**
 * Resolves the version a model path names, says which in `x-pinion-model`, and
 * refuses it with 412 when the caller pinned other bytes than the registry holds.
 */
function pinVersion(): MiddlewareHandler<{ Variables: OriginVariables }> {
  return async (c, next) => {
    const manifest = await c.var.trace.timing.measure("resolve", () =>
      c.var.plane.manifest(c.req.param("name")!, c.req.param("version")),
    );
    const label = `${manifest.name}@${manifest.version}`;
    c.header("x-pinion-model", label);
    const pinned = c.req.header("x-pinion-artifact-sha256");
    const actual = manifest.artifacts.onnx.sha256;
    if (pinned !== undefined && pinned.trim().toLowerCase() !== actual) {
      throw preconditionFailed(
        `x-pinion-artifact-sha256 is ${JSON.stringify(pinned.slice(0, 100))} but the ONNX artifact of ${label} has sha256 ${actual}; refusing to serve other bytes than were asked for`,
      );
    }
    await next();
  };
}

/** One line per request, with its id and W3C trace context. */
function requestLog(log: Logger): MiddlewareHandler<{ Variables: OriginVariables }> {
  return async (c, next) => {
    const started = performance.now();
    await next();
    const trace = parseTraceparent(c.req.header("traceparent"));
    log({
      level: c.res.status >= 500 ? "error" : "info",
      event: "request",
      requestId: c.var.requestId,
      ...(trace ? { traceId: trace.traceId, parentSpanId: trace.parentId } : {}),
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Number((performance.now() - started).toFixed(2)),
      ...(c.res.headers.get("x-pinion-model")
        ? { model: c.res.headers.get("x-pinion-model") }
        : {}),
    });
  };
}
