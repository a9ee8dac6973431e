/**
 * @module
 * What the admin API needs from its program: tokens, the registry, uploads,
 * the promoter and the version checker; and how tokens are read from the
 * environment.
 */
import type { ArtifactUploads } from "../../core/registry/uploads";
import type { ModelRegistry } from "../../core/registry/registry";
import type { MetricsStore } from "../../core/serving/metrics";
import type { Promoter } from "../../core/serving/promoter";
import type { RolloutControl } from "../../core/serving/rollout";
import type { VersionChecker } from "../../core/serving/version-checker";

/** An admin token and the name its changes are recorded under in the audit log. */
export interface AdminToken {
  name: string;
  token: string;
}

/** What the admin API needs from the environment. */
export interface AdminContext {
  /** The configured tokens; none disables the API. */
  tokens: readonly AdminToken[];
  /** Artifact uploads, staged and verified before they are stored. */
  uploads: ArtifactUploads;
  registry: ModelRegistry;
  /** Runs promotions (gates go through this isolate's data plane). */
  promoter: Promoter;
  /** Checks a version before it is committed; without one, commits are refused. */
  checker?: VersionChecker;
  /** The live metrics (read side); without them, metrics routes answer 501. */
  metrics?: MetricsStore;
  /** Rollouts, driven server-side; without them, rollout routes answer 501. */
  rollouts?: RolloutControl;
}

/**
 * Tokens from the environment: `PINION_ADMIN_TOKEN` (recorded as "admin") and
 * `PINION_ADMIN_TOKENS`, a comma-separated list of `name=token` (e.g. one per CI job or person).
 */
export function parseAdminTokens(
  single: string | undefined,
  named: string | undefined,
): AdminToken[] {
  const tokens: AdminToken[] = [];
  if (single) tokens.push({ name: "admin", token: single });
  for (const item of (named ?? "").split(",")) {
    const at = item.indexOf("=");
    if (at <= 0 || at === item.length - 1) continue;
    tokens.push({ name: item.slice(0, at).trim(), token: item.slice(at + 1).trim() });
  }
  return tokens;
}

export type AdminVariables = { admin: AdminContext; requestId: string; actor: string };
