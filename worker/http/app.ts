/**
 * @module
 * The HTTP application: request ids, timings, OIP routes, JSON errors for
 * everything (unknown paths 404, wrong methods 405). The data plane is supplied
 * per environment by the caller, so the app itself holds no bindings.
 */
import { Hono, type Env, type MiddlewareHandler, type NotFoundHandler, type Schema } from "hono";
import { methodNotAllowed } from "hono/method-not-allowed";
import { requestId } from "hono/request-id";
import type { DataPlane } from "../serving/data-plane";
import { adminRoutes, type AdminContext } from "./admin-routes";
import { errorResponse } from "./errors";
import { serverTiming } from "./middleware";
import { oipRoutes, type PlaneVariables } from "./oip-routes";

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

  app.use(requestId());
  app.use(serverTiming());
  app.use(jsonMethodNotAllowed(routes));
  app.use(async (c, next) => {
    c.set("plane", planeFor(c.env));
    c.set("admin", adminFor(c.env));
    await next();
  });
  app.route("/", routes);
  app.notFound(jsonNotFound);
  app.onError((error, c) => errorResponse(c, error));
  return app;
}
