/**
 * @module
 * Open Inference Protocol v2 REST endpoints over the data plane. At the edge,
 * versions placed on the GPU origin are passed through to it instead.
 */
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { invalid, PinionError, type ErrorKind } from "../core/errors";
import { placementOf } from "../core/registry/manifest";
import { parseInferenceRequest, type ModelReady, type ServerMetadata } from "../core/protocol/types";
import type { DataPlane, ModelReference, Route } from "../core/serving/data-plane";
import { errorResponse } from "./errors";
import { limitBody, readJson, type AppVariables } from "./middleware";
import pkg from "../package.json";

export type PlaneVariables = AppVariables & { plane: DataPlane };
type Ctx = Context<{ Variables: PlaneVariables }>;

export const SERVER_METADATA: ServerMetadata = {
  name: "pinion",
  version: pkg.version,
  extensions: [],
};

/** `?repeat=N` for benchmarks, honoured only where PINION_BENCH_REPEAT_MAX allows it. */
function benchRepeat(c: Ctx): number {
  const max = c.var.plane.config.benchRepeatMax ?? 0;
  const value = c.req.query("repeat");
  if (value === undefined || max === 0) return 1;
  const repeat = Number(value);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > max) {
    throw invalid(`repeat must be an integer from 1 to ${max}`);
  }
  return repeat;
}

/** What differs between servers that speak this API (the edge and the origin). */
export interface OipOptions {
  /** `GET /v2`; by default pinion's name and version, with no extensions. */
  serverMetadata?: () => ServerMetadata;
  /** `GET /v2/health/ready`; by default whether the registry answers. */
  ready?: (plane: DataPlane) => Promise<boolean>;
  /** The edge passes requests for origin-placed versions to the origin; the origin serves them. */
  forwardToOrigin?: boolean;
}

/**
 * Bodies up to this size are held, so a request to the origin can be retried;
 * larger ones stream. (Under wrangler dev, a streamed body whose forward fails
 * also upsets the next request — a Miniflare quirk — so most requests are held.)
 */
const HELD_BODY_BYTES = 1024 * 1024;

/** Kinds of failure that mean "not ready" rather than a bad request. */
const NOT_READY = new Set<ErrorKind>(["unavailable", "upstream_failed", "upstream_timeout"]);

const traceparent = (c: Context) => {
  const value = c.req.header("traceparent");
  return value ? { traceparent: value } : {};
};

