/**
 * @module
 * A rollout's recorded state: `models/{name}/rollout.json`, the one rollout a
 * model has (active, or the last one finished), written only with
 * compare-and-swap on its etag so that two drivers can never both act on it.
 * What the driver (`core/serving/rollout.ts`) reads after a restart to go on
 * where it was. Its steps, checks and decisions are audit records in the
 * alias log (`alias-store.ts`), with the rollout's id.
 */
import { z } from "zod";
import { internal } from "../errors";
import { aliasEntrySchema } from "./aliases";
import { rolloutKey } from "./layout";
import { checkModelName, versionSchema } from "./names";
import { gateResultSchema } from "./promotion";
import type { ObjectStore } from "./store";

export const ROLLOUT_FORMAT = "pinion.rollout/1";

/** The thresholds and pace a rollout is started with (`pinion rollout`'s flags). */
export const rolloutPolicySchema = z
  .object({
    /** Canary percentages, ascending, the last 100. */
    steps: z.array(z.number().gt(0).max(100)).min(1).max(20),
    /** How long each step (and the shadow phase) runs before it is judged, ms. */
    intervalMs: z
      .number()
      .int()
      .min(1000)
      .max(7 * 86_400_000),
    /** Highest share of the candidate's requests that may fail (non-2xx), 0–1. */
    maxErrorRate: z.number().min(0).max(1),
    /** Highest candidate p99 latency, ms. */
    maxP99Ms: z.number().positive().optional(),
    /** Highest candidate p99 / baseline p99. */
    maxLatencyRatio: z.number().positive().optional(),
    /** Lowest top-1 agreement: the gate before the first step, and the shadow phase's check. */
    minAgreement: z.number().min(0).max(1),
    /** Candidate requests (shadow runs in the shadow phase) a window needs before it is judged. */
    minRequests: z.number().int().min(1),
    /** Mirror all of the alias's traffic to the candidate this long before the first step, ms (0: no shadow phase). */
    shadowFirstMs: z
      .number()
      .int()
      .min(0)
      .max(7 * 86_400_000),
  })
  .refine((p) => p.steps.every((s, i) => i === 0 || s > p.steps[i - 1]!), {
    message: "steps must be ascending",
  })
  .refine((p) => p.steps.at(-1) === 100, { message: "the last step must be 100" });
export type RolloutPolicy = z.infer<typeof rolloutPolicySchema>;

export const ROLLOUT_ACTIVE = ["shadowing", "stepping", "paused"] as const;
export const ROLLOUT_STATUSES = [
  ...ROLLOUT_ACTIVE,
  /** Reached 100 %. */
  "succeeded",
  /** A check failed: the alias was put back as it was before the rollout. */
  "rolled-back",
  /** Aborted by a person: the alias was put back. */
  "aborted",
  /** A manual change to the alias took precedence; the alias was left as that change made it. */
  "superseded",
] as const;
export type RolloutStatus = (typeof ROLLOUT_STATUSES)[number];

/** A window's running totals at its start, for the candidate and the baseline (see `metrics.ts`'s Counters). */
const snapshotSchema = z.object({ candidate: z.unknown(), baseline: z.unknown() });

export const rolloutStateSchema = z.object({
  format: z.literal(ROLLOUT_FORMAT),
  id: z.string().min(1).max(64),
  model: z.string(),
  alias: z.string(),
  candidate: versionSchema,
  /** The version serving the alias when the rollout started. */
  baseline: versionSchema,
  /** The alias before the rollout: what a rollback restores. */
  before: aliasEntrySchema,
  policy: rolloutPolicySchema,
  actor: z.string().max(128),
  reason: z.string().max(1000).optional(),
  status: z.enum(ROLLOUT_STATUSES),
  /** While paused: the status to resume to. */
  pausedFrom: z.enum(["shadowing", "stepping"]).optional(),
  /** Index into policy.steps of the step applied (-1 while shadowing). */
  step: z.number().int().min(-1),
  /** The alias as the rollout last set it: any other state means someone else changed it. */
  expected: aliasEntrySchema,
  /** When the current window started (ms since the epoch), and the totals then. */
  windowStartedAt: z.number(),
  snapshot: snapshotSchema,
  /** When the window was last judged with too little traffic (so a wait is recorded once per interval). */
  lastWaitAt: z.number().optional(),
  startedAt: z.number(),
  updatedAt: z.number(),
  endedAt: z.number().optional(),
  /** The last check: what was measured and decided. */
  lastCheck: z
    .object({
      at: z.number(),
      decision: z.string(),
      checks: z.array(gateResultSchema),
    })
    .optional(),
  /** Why it ended, for rolled-back, aborted and superseded rollouts. */
  outcome: z.string().max(2000).optional(),
});
export type RolloutState = z.infer<typeof rolloutStateSchema>;

export const isActive = (state: RolloutState | null) =>
  state !== null && (ROLLOUT_ACTIVE as readonly string[]).includes(state.status);

export interface RolloutSnapshot {
  state: RolloutState | null;
  etag: string | null;
}

export class RolloutStore {
  constructor(private readonly store: ObjectStore) {}

  async read(model: string): Promise<RolloutSnapshot> {
    checkModelName(model);
    const object = await this.store.get(rolloutKey(model));
    if (!object) return { state: null, etag: null };
    try {
      return {
        state: rolloutStateSchema.parse(JSON.parse(await object.text())),
        etag: object.etag,
      };
    } catch (error) {
      throw internal(`${rolloutKey(model)} is corrupt: ${(error as Error).message}`, error);
    }
  }

  /** Writes `state` if the stored one is still `base` (null: none stored); false when it is not. */
  async write(state: RolloutState, base: string | null): Promise<string | null> {
    const written = await this.store.put(rolloutKey(state.model), JSON.stringify(state), {
      onlyIf: base ? { etagMatches: base } : { etagDoesNotMatch: "*" },
      httpMetadata: { contentType: "application/json" },
    });
    return written ? written.etag : null;
  }
}
