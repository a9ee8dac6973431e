/**
 * @module
 * The admin API's live metrics: a model's series per version and alias, as
 * running totals or, with `since`, the 1-minute buckets from then on (what
 * `pinion stats --since` and charts read). `since` is a duration back from
 * now (`15m`, `2h`, at most 24 h) or a time (ISO 8601 or ms since the epoch).
 */
import { Hono } from "hono";
import { invalid, notImplemented } from "../../core/errors";
import { ALIAS_NAME_PATTERN } from "../../core/registry/aliases";
import { checkModelName, VERSION_PATTERN } from "../../core/registry/names";
import { parseDuration, RETENTION_MINUTES, MINUTE_MS } from "../../core/serving/metrics";
import type { AdminVariables } from "./context";

/** `since` as ms since the epoch: a duration back from `now`, or a time. */
export function parseSince(text: string, now: number): number {
  // 12 digits or more is a time in ms (after 2001); fewer, a duration in ms.
  const back = /^\d{12,}$/.test(text) ? undefined : parseDuration(text);
  const at = back !== undefined ? now - back : /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(at)) {
    throw invalid(
      `since must be a duration back from now (15m, 2h) or a time (ISO 8601, ms since the epoch), not ${JSON.stringify(text.slice(0, 40))}`,
    );
  }
  return Math.max(at, now - RETENTION_MINUTES * MINUTE_MS);
}

export function metricsRoutes(): Hono<{ Variables: AdminVariables }> {
  const app = new Hono<{ Variables: AdminVariables }>();

  app.get("/models/:name/metrics", async (c) => {
    const name = checkModelName(c.req.param("name"));
    const store = c.var.admin.metrics;
    if (!store) throw notImplemented("this server keeps no live metrics");
    await c.var.admin.registry.requireModel(name);
    const since = c.req.query("since");
    const version = c.req.query("version");
    const alias = c.req.query("alias");
    if (version !== undefined && !VERSION_PATTERN.test(version)) {
      throw invalid("version must be a version number");
    }
    if (alias !== undefined && !ALIAS_NAME_PATTERN.test(alias)) throw invalid("invalid alias");
    return c.json(
      await store.read(name, {
        ...(since !== undefined ? { sinceMs: parseSince(since, Date.now()), minutes: true } : {}),
        ...(version !== undefined ? { version: Number(version) } : {}),
        ...(alias !== undefined ? { alias } : {}),
      }),
    );
  });

  return app;
}
