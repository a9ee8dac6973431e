/**
 * @module
 * Open Inference Protocol v2 REST endpoints. Each handler translates: it reads
 * the path and the body, makes one call on the data plane, and writes the
 * answer; what was served (model, alias, runtime, timings) goes into headers
 * on the way out, from the request's trace (see `middleware.ts`).
 */
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { invalid } from "../core/errors";
import { SUPPORTED_EXTENSIONS } from "../core/protocol/extensions";
import { parseIndexRequest, parseLoadRequest } from "../core/protocol/model-repository";
import { responseJson } from "../core/protocol/response-json";
import type { ServerMetadata } from "../core/protocol/types";
import type { DataPlane, ModelReference, RequestBody } from "../core/serving/data-plane";
import { errorResponse } from "./errors";
import { limitBody, unreadable, type AppVariables } from "./middleware";
import pkg from "../package.json";

const encoder = new TextEncoder();

export type PlaneVariables = AppVariables & { plane: DataPlane };
type Ctx = Context<{ Variables: PlaneVariables }>;

export const SERVER_METADATA: ServerMetadata = {
  name: "pinion",
  version: pkg.version,
  extensions: [...SUPPORTED_EXTENSIONS],
};

/** What differs between servers that speak this API (the edge and the origin). */
export interface OipOptions {
  /** `GET /v2`; by default pinion's name, version and supported extensions. */
  serverMetadata?: () => ServerMetadata;
  /** `GET /v2/health/ready`; by default whether the registry answers. */
  ready?: (plane: DataPlane) => Promise<boolean>;
}

/** The model-scoped path prefixes: unpinned, pinned to a version, through an alias. */
const MODEL_PATHS = ["", "/versions/:version", "/aliases/:alias"];

/** The model reference in the path, with the caller's sticky canary key. */
function reference(c: Ctx): ModelReference {
  const alias = c.req.param("alias");
  const version = c.req.param("version");
  return {
    name: c.req.param("name")!,
    ...(version !== undefined ? { version } : {}),
    ...(alias !== undefined ? { alias } : {}),
    key: c.req.header("x-pinion-key") ?? c.var.requestId,
  };
}

/** The body as the data plane reads it: whole (already size-limited) or as a stream. */
function requestBody(c: Ctx): RequestBody {
  const length = Number(c.req.header("content-length") ?? NaN);
  return {
    ...(Number.isInteger(length) ? { length } : {}),
    bytes: async () => new Uint8Array(await c.req.arrayBuffer().catch(unreadable)),
    stream: () => c.req.raw.body,
  };
}

/** Lets background work outlive the response: Workers keep the isolate for it; Node just runs it. */
function runAfterResponse(c: Ctx, work: Promise<void>): void {
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    void work;
  }
}

const traceparent = (c: Ctx) => {
  const value = c.req.header("traceparent");
  return value ? { traceparent: value } : {};
};

