/**
 * @module
 * Promotion end to end: plan (pure), gate (through the data plane), apply
 * (compare-and-swap, audit record). The admin API and `pinion … --target local`
 * both run this, so a promotion behaves the same against a deployed worker and
 * against local R2.
 */
import type { AliasSnapshot } from "../registry/alias-store";
import type { Manifest } from "../registry/manifest";
import {
  planPromotion,
  planRollback,
  type AliasChange,
  type AuditRecord,
  type GateResult,
  type PromotionRequest,
} from "../registry/promotion";
import type { ModelRegistry } from "../registry/registry";
import type { DataPlane } from "./data-plane";
import { gatesPassed, runGates } from "./gates";

export interface PromoteOptions extends PromotionRequest {
  actor: string;
  reason?: string;
  /** Apply even when gates fail; recorded as forced. */
  force?: boolean;
  minAgreement?: number;
  /** Plan and gate, but write nothing. */
  dryRun?: boolean;
}

export interface RollbackOptions {
  alias: string;
  actor: string;
  reason?: string;
  dryRun?: boolean;
}

/**
 * `applied`: written (see `record`); `noop`: the alias already was in that
 * state; `dry-run`: planned only; `gates-failed`: refused, alias untouched.
 */
export type OutcomeStatus = "applied" | "noop" | "dry-run" | "gates-failed";

export interface PromotionOutcome {
  status: OutcomeStatus;
  change: AliasChange;
  gates: GateResult[];
  forced: boolean;
  record: AuditRecord | null;
}

class GatesFailed extends Error {
  constructor(
    readonly change: AliasChange,
    readonly gates: GateResult[],
  ) {
    super("gates failed");
  }
}

export class Promoter {
  constructor(
    private readonly registry: ModelRegistry,
    private readonly plane: DataPlane,
  ) {}

  async promote(model: string, options: PromoteOptions): Promise<PromotionOutcome> {
    const versions = await this.registry.listVersions(model);
    const gateCache = new Map<string, GateResult[]>();
    const gate = async (change: AliasChange): Promise<GateResult[]> => {
      if (change.noop || change.candidate === undefined) return [];
      // Re-planning after a lost race reuses gates when they compare the same versions.
      const key = `${change.candidate}/${change.current ?? ""}`;
      let gates = gateCache.get(key);
      if (!gates) {
        const candidate = await this.manifest(model, change.candidate);
        const current =
          change.current === undefined ? undefined : await this.manifest(model, change.current);
        gates = await runGates(this.plane, candidate, current, {
          ...(options.minAgreement !== undefined ? { minAgreement: options.minAgreement } : {}),
        });
        gateCache.set(key, gates);
      }
      return gates;
    };
    const plan = (snapshot: AliasSnapshot) =>
      planPromotion({ document: snapshot.document, versions }, options);
    const forced = options.force === true;

    if (options.dryRun) {
      const change = plan(await this.registry.aliases.current(model));
      const gates = await gate(change);
      return { status: change.noop ? "noop" : "dry-run", change, gates, forced, record: null };
    }
    try {
      const { change, record } = await this.registry.aliases.commit(model, async (snapshot) => {
        const change = plan(snapshot);
        const gates = await gate(change);
        if (!forced && !gatesPassed(gates)) throw new GatesFailed(change, gates);
        return {
          change,
          details: {
            actor: options.actor,
            ...(options.reason ? { reason: options.reason } : {}),
            forced,
            gates,
          },
        };
      });
      return {
        status: record ? "applied" : "noop",
        change,
        gates: record?.gates ?? [],
        forced,
        record,
      };
    } catch (error) {
      if (error instanceof GatesFailed) {
        return {
          status: "gates-failed",
          change: error.change,
          gates: error.gates,
          forced,
          record: null,
        };
      }
      throw error;
    }
  }

  /** Restores the alias to its state before its latest change not yet undone. No gates: rollbacks must always be possible. */
  async rollback(model: string, options: RollbackOptions): Promise<PromotionOutcome> {
    const versions = await this.registry.requireModel(model);
    let history = await this.registry.aliases.history(model);
    const plan = async (snapshot: AliasSnapshot) => {
      // A change committed since the log was read: plan against the full log.
      if ((history.at(-1)?.revision ?? 0) < snapshot.document.revision) {
        history = await this.registry.aliases.history(model);
      }
      return planRollback({ document: snapshot.document, versions }, history, options.alias);
    };
    if (options.dryRun) {
      const change = await plan(await this.registry.aliases.current(model));
      return {
        status: change.noop ? "noop" : "dry-run",
        change,
        gates: [],
        forced: false,
        record: null,
      };
    }
    const { change, record } = await this.registry.aliases.commit(model, async (snapshot) => ({
      change: await plan(snapshot),
      details: {
        actor: options.actor,
        ...(options.reason ? { reason: options.reason } : {}),
        forced: false,
        gates: [],
      },
    }));
    return { status: record ? "applied" : "noop", change, gates: [], forced: false, record };
  }

  private manifest(model: string, version: number): Promise<Manifest> {
    return this.plane.manifest(model, String(version));
  }
}
