/**
 * @module
 * Progressive delivery: a rollout steps an alias's canary weight for a
 * candidate version (1 → 5 → 25 → 50 → 100 % by default), judging at each
 * step the candidate's live metrics against the baseline version's over the
 * same window, and rolls the alias back to its state before the rollout on a
 * breach. Driven server-side (`tick`, from a Durable Object alarm at the
 * edge), from the state recorded in the registry (`core/registry/rollout.ts`),
 * so it goes on when the CLI exits and resumes after a restart.
 *
 * Every alias change is a compare-and-swap against the entry the rollout last
 * set: a manual promote or rollback in between takes precedence, and the
 * rollout stops (recorded). Steps, checks and decisions are audit records in
 * the alias's log, each carrying the rollout's id.
 *
 * A window starts when its step is applied; the totals at that moment are
 * kept (`snapshot`), and the window's counts are the totals since. Requests
 * reach the totals within the isolates' METRICS_FLUSH_MS, and a step reaches
 * every isolate within ALIAS_TTL_MS, so a window's first seconds may count a
 * few requests from before it: both skew toward the baseline, never against it.
 */
import { conflict, invalid, notFound, refused } from "../errors";
import type { AliasStore } from "../registry/alias-store";
import { entriesEqual, single, WEIGHT_TOTAL, type AliasEntry } from "../registry/aliases";
import type { AliasChange, GateResult } from "../registry/promotion";
import {
  isActive,
  ROLLOUT_FORMAT,
  rolloutPolicySchema,
  type RolloutPolicy,
  type RolloutState,
  type RolloutStore,
} from "../registry/rollout";
import { gatesPassed } from "./gates";
import {
  emptyCounters,
  errorRate,
  quantileMs,
  shadowAgreement,
  subtractCounters,
  type Counters,
  type MetricsReport,
} from "./metrics";

export const DEFAULT_POLICY: RolloutPolicy = {
  steps: [1, 5, 25, 50, 100],
  intervalMs: 5 * 60_000,
  maxErrorRate: 0.005,
  maxLatencyRatio: 1.5,
  minAgreement: 0.99,
  minRequests: 200,
  shadowFirstMs: 0,
};

export interface RolloutPorts {
  aliases: AliasStore;
  rollouts: RolloutStore;
  /** A model's published versions. */
  versions(model: string): Promise<number[]>;
  /** The model's running totals for one alias (every version behind it). */
  totals(model: string, alias: string): Promise<MetricsReport>;
  /** The promotion gates of `candidate` against `baseline` (golden set, top-1 agreement). */
  gates(
    model: string,
    candidate: number,
    baseline: number,
    minAgreement: number,
  ): Promise<GateResult[]>;
  now(): number;
}

export interface StartRequest {
  alias: string;
  version: number;
  policy?: Partial<RolloutPolicy>;
  actor: string;
  reason?: string;
}

/** What the admin API drives rollouts through (at the edge: the model's Durable Object). */
export interface RolloutControl {
  start(model: string, request: StartRequest): Promise<RolloutState>;
  status(model: string): Promise<RolloutState | null>;
  pause(model: string, actor: string): Promise<RolloutState>;
  resume(model: string, actor: string): Promise<RolloutState>;
  abort(model: string, actor: string): Promise<RolloutState>;
}

/** How often an active rollout is looked at: often enough to catch a breach early in a window. */
export function tickMs(policy: RolloutPolicy): number {
  return Math.min(30_000, Math.max(1000, Math.floor(policy.intervalMs / 5)));
}

class Superseded extends Error {
  constructor(readonly revision: number) {
    super("the alias changed under the rollout");
  }
}

const percentOf = (state: RolloutState) => (state.step < 0 ? 0 : state.policy.steps[state.step]!);

/** The alias entry for a canary step (100: the candidate alone). */
export function stepEntry(baseline: number, candidate: number, percent: number): AliasEntry {
  if (percent >= 100) return single(candidate);
  const weight = Math.min(
    WEIGHT_TOTAL - 1,
    Math.max(1, Math.round((percent / 100) * WEIGHT_TOTAL)),
  );
  return {
    split: [
      { version: baseline, weight: WEIGHT_TOTAL - weight },
      { version: candidate, weight },
    ],
  };
}

