/**
 * @module
 * Promotion as a pure planner: from the current alias state (and history) and
 * a request, the change to make — or a clear error — without touching storage.
 * The CLI prints a plan for `--dry-run`; `alias-store.ts` applies one with
 * conditional writes. The audit record format lives here too.
 */
import { z } from "zod";
import { invalid, modelNotFound, notFound } from "../errors";
import {
  aliasEntrySchema,
  checkAliasName,
  entriesEqual,
  primaryVersion,
  single,
  WEIGHT_TOTAL,
  type AliasDocument,
  type AliasEntry,
} from "./aliases";

export const gateResultSchema = z.object({
  /** `golden` (the candidate reproduces its golden set) or `agreement` (top-1 vs the current target). */
  gate: z.string(),
  passed: z.boolean(),
  /** True when the gate did not apply (e.g. no current target to agree with). */
  skipped: z.boolean().optional(),
  detail: z.string(),
  measured: z.number().optional(),
  threshold: z.number().optional(),
});
export type GateResult = z.infer<typeof gateResultSchema>;

export const AUDIT_FORMAT = "pinion.audit/1";

export const auditRecordSchema = z.object({
  format: z.literal(AUDIT_FORMAT),
  model: z.string(),
  revision: z.number().int().positive(),
  at: z.iso.datetime(),
  /** Who: the admin token's name, or the local user for local R2. */
  actor: z.string().max(128),
  /** `check`: a rollout's check or decision that left the alias as it was (from = to). */
  action: z.enum(["promote", "rollback", "check"]),
  alias: z.string(),
  from: aliasEntrySchema.nullable(),
  to: aliasEntrySchema.nullable(),
  reason: z.string().max(1000).optional(),
  forced: z.boolean(),
  gates: z.array(gateResultSchema),
  /** For a rollback: the revision whose change it undid. */
  undoes: z.number().int().positive().optional(),
  /** Written by a rollout: which, at which step, and what it decided. */
  rollout: z
    .object({
      id: z.string(),
      candidate: z.number().int(),
      step: z.number().int(),
      percent: z.number(),
      decision: z.string(),
    })
    .optional(),
  /** Every alias of the model after this change: what aliases.json holds at this revision. */
  aliases: z.record(z.string(), aliasEntrySchema),
});
export type AuditRecord = z.infer<typeof auditRecordSchema>;

/** What `pinion promote` asks for. Percentages are 0–100. */
export interface PromotionRequest {
  alias: string;
  version: number;
  /** Send this share of the alias's traffic to `version`, the rest to the current version. */
  canaryPercent?: number;
  /** Mirror this share of the alias's traffic to `version`, still answering from the current one. */
  shadowPercent?: number;
}

/** A planned change to one alias: what the CLI prints and the applier writes. */
export interface AliasChange {
  model: string;
  alias: string;
  action: "promote" | "rollback" | "check";
  /** The alias state revision the plan was made against. */
  baseRevision: number;
  from: AliasEntry | null;
  to: AliasEntry | null;
  /** True when `to` equals `from`: nothing will be written. */
  noop: boolean;
  /** The version the gates check (promotions only). */
  candidate?: number;
  /** The version now carrying the alias's traffic, which the candidate must agree with. */
  current?: number;
  undoes?: number;
  /** Set by a rollout's changes and checks. */
  rollout?: AuditRecord["rollout"];
}

export interface PromotionState {
  document: AliasDocument;
  /** The model's published versions, ascending. */
  versions: readonly number[];
}

function weightOf(percent: number, flag: string): number {
  if (!Number.isFinite(percent) || percent <= 0 || percent >= 100) {
    throw invalid(`${flag} must be a percentage between 0 and 100 (exclusive), not ${percent}`);
  }
  const weight = Math.round((percent / 100) * WEIGHT_TOTAL);
  if (weight < 1 || weight >= WEIGHT_TOTAL) {
    throw invalid(`${flag} ${percent} is too close to 0 or 100; the step is 0.01 %`);
  }
  return weight;
}

