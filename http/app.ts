/**
 * @module
 * The HTTP application: request ids, timings, OIP routes, JSON errors for
 * everything (unknown paths 404, wrong methods 405). The data plane is supplied
 * per environment by the caller, so the app itself holds no bindings.
 */
import { Hono } from "hono";
import { requestId } from "hono/request-id";
import type { DataPlane } from "../core/serving/data-plane";
import { adminRoutes, type AdminContext } from "./admin";
import { errorResponse, jsonMethodNotAllowed, jsonNotFound } from "./errors";
import { prometheusRoutes, recordMetrics } from "./metrics";
import { traceHeaders } from "./middleware";
import { oipRoutes, type PlaneVariables } from "./oip-routes";

export interface AppWiring<Bindings> {
  /** The data plane for an environment (one per isolate). */
  planeFor: (env: Bindings) => DataPlane;
  /** The admin API's token and storage for an environment. */
  adminFor: (env: Bindings) => AdminContext;
}

type Variables = PlaneVariables & { admin: AdminContext };

export function createApp<Bindings extends object>({
  planeFor,
  adminFor,
}: AppWiring<Bindings>): Hono<{ Bindings: Bindings; Variables: Variables }> {
  const app = new Hono<{ Bindings: Bindings; Variables: Variables }>();
  const routes = new Hono<{ Variables: Variables }>();
  routes.route("/", oipRoutes());
  routes.route("/admin", adminRoutes());
  routes.route("/", prometheusRoutes());

  app.use(requestId());
  app.use(traceHeaders());
  app.use(jsonMethodNotAllowed(routes));
  app.use(async (c, next) => {
    c.set("plane", planeFor(c.env));
    c.set("admin", adminFor(c.env));
    await next();
  });
  app.use(recordMetrics());
  app.route("/", routes);
  app.notFound(jsonNotFound);
  app.onError((error, c) => errorResponse(c, error));
  return app;
}