export function oipRoutes(options: OipOptions = {}): Hono<{ Variables: PlaneVariables }> {
  const app = new Hono<{ Variables: PlaneVariables }>();
  const serverReady = options.ready ?? ((plane: DataPlane) => plane.registryReachable());
  const forwarding = options.forwardToOrigin === true;

  app.get("/v2/health/live", (c) => c.json({ live: true }));

  app.get("/v2/health/ready", async (c) => {
    const ready = await serverReady(c.var.plane);
    return c.json({ ready }, ready ? 200 : 503);
  });

  app.get("/v2", (c) => c.json(options.serverMetadata?.() ?? SERVER_METADATA));

  /** The model reference in the path (and, for infer, the `alias` request parameter). */
  const reference = (c: Ctx, parameterAlias?: string): ModelReference => {
    const alias = c.req.param("alias") ?? parameterAlias;
    const version = c.req.param("version");
    return {
      name: c.req.param("name")!,
      ...(version !== undefined ? { version } : {}),
      ...(alias !== undefined ? { alias } : {}),
      key: c.req.header("x-pinion-key") ?? c.var.requestId,
    };
  };
  /** Says what answered: the pinned version, and the alias that chose it. */
  const describe = (c: Ctx, route: Route) => {
    c.header("x-pinion-model", `${route.manifest.name}@${route.manifest.version}`);
    if (route.alias !== undefined) c.header("x-pinion-alias", route.alias);
  };

  const metadata = async (c: Ctx) => {
    const route = await c.var.plane.route(reference(c));
    describe(c, route);
    return c.json(await c.var.plane.metadata(route.manifest.name, String(route.manifest.version)));
  };
  for (const path of ["", "/versions/:version", "/aliases/:alias"]) {
    app.get(`/v2/models/:name${path}`, metadata);
  }

  const ready = async (c: Ctx) => {
    const plane = c.var.plane;
    const route = await plane.route(reference(c));
    const manifest = route.manifest;
    const body: ModelReady & { version: string } = {
      name: manifest.name,
      version: String(manifest.version),
      ready: true,
    };
    describe(c, route);
    try {
      if (forwarding && placementOf(manifest) === "origin") {
        c.header("x-pinion-runtime", "origin");
        const answer = await c.var.timing.measure("load", () =>
          plane.origin.forward({
            endpoint: "ready",
            manifest,
            requestId: c.var.requestId,
            ...traceparent(c),
          }),
        );
        await answer.body?.cancel();
        if (answer.status !== 200) {
          return c.json(
            { ...body, ready: false, error: `the origin answered ${answer.status}` },
            503,
          );
        }
        return c.json(body);
      }
      const model = await c.var.timing.measure("load", () =>
        plane.load(manifest, c.req.query("runtime")),
      );
      c.header("x-pinion-runtime", model.runtime);
    } catch (error) {
      if (!(error instanceof PinionError) || !NOT_READY.has(error.kind)) throw error;
      return c.json({ ...body, ready: false, error: error.message }, 503);
    }
    return c.json(body);
  };
  for (const path of ["", "/versions/:version", "/aliases/:alias"]) {
    app.get(`/v2/models/:name${path}/ready`, ready);
  }

  /** Passes an inference request to the origin and streams its answer back. */
  const toOrigin = async (
    c: Ctx,
    route: Route,
    body: Uint8Array | ReadableStream<Uint8Array> | null,
  ) => {
    const manifest = route.manifest;
    c.header("x-pinion-runtime", "origin");
    const answer = await c.var.timing.measure("compute", () =>
      c.var.plane.origin.forward({
        endpoint: "infer",
        manifest,
        body,
        contentType: c.req.header("content-type") ?? "application/json",
        requestId: c.var.requestId,
        ...traceparent(c),
      }),
    );
    const headers: Record<string, string> = {};
    answer.headers.forEach((value, name) => {
      // Our own Server-Timing covers the hop; the origin's phases are kept under their own names.
      headers[name === "server-timing" ? "x-pinion-origin-timing" : name] = value;
    });
    return answer.body
      ? c.body(answer.body, answer.status as ContentfulStatusCode, headers)
      : c.body(null, answer.status as ContentfulStatusCode, headers);
  };

  const infer = async (c: Ctx) => {
    const plane = c.var.plane;
    const timing = c.var.timing;
    let route: Route | undefined;
    if (
      forwarding &&
      (c.req.param("version") !== undefined || c.req.param("alias") !== undefined)
    ) {
      // The path names the version: an origin-placed one gets the body as a stream, unread.
      route = await timing.measure("resolve", () => plane.route(reference(c)));
      if (placementOf(route.manifest) === "origin") {
        describe(c, route);
        const length = Number(c.req.header("content-length") ?? NaN);
        const held = Number.isInteger(length) && length <= HELD_BODY_BYTES;
        return toOrigin(
          c,
          route,
          held ? new Uint8Array(await c.req.arrayBuffer()) : c.req.raw.body,
        );
      }
    }
    // The JSON first, since an OIP request may name its alias in its parameters;
    // a body that does not parse is reported after resolving, like any bad request.
    let body: unknown;
    let bodyError: unknown;
    try {
      body = await readJson(c);
    } catch (error) {
      bodyError = error;
    }
    const parameterAlias = (body as { parameters?: { alias?: unknown } } | null)?.parameters?.alias;
    route ??= await timing.measure("resolve", () =>
      plane.route(reference(c, typeof parameterAlias === "string" ? parameterAlias : undefined)),
    );
    const manifest = route.manifest;
    // Name what is being served even when the request then fails.
    describe(c, route);
    if (bodyError !== undefined) throw bodyError;
    if (parameterAlias !== undefined && typeof parameterAlias !== "string") {
      throw invalid("the 'alias' request parameter must be a string");
    }
    if (parameterAlias !== undefined && c.req.param("version") !== undefined) {
      throw invalid("a request names either a version or an alias, not both");
    }
    if (forwarding && placementOf(manifest) === "origin") {
      return toOrigin(c, route, new TextEncoder().encode(JSON.stringify(body)));
    }
    const request = parseInferenceRequest(body);
    c.header("x-pinion-runtime", plane.runtimeFor(manifest, c.req.query("runtime")).name);
    const result = await plane.inferResolved(
      manifest,
      request,
      timing,
      c.req.query("runtime"),
      benchRepeat(c),
    );
    if (result.repeat > 1) c.header("x-pinion-compute-repeat", String(result.repeat));
    c.header("x-pinion-runtime", result.runtime);
    if (route.shadowVersion !== undefined) {
      // After the response: the caller never waits for, or sees, the shadow run.
      const mirrored = plane.shadow.mirror(plane, route, request, result.response);
      // Workers keep the isolate alive for it; a Node server (the origin) just lets it run.
      try {
        c.executionCtx.waitUntil(mirrored);
      } catch {
        void mirrored;
      }
    }
    return c.json(result.response);
  };
  const bounded = limitBody((c) => (c as Ctx).var.plane.config.maxRequestBytes);
  for (const path of ["", "/versions/:version", "/aliases/:alias"]) {
    app.post(`/v2/models/:name${path}/infer`, bounded, infer);
  }

  app.onError((error, c) => errorResponse(c, error));
  return app;
}