export function planPromotion(state: PromotionState, request: PromotionRequest): AliasChange {
  const { document } = state;
  const alias = checkAliasName(request.alias);
  if (state.versions.length === 0) throw modelNotFound(document.model);
  if (!state.versions.includes(request.version)) {
    throw notFound(
      `model '${document.model}' has no version ${request.version} (published: ${state.versions.join(", ")})`,
    );
  }
  if (request.canaryPercent !== undefined && request.shadowPercent !== undefined) {
    throw invalid("give --canary or --shadow, not both: shadow a version first, then canary it");
  }
  const from = document.aliases[alias] ?? null;
  const current = from ? primaryVersion(from) : undefined;
  let to: AliasEntry;
  if (request.canaryPercent !== undefined) {
    const weight = weightOf(request.canaryPercent, "--canary");
    if (current === undefined) {
      throw invalid(
        `alias '${alias}' does not exist yet; a canary needs a current version: promote one first`,
      );
    }
    if (current === request.version) {
      throw invalid(`alias '${alias}' already sends most traffic to version ${request.version}`);
    }
    to = {
      split: [
        { version: current, weight: WEIGHT_TOTAL - weight },
        { version: request.version, weight },
      ],
      ...(from?.shadow && from.shadow.version !== request.version ? { shadow: from.shadow } : {}),
    };
  } else if (request.shadowPercent !== undefined) {
    const percent = request.shadowPercent;
    if (!Number.isFinite(percent) || percent <= 0 || percent > 100) {
      throw invalid(`--shadow must be a percentage above 0 and at most 100, not ${percent}`);
    }
    if (!from || current === undefined) {
      throw invalid(
        `alias '${alias}' does not exist yet; a shadow mirrors an alias's traffic: promote a version first`,
      );
    }
    // A version in a canary split may shadow the rest of the traffic; one serving it all may not.
    if (from.split.length === 1 && from.split[0]!.version === request.version) {
      throw invalid(`version ${request.version} already serves all of alias '${alias}'`);
    }
    to = { split: from.split, shadow: { version: request.version, fraction: percent / 100 } };
  } else {
    // A full promotion ends any canary and shadow on the alias.
    to = single(request.version);
  }
  const noop = entriesEqual(from, to);
  return {
    model: document.model,
    alias,
    action: "promote",
    baseRevision: document.revision,
    from,
    to,
    noop,
    candidate: request.version,
    ...(current !== undefined && current !== request.version ? { current } : {}),
  };
}

/**
 * Rolling back undoes the alias's latest change that has not been undone yet,
 * restoring the state before it; repeated rollbacks walk further back through
 * the history (a rollback is itself never the change undone).
 */
export function planRollback(
  state: PromotionState,
  history: readonly AuditRecord[],
  aliasName: string,
): AliasChange {
  const { document } = state;
  const alias = checkAliasName(aliasName);
  const undone = new Set<number>();
  const records = history.filter((r) => r.alias === alias).sort((a, b) => b.revision - a.revision);
  // A rollout that rolled back (or was aborted) undid all of its own steps at once.
  const undoneRollouts = new Set(
    records.filter((r) => r.action === "rollback" && r.rollout).map((r) => r.rollout!.id),
  );
  for (const record of records) {
    // Checks change nothing, so there is nothing in them to undo.
    if (record.action === "check") continue;
    if (record.rollout && record.action === "promote" && undoneRollouts.has(record.rollout.id)) {
      continue;
    }
    if (record.action === "rollback") {
      if (record.undoes !== undefined) undone.add(record.undoes);
      continue;
    }
    if (undone.has(record.revision)) continue;
    const from = document.aliases[alias] ?? null;
    return {
      model: document.model,
      alias,
      action: "rollback",
      baseRevision: document.revision,
      from,
      to: record.from,
      noop: entriesEqual(from, record.from),
      undoes: record.revision,
    };
  }
  throw invalid(`alias '${alias}' of model '${document.model}' has no change left to roll back`);
}

/** The state after applying `change` to `document`'s aliases. */
export function applyChange(
  document: AliasDocument,
  change: AliasChange,
): AliasDocument["aliases"] {
  const aliases = { ...document.aliases };
  if (change.to) aliases[change.alias] = change.to;
  else delete aliases[change.alias];
  return aliases;
}