export function oipRoutes(options: OipOptions = {}): Hono<{ Variables: PlaneVariables }> {
  const app = new Hono<{ Variables: PlaneVariables }>();
  const serverReady = options.ready ?? ((plane: DataPlane) => plane.registryReachable());

  app.get("/v2/health/live", (c) => c.json({ live: true }));

  app.get("/v2/health/ready", async (c) => {
    const ready = await serverReady(c.var.plane);
    return c.json({ ready }, ready ? 200 : 503);
  });

  // The OIP document writes the server metadata path as `/v2/`; both spellings answer.
  for (const path of ["/v2", "/v2/"]) {
    app.get(path, (c) => c.json(options.serverMetadata?.() ?? SERVER_METADATA));
  }

  // Triton's statistics extension: `GET /v2/models/stats` is its path, not model metadata of a
  // model named "stats" (that model's metadata is at /v2/models/stats/versions/{v}). Registered
  // before the model routes so that it wins.
  app.get("/v2/models/stats", async (c) => c.json(await c.var.plane.statistics()));
  for (const path of MODEL_PATHS) {
    app.get(`/v2/models/:name${path}/stats`, async (c) => {
      const { name, version, alias } = reference(c);
      return c.json(
        await c.var.plane.statistics({
          name,
          ...(version !== undefined ? { version } : {}),
          ...(alias !== undefined ? { alias } : {}),
        }),
      );
    });
  }

  for (const path of MODEL_PATHS) {
    app.get(`/v2/models/:name${path}/config`, async (c) =>
      c.json(await c.var.plane.config(reference(c), c.var.trace)),
    );
  }

  for (const path of MODEL_PATHS) {
    app.get(`/v2/models/:name${path}`, async (c) =>
      c.json(await c.var.plane.metadata(reference(c), c.var.trace)),
    );
  }

  for (const path of MODEL_PATHS) {
    app.get(`/v2/models/:name${path}/ready`, async (c) => {
      const state = await c.var.plane.ready(reference(c), c.var.trace, {
        ...(c.req.query("runtime") !== undefined ? { runtime: c.req.query("runtime")! } : {}),
        requestId: c.var.requestId,
        ...traceparent(c),
      });
      return c.json(state, state.ready ? 200 : 503);
    });
  }

  const bounded = limitBody((c) => (c as Ctx).var.plane.maxRequestBytes);
  const text = (c: Ctx) => c.req.text().catch(unreadable);

  app.post("/v2/repository/index", bounded, async (c) => {
    // `ready` changes nothing: every published version is ready.
    parseIndexRequest(await text(c));
    return c.json(await c.var.plane.repositoryIndex());
  });

  app.post("/v2/repository/models/:name/load", bounded, async (c) => {
    parseLoadRequest(await text(c));
    await c.var.plane.load(c.req.param("name"), c.var.trace, {
      requestId: c.var.requestId,
      ...traceparent(c),
    });
    return c.json({});
  });

  app.post("/v2/repository/models/:name/unload", bounded, async (c) => {
    return c.var.plane.unload(c.req.param("name"));
  });

  for (const path of MODEL_PATHS) {
    app.post(`/v2/models/:name${path}/infer`, bounded, async (c) => {
      const answer = await c.var.plane.infer(
        {
          reference: reference(c),
          body: requestBody(c),
          contentType: c.req.header("content-type") ?? "application/json",
          ...(c.req.header("inference-header-content-length") !== undefined
            ? { inferenceHeaderLength: c.req.header("inference-header-content-length")! }
            : {}),
          ...(c.req.query("runtime") !== undefined ? { runtime: c.req.query("runtime")! } : {}),
          ...(c.req.query("repeat") !== undefined ? { repeat: c.req.query("repeat")! } : {}),
          ...(c.req.query("repeat_decode") !== undefined
            ? { repeatDecode: c.req.query("repeat_decode")! }
            : {}),
          requestId: c.var.requestId,
          ...traceparent(c),
        },
        c.var.trace,
      );
      if (answer.kind === "relayed") {
        const headers: Record<string, string> = {};
        answer.headers.forEach((value, name) => {
          // Our own Server-Timing covers the hop; the origin's phases are kept under their own names.
          headers[name === "server-timing" ? "x-pinion-origin-timing" : name] = value;
        });
        const status = answer.status as ContentfulStatusCode;
        return answer.body ? c.body(answer.body, status, headers) : c.body(null, status, headers);
      }
      if (answer.background) runAfterResponse(c, answer.background);
      if (answer.kind === "binary") {
        c.var.trace.bytesOut = answer.body.byteLength;
        return c.body(answer.body, 200, {
          "content-type": "application/octet-stream",
          "inference-header-content-length": String(answer.headerLength),
        });
      }
      // Encoded here, once, so its size can be counted (workerd would encode the text anyway).
      const json = encoder.encode(responseJson(answer.response)) as Uint8Array<ArrayBuffer>;
      c.var.trace.bytesOut = json.byteLength;
      return c.body(json, 200, { "content-type": "application/json" });
    });
  }

  // Explanations (docs/explain.md): an inference request whose parameters say how to explain,
  // answered with the prediction and an `attributions` output. JSON only.
  for (const path of MODEL_PATHS) {
    app.post(`/v2/models/:name${path}/explain`, bounded, async (c) => {
      if (c.req.header("inference-header-content-length") !== undefined) {
        throw invalid(
          "explain requests are JSON; the binary tensor data extension is not supported here",
        );
      }
      const response = await c.var.plane.explain(
        {
          reference: reference(c),
          body: requestBody(c),
          ...(c.req.query("runtime") !== undefined ? { runtime: c.req.query("runtime")! } : {}),
          ...(c.req.query("repeat") !== undefined ? { repeat: c.req.query("repeat")! } : {}),
          requestId: c.var.requestId,
        },
        c.var.trace,
      );
      return c.body(responseJson(response), 200, { "content-type": "application/json" });
    });
  }

  app.onError((error, c) => errorResponse(c, error));
  return app;
}
