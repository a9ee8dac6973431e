/**
 * The shapes the console reads from the admin API and the OIP endpoints
 * (docs/api.md). Declared here, not imported from core/: the console is a
 * client of the HTTP API and knows only what goes over the wire.
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Accuracy {
  cases: number;
  cosine: number;
  minCosine: number;
  maxAbsError: number;
  sqnrDb: number;
  top1Agreement?: number;
  fp32Accuracy?: number;
  int8Accuracy?: number;
}

export interface VersionSummary {
  version: number;
  createdAt: string;
  runtime: string;
  placement: string;
  bytes: number;
  sha256: string;
  source?: string;
  quantization?: {
    scheme: string;
    layers: { name: string; k: number; n: number; activation: string; sqnrDb: number }[];
    accuracy?: Accuracy;
  };
}

export interface AliasEntry {
  split: { version: number; weight: number }[];
  shadow?: { version: number; fraction: number };
}

export interface AliasDocument {
  revision: number;
  aliases: Record<string, AliasEntry>;
}

export interface GateResult {
  gate: string;
  passed: boolean;
  skipped?: boolean;
  detail: string;
}

export interface AuditRecord {
  revision: number;
  at: string;
  actor: string;
  action: "promote" | "rollback";
  alias: string;
  from: AliasEntry | null;
  to: AliasEntry | null;
  reason?: string;
  forced: boolean;
  gates: GateResult[];
  undoes?: number;
}

export interface PromotionOutcome {
  status: "applied" | "noop" | "dry-run" | "gates-failed";
  change: {
    alias: string;
    action: string;
    baseRevision: number;
    from: AliasEntry | null;
    to: AliasEntry | null;
    noop: boolean;
    undoes?: number;
  };
  gates: GateResult[];
  forced: boolean;
  record: AuditRecord | null;
}

export interface ShadowReport {
  alias: string;
  revision: number;
  candidate: number;
  primaries: number[];
  samples: number;
  errors: number;
  maxAbsDiff: number;
  meanAbsDiff: number;
  top1Disagreement: number;
  top1Rows: number;
  reporters: number;
  updatedAt: string;
}

export interface TensorSpec {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelMetadata {
  name: string;
  versions?: string[];
  platform: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export interface OutputTensor {
  name: string;
  datatype: string;
  shape: number[];
  data: Json[];
}
