/**
 * @module
 * Open Inference Protocol v2 REST endpoints over the data plane.
 */
import { Hono, type Context } from "hono";
import { invalid, PinionError } from "../errors";
import { parseInferenceRequest, type ModelReady, type ServerMetadata } from "../protocol/types";
import type { DataPlane } from "../serving/data-plane";
import { errorResponse } from "./errors";
import { limitBody, readJson, type AppVariables } from "./middleware";
import pkg from "../../package.json";

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
}

export function oipRoutes(options: OipOptions = {}): Hono<{ Variables: PlaneVariables }> {
  const app = new Hono<{ Variables: PlaneVariables }>();
  const serverReady = options.ready ?? ((plane: DataPlane) => plane.registryReachable());

  app.get("/v2/health/live", (c) => c.json({ live: true }));

  app.get("/v2/health/ready", async (c) => {
    const ready = await serverReady(c.var.plane);
    return c.json({ ready }, ready ? 200 : 503);
  });

  app.get("/v2", (c) => c.json(options.serverMetadata?.() ?? SERVER_METADATA));

  const metadata = async (c: Ctx) =>
    c.json(await c.var.plane.metadata(c.req.param("name")!, c.req.param("version")));
  app.get("/v2/models/:name", metadata);
  app.get("/v2/models/:name/versions/:version", metadata);

  const ready = async (c: Ctx) => {
    const plane = c.var.plane;
    const manifest = await plane.resolve(c.req.param("name")!, c.req.param("version"));
    const body: ModelReady & { version: string } = {
      name: manifest.name,
      version: String(manifest.version),
      ready: true,
    };
    c.header("x-pinion-model", `${manifest.name}@${manifest.version}`);
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
  app.get("/v2/models/:name/ready", ready);
  app.get("/v2/models/:name/versions/:version/ready", ready);

  const infer = async (c: Ctx) => {
    const plane = c.var.plane;
    const timing = c.var.timing;
    const manifest = await timing.measure("resolve", () =>
      plane.resolve(c.req.param("name")!, c.req.param("version")),
    );
    // Name what is being served even when the request then fails.
    c.header("x-pinion-model", `${manifest.name}@${manifest.version}`);
    c.header("x-pinion-runtime", plane.runtimeFor(manifest, c.req.query("runtime")).name);
    const request = parseInferenceRequest(await readJson(c));
    const result = await plane.inferResolved(
      manifest,
      request,
      timing,
      c.req.query("runtime"),
      benchRepeat(c),
    );
    if (result.repeat > 1) c.header("x-pinion-compute-repeat", String(result.repeat));
    c.header("x-pinion-runtime", result.runtime);
    return c.json(result.response);
  };
  const bounded = limitBody((c) => (c as Ctx).var.plane.config.maxRequestBytes);
  app.post("/v2/models/:name/infer", bounded, infer);
  app.post("/v2/models/:name/versions/:version/infer", bounded, infer);

  app.onError((error, c) => errorResponse(c, error));
  return app;
}