const ratio = (n: number) => `${(n * 100).toFixed(2)}%`;

/**
 * The checks of one window: the candidate's counts (and the baseline's, in the
 * same window) against the policy. `enough` says whether the window has the
 * traffic to be judged; a failed check only counts then.
 */
export function evaluate(
  state: RolloutState,
  candidate: Counters,
  baseline: Counters,
): { enough: boolean; checks: GateResult[] } {
  const p = state.policy;
  const checks: GateResult[] = [];
  if (
    state.status === "shadowing" ||
    (state.status === "paused" && state.pausedFrom === "shadowing")
  ) {
    const s = candidate.shadow;
    const runs = s.samples + s.errors;
    const failed = runs === 0 ? 0 : s.errors / runs;
    checks.push({
      gate: "shadow-errors",
      passed: failed <= p.maxErrorRate,
      detail: `${s.errors} of ${runs} shadow runs failed (${ratio(failed)}; at most ${ratio(p.maxErrorRate)})`,
      measured: failed,
      threshold: p.maxErrorRate,
    });
    const agreement = shadowAgreement(s);
    checks.push({
      gate: "agreement",
      passed: agreement >= p.minAgreement,
      ...(s.top1Rows === 0 ? { skipped: true } : {}),
      detail: `top-1 agreement with version ${state.baseline} on ${s.top1Rows} shadowed rows: ${ratio(agreement)} (at least ${ratio(p.minAgreement)})`,
      measured: agreement,
      threshold: p.minAgreement,
    });
    return { enough: runs >= p.minRequests, checks };
  }
  const rate = errorRate(candidate);
  const baseRate = errorRate(baseline);
  checks.push({
    gate: "error-rate",
    // The candidate is not blamed for failures the baseline has as often (bad input, say).
    passed: rate <= p.maxErrorRate || rate <= baseRate,
    detail:
      `${candidate.requests - candidate.success} of ${candidate.requests} candidate requests failed (${ratio(rate)}; ` +
      `at most ${ratio(p.maxErrorRate)}; baseline ${ratio(baseRate)} of ${baseline.requests})`,
    measured: rate,
    threshold: p.maxErrorRate,
  });
  const p99 = quantileMs(candidate.latency, 0.99);
  if (p.maxP99Ms !== undefined) {
    checks.push({
      gate: "p99",
      passed: p99 === undefined || p99 <= p.maxP99Ms,
      detail: `candidate p99 ${p99?.toFixed(1) ?? "-"} ms (at most ${p.maxP99Ms} ms)`,
      ...(p99 !== undefined ? { measured: p99 } : {}),
      threshold: p.maxP99Ms,
    });
  }
  if (p.maxLatencyRatio !== undefined) {
    const base = quantileMs(baseline.latency, 0.99);
    // Compared only when the baseline had the traffic to have a p99 of its own.
    const comparable =
      p99 !== undefined && base !== undefined && baseline.requests >= p.minRequests;
    const r = comparable ? p99 / Math.max(base, 0.001) : undefined;
    checks.push({
      gate: "latency-ratio",
      passed: r === undefined || r <= p.maxLatencyRatio,
      ...(r === undefined ? { skipped: true } : {}),
      detail:
        r === undefined
          ? `baseline p99 not comparable (${baseline.requests} baseline requests in the window)`
          : `candidate p99 ${p99!.toFixed(1)} ms / baseline p99 ${base!.toFixed(1)} ms = ${r.toFixed(2)} (at most ${p.maxLatencyRatio})`,
      ...(r !== undefined ? { measured: r } : {}),
      threshold: p.maxLatencyRatio,
    });
  }
  return { enough: candidate.requests >= p.minRequests, checks };
}

export class RolloutDriver {
  constructor(private readonly ports: RolloutPorts) {}

