/**
 * @module
 * One Durable Object per model: the aggregate of every isolate's metrics
 * (the `MetricsStore` port's edge side), and the driver of the model's
 * rollout (its alarm; see `core/serving/rollout.ts`).
 *
 * Why a Durable Object and not Analytics Engine: AE is write-only from a
 * worker (reads go through its SQL API over HTTP with an account token) and
 * neither `wrangler dev` nor the vitest pool can read it back, so the rollout
 * gates, `GET …/stats` and `/metrics` could not be tested end to end. A
 * Durable Object runs in both, serialises writes from all isolates without
 * locks, and keeps its data in SQLite next to the alarm that reads it. One per
 * model keeps each one's write rate to that model's traffic divided by the
 * isolates' flush interval.
 *
 * Storage: `totals` holds each series' running totals (what Triton's
 * statistics and Prometheus counters report); `minutes` the 1-minute buckets,
 * kept `RETENTION_MINUTES` (25 h).
 */
import { DurableObject } from "cloudflare:workers";
import {
  addCounters,
  emptyCounters,
  minuteOf,
  MINUTE_MS,
  RETENTION_MINUTES,
  type Counters,
  type MetricsEntry,
  type MetricsQuery,
  type MetricsReport,
  type SeriesReport,
} from "../core/serving/metrics";

export class ModelMonitor extends DurableObject<Env> {
  private lastPrunedMinute = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      `CREATE TABLE IF NOT EXISTS totals (version INTEGER, alias TEXT, data TEXT, PRIMARY KEY (version, alias));
       CREATE TABLE IF NOT EXISTS minutes (minute INTEGER, version INTEGER, alias TEXT, data TEXT, PRIMARY KEY (minute, version, alias));`,
    );
  }

  /** Adds an isolate's buffered counters (RPC). Synchronous storage: one write cannot interleave with another. */
  record(entries: MetricsEntry[]): void {
    const sql = this.ctx.storage.sql;
    for (const entry of entries) {
      const total = sql
        .exec<{ data: string }>(
          "SELECT data FROM totals WHERE version = ? AND alias = ?",
          entry.version,
          entry.alias,
        )
        .toArray()[0];
      const sum = addCounters(
        total ? (JSON.parse(total.data) as Counters) : emptyCounters(),
        entry.counters,
      );
      sql.exec(
        "INSERT OR REPLACE INTO totals (version, alias, data) VALUES (?, ?, ?)",
        entry.version,
        entry.alias,
        JSON.stringify(sum),
      );
      const bucket = sql
        .exec<{ data: string }>(
          "SELECT data FROM minutes WHERE minute = ? AND version = ? AND alias = ?",
          entry.minute,
          entry.version,
          entry.alias,
        )
        .toArray()[0];
      const inMinute = addCounters(
        bucket ? (JSON.parse(bucket.data) as Counters) : emptyCounters(),
        entry.counters,
      );
      sql.exec(
        "INSERT OR REPLACE INTO minutes (minute, version, alias, data) VALUES (?, ?, ?, ?)",
        entry.minute,
        entry.version,
        entry.alias,
        JSON.stringify(inMinute),
      );
    }
    const now = minuteOf(Date.now());
    if (now !== this.lastPrunedMinute) {
      this.lastPrunedMinute = now;
      sql.exec("DELETE FROM minutes WHERE minute < ?", now - RETENTION_MINUTES);
    }
  }

  /** Running totals, or the minute buckets from `query.sinceMs` on, per series (RPC). */
  report(model: string, query: MetricsQuery): MetricsReport {
    const sql = this.ctx.storage.sql;
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (query.version !== undefined) {
      where.push("version = ?");
      args.push(query.version);
    }
    if (query.alias !== undefined) {
      where.push("alias = ?");
      args.push(query.alias);
    }
    const at = Date.now();
    if (query.sinceMs === undefined) {
      const rows = sql
        .exec<{ version: number; alias: string; data: string }>(
          `SELECT version, alias, data FROM totals${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY version, alias`,
          ...args,
        )
        .toArray();
      return {
        model,
        sinceMs: null,
        at,
        series: rows.map((r) => ({
          version: r.version,
          alias: r.alias,
          counters: JSON.parse(r.data) as Counters,
        })),
      };
    }
    const since = minuteOf(query.sinceMs);
    const rows = sql
      .exec<{ minute: number; version: number; alias: string; data: string }>(
        `SELECT minute, version, alias, data FROM minutes WHERE ${["minute >= ?", ...where].join(" AND ")} ORDER BY version, alias, minute`,
        since,
        ...args,
      )
      .toArray();
    const series = new Map<string, SeriesReport>();
    for (const row of rows) {
      const key = `${row.version}/${row.alias}`;
      let s = series.get(key);
      if (!s) {
        s = { version: row.version, alias: row.alias, counters: emptyCounters() };
        if (query.minutes) s.minutes = [];
        series.set(key, s);
      }
      const counters = JSON.parse(row.data) as Counters;
      addCounters(s.counters, counters);
      s.minutes?.push({ minute: row.minute, counters });
    }
    return { model, sinceMs: since * MINUTE_MS, at, series: [...series.values()] };
  }
}
