/**
 * @module
 * The admin API the `pinion` CLI publishes and promotes through (`--target
 * https://…`): bearer-token auth against the PINION_ADMIN_TOKEN /
 * PINION_ADMIN_TOKENS secrets, compared in constant time, the matching
 * token's name recorded as the actor in the audit log; without a configured
 * token the whole API is disabled. Publishing and promotion routes are
 * sub-apps of their own.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { disabled } from "../../core/errors";
import { secretsEqual, tokenAuth } from "../auth";
import { errorResponse } from "../errors";
import type { AdminVariables } from "./context";
import { metricsRoutes } from "./metrics-routes";
import { promotionRoutes } from "./promotion-routes";
import { rolloutRoutes } from "./rollout-routes";
import { publishRoutes } from "./publish-routes";

export {
  parseAdminTokens,
  type AdminContext,
  type AdminToken,
  type AdminVariables,
} from "./context";

type Ctx = Context<{ Variables: AdminVariables }>;

/**
 * The admin token check: every configured token is compared (in constant
 * time), so timing tells nothing about which, if any, matched; the match's
 * name becomes the actor. No configured token disables the API.
 */
export function requireToken(): MiddlewareHandler<{ Variables: AdminVariables }> {
  const check = tokenAuth(
    "pinion-admin",
    "missing or wrong admin token (Authorization: Bearer …)",
    async (given, c) => {
      const tokens = (c as Ctx).var.admin.tokens;
      const equal = await Promise.all(tokens.map((t) => secretsEqual(given, t.token)));
      const actor = tokens.find((_, i) => equal[i])?.name;
      if (actor !== undefined) c.set("actor", actor);
      return actor !== undefined;
    },
  );
  return async (c, next) => {
    if (c.var.admin.tokens.length === 0) {
      throw disabled("the admin API is disabled: set the PINION_ADMIN_TOKEN secret to enable it");
    }
    return check(c, next);
  };
}

export function adminRoutes(): Hono<{ Variables: AdminVariables }> {
  const app = new Hono<{ Variables: AdminVariables }>();
  app.use("*", requireToken());
  app.route("/", publishRoutes());
  app.route("/", promotionRoutes());
  app.route("/", metricsRoutes());
  app.route("/", rolloutRoutes());
  app.onError((error, c) => errorResponse(c, error));
  return app;
}