  status(model: string): Promise<RolloutState | null> {
    return this.ports.rollouts.read(model).then((s) => s.state);
  }

  /**
   * Starts a rollout: checks the request, runs the promotion gates (refused,
   * nothing written, when they fail), then applies the first step (or the
   * shadow phase) and records the state.
   */
  async start(model: string, request: StartRequest): Promise<RolloutState> {
    const parsed = rolloutPolicySchema.safeParse({ ...DEFAULT_POLICY, ...request.policy });
    if (!parsed.success) throw invalid(`rollout policy: ${parsed.error.issues[0]!.message}`);
    const policy = parsed.data;
    const versions = await this.ports.versions(model);
    if (!versions.includes(request.version)) {
      throw notFound(`model '${model}' has no version ${request.version}`);
    }
    const existing = await this.ports.rollouts.read(model);
    if (isActive(existing.state)) {
      throw conflict(
        `model '${model}' already has a rollout in progress (version ${existing.state!.candidate} on '${existing.state!.alias}'): pause, resume or abort it first`,
      );
    }
    const current = await this.ports.aliases.current(model);
    const before = current.document.aliases[request.alias];
    if (!before) {
      throw invalid(
        `alias '${request.alias}' does not exist yet: promote a first version before rolling out`,
      );
    }
    if (before.split.length !== 1) {
      throw invalid(
        `alias '${request.alias}' is in the middle of a canary; promote or roll it back before a rollout`,
      );
    }
    const baseline = before.split[0]!.version;
    if (baseline === request.version) {
      throw invalid(`version ${request.version} already serves all of alias '${request.alias}'`);
    }
    const gates = await this.ports.gates(model, request.version, baseline, policy.minAgreement);
    if (!gatesPassed(gates)) {
      const failed = gates.filter((g) => !g.passed).map((g) => `${g.gate}: ${g.detail}`);
      throw refused(`gates failed; no rollout started: ${failed.join("; ")}`, { gates });
    }
    const now = this.ports.now();
    const shadowing = policy.shadowFirstMs > 0;
    const state: RolloutState = {
      format: ROLLOUT_FORMAT,
      id: crypto.randomUUID(),
      model,
      alias: request.alias,
      candidate: request.version,
      baseline,
      before,
      policy,
      actor: request.actor,
      ...(request.reason ? { reason: request.reason } : {}),
      status: shadowing ? "shadowing" : "stepping",
      step: shadowing ? -1 : 0,
      expected: before,
      windowStartedAt: now,
      snapshot: { candidate: emptyCounters(), baseline: emptyCounters() },
      startedAt: now,
      updatedAt: now,
    };
    const to = shadowing
      ? { split: before.split, shadow: { version: request.version, fraction: 1 } }
      : stepEntry(baseline, request.version, policy.steps[0]!);
    try {
      await this.change(state, "promote", to, "start", gates, this.describe(state, "started"));
    } catch (error) {
      if (error instanceof Superseded)
        throw conflict("the alias changed while the rollout started; try again");
      throw error;
    }
    state.expected = to;
    await this.openWindow(state);
    if (!(await this.ports.rollouts.write(state, existing.etag))) {
      throw conflict("another rollout of this model started at the same time");
    }
    return state;
  }

