/**
 * @module
 * The admin API's rollouts (what `pinion rollout` calls): start one, read its
 * state, pause, resume or abort it. The rollout itself is driven server-side
 * (`core/serving/rollout.ts`, at the edge by the model's Durable Object alarm);
 * these routes translate.
 */
import { Hono } from "hono";
import { z } from "zod";
import { notImplemented } from "../../core/errors";
import { ALIAS_NAME_PATTERN, DEFAULT_ALIAS } from "../../core/registry/aliases";
import { checkModelName, versionSchema } from "../../core/registry/names";
import type { RolloutControl } from "../../core/serving/rollout";
import type { AdminVariables } from "./context";
import { jsonBody as body, smallJson } from "./json-body";

const startSchema = z.object({
  alias: z.string().regex(ALIAS_NAME_PATTERN, "invalid alias").default(DEFAULT_ALIAS),
  version: versionSchema,
  steps: z.array(z.number().gt(0).max(100)).min(1).max(20).optional(),
  intervalMs: z.number().int().min(1000).optional(),
  maxErrorRate: z.number().min(0).max(1).optional(),
  maxP99Ms: z.number().positive().optional(),
  maxLatencyRatio: z.number().positive().optional(),
  minAgreement: z.number().min(0).max(1).optional(),
  minRequests: z.number().int().min(1).optional(),
  shadowFirstMs: z.number().int().min(0).optional(),
  reason: z.string().max(1000).optional(),
});

function control(rollouts: RolloutControl | undefined): RolloutControl {
  if (!rollouts) throw notImplemented("this server drives no rollouts");
  return rollouts;
}

export function rolloutRoutes(): Hono<{ Variables: AdminVariables }> {
  const app = new Hono<{ Variables: AdminVariables }>();

  app.post("/models/:name/rollouts", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const { alias, version, reason, ...policy } = await body(c, startSchema);
    const rollouts = control(c.var.admin.rollouts);
    await c.var.admin.registry.requireModel(name);
    const state = await rollouts.start(name, {
      alias,
      version,
      policy: Object.fromEntries(Object.entries(policy).filter(([, v]) => v !== undefined)),
      actor: c.var.actor,
      ...(reason !== undefined ? { reason } : {}),
    });
    return c.json(state, 201);
  });

  app.get("/models/:name/rollout", async (c) => {
    const name = checkModelName(c.req.param("name"));
    const rollouts = control(c.var.admin.rollouts);
    await c.var.admin.registry.requireModel(name);
    return c.json({ model: name, rollout: await rollouts.status(name) });
  });

  for (const action of ["pause", "resume", "abort"] as const) {
    app.post(`/models/:name/rollout/${action}`, async (c) => {
      const name = checkModelName(c.req.param("name"));
      const rollouts = control(c.var.admin.rollouts);
      await c.var.admin.registry.requireModel(name);
      return c.json(await rollouts[action](name, c.var.actor));
    });
  }

  return app;
}
