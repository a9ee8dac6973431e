/**
 * @module
 * Open Inference Protocol v2 REST endpoints over the data plane.
 */
import { Hono, type Context } from "hono";
import { invalid, PinionError } from "../errors";
import { parseInferenceRequest, type ModelReady, type ServerMetadata } from "../protocol/types";
import type { DataPlane, ModelReference, Route } from "../serving/data-plane";
import { errorResponse } from "./errors";
import { limitBody, readJson, type AppVariables } from "./middleware";
import pkg from "../../package.json";

export type PlaneVariables = AppVariables & { plane: DataPlane };
type Ctx = Context<{ Variables: PlaneVariables }>;

const SERVER_METADATA: ServerMetadata = { name: "pinion", version: pkg.version, extensions: [] };

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

export function oipRoutes(): Hono<{ Variables: PlaneVariables }> {
  const app = new Hono<{ Variables: PlaneVariables }>();

  app.get("/v2/health/live", (c) => c.json({ live: true }));

  app.get("/v2/health/ready", async (c) => {
    const ready = await c.var.plane.registryReachable();
    return c.json({ ready }, ready ? 200 : 503);
  });

  app.get("/v2", (c) => c.json(SERVER_METADATA));

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
      const model = await c.var.timing.measure("load", () =>
        plane.load(manifest, c.req.query("runtime")),
      );
      c.header("x-pinion-runtime", model.runtime);
    } catch (error) {
      if (!(error instanceof PinionError) || error.kind !== "unavailable") throw error;
      return c.json({ ...body, ready: false, error: error.message }, 503);
    }
    return c.json(body);
  };
  for (const path of ["", "/versions/:version", "/aliases/:alias"]) {
    app.get(`/v2/models/:name${path}/ready`, ready);
  }

  const infer = async (c: Ctx) => {
    const plane = c.var.plane;
    const timing = c.var.timing;
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
    const route = await timing.measure("resolve", () =>
      plane.route(reference(c, typeof parameterAlias === "string" ? parameterAlias : undefined)),
    );
    const manifest = route.manifest;
    // Name what is being served even when the request then fails.
    describe(c, route);
    if (bodyError !== undefined) throw bodyError;
    if (parameterAlias !== undefined && typeof parameterAlias !== "string") {
      throw invalid("the 'alias' request parameter must be a string");
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
      c.executionCtx.waitUntil(plane.shadow.mirror(plane, route, request, result.response));
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