  /**
   * One look at an active rollout: stop if the alias changed under it, roll
   * back on a breach, advance when the window is over and healthy, wait when
   * it lacks traffic. Returns the state and when to look next (none: done).
   */
  async tick(model: string): Promise<{ state: RolloutState | null; nextAt?: number }> {
    const { state, etag } = await this.ports.rollouts.read(model);
    if (!state || !isActive(state)) return { state };
    if (state.status === "paused") return { state };
    const now = this.ports.now();
    const next = () => now + tickMs(state.policy);
    try {
      const current = (await this.ports.aliases.current(model)).document;
      if (!entriesEqual(current.aliases[state.alias] ?? null, state.expected)) {
        throw new Superseded(current.revision);
      }
      const { candidate, baseline } = await this.windowCounts(state);
      const { enough, checks } = evaluate(state, candidate, baseline);
      const failed = checks.filter((c) => !c.passed && !c.skipped);
      state.lastCheck = { at: now, decision: "watch", checks };
      if (enough && failed.length > 0) {
        await this.change(
          state,
          "rollback",
          state.before,
          "rollback",
          checks,
          this.describe(state, `rolled back: ${failed.map((c) => c.detail).join("; ")}`),
        );
        state.expected = state.before;
        this.finish(state, "rolled-back", failed.map((c) => `${c.gate}: ${c.detail}`).join("; "));
        state.lastCheck.decision = "rollback";
      } else if (now - state.windowStartedAt >= this.windowMs(state)) {
        if (!enough) {
          state.lastCheck.decision = "wait";
          if (state.lastWaitAt === undefined || now - state.lastWaitAt >= state.policy.intervalMs) {
            state.lastWaitAt = now;
            await this.change(
              state,
              "check",
              state.expected,
              "wait",
              checks,
              this.describe(
                state,
                `waiting: fewer than ${state.policy.minRequests} candidate requests in the window`,
              ),
            );
          }
        } else {
          state.lastCheck.decision = "advance";
          await this.advance(state, checks);
        }
      }
    } catch (error) {
      if (!(error instanceof Superseded)) throw error;
      await this.superseded(state, error.revision);
    }
    state.updatedAt = now;
    if (!(await this.ports.rollouts.write(state, etag))) {
      // Changed by someone else meanwhile (a pause, an abort): look again on their state.
      return { state: (await this.ports.rollouts.read(model)).state, nextAt: now };
    }
    return isActive(state) ? { state, nextAt: next() } : { state };
  }

  async pause(model: string, actor: string): Promise<RolloutState> {
    return this.control(model, actor, async (state) => {
      if (state.status === "paused") return;
      state.pausedFrom = state.status as "shadowing" | "stepping";
      state.status = "paused";
      await this.change(
        state,
        "check",
        state.expected,
        "paused",
        [],
        this.describe(state, `paused by ${actor}`),
      );
    });
  }

  /** Resumes a paused rollout with a fresh window (what happened while paused is not judged). */
  async resume(model: string, actor: string): Promise<RolloutState> {
    return this.control(model, actor, async (state) => {
      if (state.status !== "paused") return;
      state.status = state.pausedFrom ?? "stepping";
      delete state.pausedFrom;
      await this.change(
        state,
        "check",
        state.expected,
        "resumed",
        [],
        this.describe(state, `resumed by ${actor}`),
      );
      await this.openWindow(state);
    });
  }

  /** Aborts: puts the alias back as it was before the rollout. */
  async abort(model: string, actor: string): Promise<RolloutState> {
    return this.control(model, actor, async (state) => {
      await this.change(
        state,
        "rollback",
        state.before,
        "aborted",
        [],
        this.describe(state, `aborted by ${actor}`),
      );
      state.expected = state.before;
      this.finish(state, "aborted", `aborted by ${actor}`);
    });
  }

