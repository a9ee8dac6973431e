/**
 * @module
 * The admin API's promotion routes: read aliases, promote (gated), roll back,
 * read the audit log and shadow divergence. The promoter does the work; these
 * routes translate.
 */
import { Hono } from "hono";
import { z } from "zod";
import { invalid, refused } from "../../core/errors";
import { ALIAS_NAME_PATTERN, DEFAULT_ALIAS } from "../../core/registry/aliases";
import { checkModelName, versionSchema } from "../../core/registry/names";
import type { AdminVariables } from "./context";
import { jsonBody as body, smallJson } from "./json-body";

const aliasField = z.string().regex(ALIAS_NAME_PATTERN, "invalid alias").default(DEFAULT_ALIAS);

const promotionSchema = z.object({
  alias: aliasField,
  version: versionSchema,
  canary: z.number().gt(0).lt(100).optional(),
  shadow: z.number().gt(0).max(100).optional(),
  reason: z.string().max(1000).optional(),
  minAgreement: z.number().min(0).max(1).optional(),
  force: z.boolean().default(false),
  dryRun: z.boolean().default(false),
});

const rollbackSchema = z.object({
  alias: aliasField,
  reason: z.string().max(1000).optional(),
  dryRun: z.boolean().default(false),
});

export function promotionRoutes(): Hono<{ Variables: AdminVariables }> {
  const app = new Hono<{ Variables: AdminVariables }>();

  app.get("/models/:name/aliases", async (c) => {
    const name = checkModelName(c.req.param("name"));
    await c.var.admin.registry.requireModel(name);
    const { document } = await c.var.admin.registry.aliases.read(name);
    return c.json(document);
  });

  // Applied, no-op and dry-run outcomes are answers; a change the gates refused is an error.
  app.post("/models/:name/promotions", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const request = await body(c, promotionSchema);
    const outcome = await c.var.admin.promoter.promote(name, {
      alias: request.alias,
      version: request.version,
      ...(request.canary !== undefined ? { canaryPercent: request.canary } : {}),
      ...(request.shadow !== undefined ? { shadowPercent: request.shadow } : {}),
      ...(request.reason !== undefined ? { reason: request.reason } : {}),
      ...(request.minAgreement !== undefined ? { minAgreement: request.minAgreement } : {}),
      force: request.force,
      dryRun: request.dryRun,
      actor: c.var.actor,
    });
    if (outcome.status === "gates-failed") {
      const failed = outcome.gates.filter((g) => !g.passed).map((g) => `${g.gate}: ${g.detail}`);
      throw refused(`gates failed; alias untouched: ${failed.join("; ")}`, { ...outcome });
    }
    return c.json(outcome);
  });

  app.post("/models/:name/rollbacks", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const request = await body(c, rollbackSchema);
    return c.json(
      await c.var.admin.promoter.rollback(name, {
        alias: request.alias,
        ...(request.reason !== undefined ? { reason: request.reason } : {}),
        dryRun: request.dryRun,
        actor: c.var.actor,
      }),
    );
  });

  app.get("/models/:name/history", async (c) => {
    const name = checkModelName(c.req.param("name"));
    const limitParam = c.req.query("limit");
    const limit = limitParam === undefined ? undefined : Number(limitParam);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
      throw invalid("limit must be a positive integer");
    }
    await c.var.admin.registry.requireModel(name);
    return c.json({
      model: name,
      records: await c.var.admin.registry.aliases.history(name, limit),
    });
  });

  app.get("/models/:name/shadow", async (c) => {
    const name = checkModelName(c.req.param("name"));
    await c.var.admin.registry.requireModel(name);
    return c.json({ model: name, reports: await c.var.admin.registry.shadowStats.report(name) });
  });

  return app;
}
