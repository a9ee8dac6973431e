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
import { PinionError, type ErrorKind } from "../core/errors";
import { ModelRegistry } from "../core/registry/registry";
import { RolloutStore, type RolloutState } from "../core/registry/rollout";
import { parseServingConfig } from "../core/serving/config";
import { edgeDataPlane, type DataPlane } from "../core/serving/data-plane";
import { runGates } from "../core/serving/gates";
import { RolloutDriver, type StartRequest } from "../core/serving/rollout";
import { r2Store } from "./r2-store";
import { edgeRuntimes } from "./runtimes";
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

/** A rollout call's answer across RPC: errors keep their kind (a thrown error would arrive as a plain Error). */
export type RolloutAnswer<T> =
  | { ok: true; value: T }
  | { ok: false; kind: ErrorKind; message: string; details?: Record<string, unknown> };

/** How often a write re-checks that an active rollout still has its alarm (a lost alarm is re-armed). */
const ALARM_CHECK_MS = 10_000;

export class ModelMonitor extends DurableObject<Env> {
  private lastPrunedMinute = 0;
  private lastAlarmCheck = 0;
  private driver: RolloutDriver | undefined;
  private plane: DataPlane | undefined;
  private rolloutQueue: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      `CREATE TABLE IF NOT EXISTS totals (version INTEGER, alias TEXT, data TEXT, PRIMARY KEY (version, alias));
       CREATE TABLE IF NOT EXISTS minutes (minute INTEGER, version INTEGER, alias TEXT, data TEXT, PRIMARY KEY (minute, version, alias));
       CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);`,
    );
  }

  // -- rollouts ----------------------------------------------------------------------

  startRollout(model: string, request: StartRequest): Promise<RolloutAnswer<RolloutState>> {
    return this.answer(model, async (driver) => driver.start(model, request));
  }

  rolloutStatus(model: string): Promise<RolloutAnswer<RolloutState | null>> {
    return this.answer(model, async (driver) => driver.status(model));
  }

  pauseRollout(model: string, actor: string): Promise<RolloutAnswer<RolloutState>> {
    return this.answer(model, async (driver) => driver.pause(model, actor));
  }

  resumeRollout(model: string, actor: string): Promise<RolloutAnswer<RolloutState>> {
    return this.answer(model, async (driver) => driver.resume(model, actor));
  }

  abortRollout(model: string, actor: string): Promise<RolloutAnswer<RolloutState>> {
    return this.answer(model, async (driver) => driver.abort(model, actor));
  }

  /** Drives the rollout one step: the driver says when to look next (none when it is over). */
  override async alarm(): Promise<void> {
    const model = this.meta("model");
    if (!model) return;
    let nextAt: number | undefined;
    try {
      ({ nextAt } = await this.serial(() => this.rollouts(model).tick(model)));
    } catch (error) {
      // A registry hiccup: look again soon rather than lose the rollout.
      console.error(JSON.stringify({ event: "rollout_tick_failed", model, error: String(error) }));
      nextAt = Date.now() + 5000;
    }
    this.setMeta("active", nextAt === undefined ? "" : "1");
    if (nextAt !== undefined) await this.ctx.storage.setAlarm(nextAt);
  }

  private async answer<T>(
    model: string,
    work: (driver: RolloutDriver) => Promise<T>,
  ): Promise<RolloutAnswer<T>> {
    this.setMeta("model", model);
    try {
      const value = await this.serial(() => work(this.rollouts(model)));
      const state = value as RolloutState | null;
      const active = state !== null && ["shadowing", "stepping"].includes(state.status);
      this.setMeta("active", active ? "1" : "");
      if (active && (await this.ctx.storage.getAlarm()) === null) {
        await this.ctx.storage.setAlarm(Date.now() + 1000);
      }
      return { ok: true, value };
    } catch (error) {
      if (error instanceof PinionError) {
        return {
          ok: false,
          kind: error.kind,
          message: error.message,
          ...(error.details ? { details: error.details as Record<string, unknown> } : {}),
        };
      }
      throw error;
    }
  }

  /**
   * Runs rollout work one at a time: R2 calls are I/O, during which the object takes other
   * calls, and a tick must not interleave with a pause or an abort (rollout.json's
   * compare-and-swap would catch it, but only after the tick had moved the alias).
   * Metrics writes are not queued behind it.
   */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.rolloutQueue.then(work, work);
    this.rolloutQueue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private rollouts(model: string): RolloutDriver {
    if (!this.driver) {
      const registry = new ModelRegistry(r2Store(this.env.MODELS));
      this.driver = new RolloutDriver({
        aliases: registry.aliases,
        rollouts: new RolloutStore(r2Store(this.env.MODELS)),
        versions: (name) => registry.listVersions(name),
        totals: async (name, alias) => this.report(name, { alias }),
        gates: async (name, candidate, baseline, minAgreement) => {
          // The gates run here, on the edge's runtimes, as a promotion's do in the worker.
          this.plane ??= edgeDataPlane(
            registry,
            edgeRuntimes(),
            parseServingConfig(this.env as unknown as Record<string, unknown>),
          );
          return runGates(
            this.plane,
            await this.plane.manifest(name, String(candidate)),
            await this.plane.manifest(name, String(baseline)),
            { minAgreement },
          );
        },
        now: Date.now,
      });
    }
    void model;
    return this.driver;
  }

  private meta(key: string): string | undefined {
    return this.ctx.storage.sql
      .exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key)
      .toArray()[0]?.value;
  }

  private setMeta(key: string, value: string): void {
    this.ctx.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", key, value);
  }

  /** An active rollout whose alarm was lost (it should not be, but alarms are at-least-once, not forever) is re-armed. */
  private async keepAlarm(): Promise<void> {
    const now = Date.now();
    if (now - this.lastAlarmCheck < ALARM_CHECK_MS) return;
    this.lastAlarmCheck = now;
    if (this.meta("active") === "1" && (await this.ctx.storage.getAlarm()) === null) {
      await this.ctx.storage.setAlarm(now + 1000);
    }
  }

  // -- metrics -----------------------------------------------------------------------

  /** Adds an isolate's buffered counters (RPC). Synchronous storage: one write cannot interleave with another. */
  async record(entries: MetricsEntry[]): Promise<void> {
    this.add(entries);
    await this.keepAlarm();
  }

  private add(entries: MetricsEntry[]): void {
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