  private async control(
    model: string,
    actor: string,
    act: (state: RolloutState) => Promise<void>,
  ): Promise<RolloutState> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const { state, etag } = await this.ports.rollouts.read(model);
      if (!state || !isActive(state)) throw notFound(`model '${model}' has no rollout in progress`);
      try {
        await act(state);
      } catch (error) {
        if (!(error instanceof Superseded)) throw error;
        await this.superseded(state, error.revision);
      }
      state.updatedAt = this.ports.now();
      if (await this.ports.rollouts.write(state, etag)) return state;
    }
    throw conflict(`the rollout of '${model}' kept changing; try again (${actor})`);
  }

  private async advance(state: RolloutState, checks: GateResult[]): Promise<void> {
    const step = state.step + 1;
    const percent = state.policy.steps[step]!;
    const to = stepEntry(state.baseline, state.candidate, percent);
    state.step = step;
    state.status = "stepping";
    await this.change(
      state,
      "promote",
      to,
      "advance",
      checks,
      this.describe(state, `step ${step + 1} of ${state.policy.steps.length}: ${percent}%`),
    );
    state.expected = to;
    delete state.lastWaitAt;
    if (percent >= 100) {
      this.finish(state, "succeeded", `version ${state.candidate} serves all of '${state.alias}'`);
      return;
    }
    await this.openWindow(state);
  }

  /** A manual change won: the rollout stops, leaving the alias as that change made it (recorded). */
  private async superseded(state: RolloutState, revision: number): Promise<void> {
    const record = await this.ports.aliases.record(state.model, revision);
    const by = record
      ? `${record.action} by ${record.actor} (revision ${revision})`
      : `revision ${revision}`;
    const outcome = `stopped: alias '${state.alias}' was changed by ${by}, which takes precedence`;
    await this.ports.aliases.commit(state.model, async (snapshot) => {
      const entry = snapshot.document.aliases[state.alias] ?? null;
      return {
        change: this.auditChange(
          state,
          snapshot.document.revision,
          "check",
          entry,
          entry,
          "superseded",
        ),
        details: {
          actor: `${state.actor} (rollout)`,
          reason: this.describe(state, outcome),
          forced: false,
          gates: [],
        },
      };
    });
    this.finish(state, "superseded", outcome);
  }

  private finish(state: RolloutState, status: RolloutState["status"], outcome: string): void {
    state.status = status;
    state.outcome = outcome;
    state.endedAt = this.ports.now();
    delete state.pausedFrom;
  }

  /** Commits one alias change (or check record) only if the alias is still as the rollout left it. */
  private async change(
    state: RolloutState,
    action: AliasChange["action"],
    to: AliasEntry,
    decision: string,
    gates: GateResult[],
    reason: string,
  ): Promise<void> {
    await this.ports.aliases.commit(state.model, async (snapshot) => {
      const from = snapshot.document.aliases[state.alias] ?? null;
      if (!entriesEqual(from, state.expected)) throw new Superseded(snapshot.document.revision);
      return {
        change: this.auditChange(state, snapshot.document.revision, action, from, to, decision),
        details: { actor: `${state.actor} (rollout)`, reason, forced: false, gates },
      };
    });
  }

  private auditChange(
    state: RolloutState,
    baseRevision: number,
    action: AliasChange["action"],
    from: AliasEntry | null,
    to: AliasEntry | null,
    decision: string,
  ): AliasChange {
    return {
      model: state.model,
      alias: state.alias,
      action,
      baseRevision,
      from,
      to,
      // A check is recorded though it changes nothing.
      noop: false,
      candidate: state.candidate,
      current: state.baseline,
      rollout: {
        id: state.id,
        candidate: state.candidate,
        step: state.step,
        percent: percentOf(state),
        decision,
      },
    };
  }

  private describe(state: RolloutState, what: string): string {
    return `rollout ${state.id.slice(0, 8)} of version ${state.candidate}: ${what}`.slice(0, 1000);
  }

  private windowMs(state: RolloutState): number {
    return state.status === "shadowing" ? state.policy.shadowFirstMs : state.policy.intervalMs;
  }

  private async totalsOf(
    state: RolloutState,
  ): Promise<{ candidate: Counters; baseline: Counters }> {
    const report = await this.ports.totals(state.model, state.alias);
    const of = (version: number) =>
      report.series.find((s) => s.version === version && s.alias === state.alias)?.counters ??
      emptyCounters();
    return { candidate: of(state.candidate), baseline: of(state.baseline) };
  }

  private async openWindow(state: RolloutState): Promise<void> {
    state.windowStartedAt = this.ports.now();
    state.snapshot = await this.totalsOf(state);
  }

  private async windowCounts(
    state: RolloutState,
  ): Promise<{ candidate: Counters; baseline: Counters }> {
    const now = await this.totalsOf(state);
    return {
      candidate: subtractCounters(now.candidate, state.snapshot.candidate as Counters),
      baseline: subtractCounters(now.baseline, state.snapshot.baseline as Counters),
    };
  }
}
