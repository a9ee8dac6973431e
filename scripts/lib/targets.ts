/**
 * @module
 * Where `pinion` publishes: the local R2 emulation `wrangler dev` reads
 * (`--target local`), or a deployed worker's admin API (`--target https://…`).
 * Both take the same prepared version and answer the same questions.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { invalid, PinionError } from "../../core/errors";
// The admin API's statuses read back with the table that wrote them, so exit codes mean the same either way.
import { kindOfStatus } from "../../http/errors";
import type { AliasDocument } from "../../core/registry/aliases";
import type { Manifest, VersionSummary } from "../../core/registry/manifest";
import type { AuditRecord } from "../../core/registry/promotion";
import type { RolloutState } from "../../core/registry/rollout";
import type { MetricsReport } from "../../core/serving/metrics";
import { ModelRegistry } from "../../core/registry/registry";
import type { ShadowReport } from "../../core/registry/shadow-stats";
import { Int8Runtime } from "../../core/runtimes/int8/int8-runtime";
import { OrtRuntime } from "../../core/runtimes/ort/ort-runtime";
import { parseServingConfig } from "../../core/serving/config";
import { edgeDataPlane } from "../../core/serving/data-plane";
import {
  Promoter,
  type PromoteOptions,
  type PromotionOutcome,
  type RollbackOptions,
} from "../../core/serving/promoter";
import { kernelsPath } from "./kernels-node";
import { openLocalR2, DEFAULT_PERSIST_TO } from "../../origin/stores/local-r2";
import type { PreparedVersion } from "./prepare";
import { uploadArtifact, type UploadProgress } from "./upload";

/** A promotion as the CLI asks for it; the actor is the target's to decide. */
export type PromoteRequest = Omit<PromoteOptions, "actor">;
export type RollbackRequest = Omit<RollbackOptions, "actor">;

/** A rollout as `pinion rollout` asks for it (the admin API's body). */
export interface RolloutRequest {
  alias: string;
  version: number;
  steps?: number[];
  intervalMs?: number;
  maxErrorRate?: number;
  maxP99Ms?: number;
  maxLatencyRatio?: number;
  minAgreement?: number;
  minRequests?: number;
  shadowFirstMs?: number;
  reason?: string;
}

export type RolloutAction = "pause" | "resume" | "abort";

export interface Target {
  readonly description: string;
  publish(name: string, prepared: PreparedVersion, progress?: UploadProgress): Promise<Manifest>;
  listModels(): Promise<string[]>;
  describeVersions(name: string): Promise<VersionSummary[]>;
  aliases(name: string): Promise<AliasDocument>;
  promote(name: string, request: PromoteRequest): Promise<PromotionOutcome>;
  rollback(name: string, request: RollbackRequest): Promise<PromotionOutcome>;
  history(name: string, limit?: number): Promise<AuditRecord[]>;
  shadowReport(name: string): Promise<ShadowReport[]>;
  /** Live metrics: running totals, or the minute buckets since `since` (`15m`, an ISO time). */
  metrics(name: string, since?: string): Promise<MetricsReport>;
  startRollout(name: string, request: RolloutRequest): Promise<RolloutState>;
  rollout(name: string): Promise<RolloutState | null>;
  controlRollout(name: string, action: RolloutAction): Promise<RolloutState>;
  close(): Promise<void>;
}

/** Live metrics and rollouts live in the worker (its Durable Objects), not in R2. */
const needsWorker = (what: string) => async (): Promise<never> => {
  throw invalid(
    `${what} live in the worker, not in local R2: give --target the worker's URL (e.g. http://127.0.0.1:8787 for wrangler dev)`,
  );
};

export interface TargetOptions {
  persistTo?: string;
  token?: string;
  /** Who local changes are recorded as (a remote worker records its token's name). */
  actor?: string;
}

export async function openTarget(target: string, options: TargetOptions = {}): Promise<Target> {
  if (target === "local") {
    return openLocalTarget(options.persistTo ?? DEFAULT_PERSIST_TO, options.actor ?? "local");
  }
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw invalid(
      `--target must be "local" or the worker's URL (https://…), not ${JSON.stringify(target)}`,
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw invalid(`--target URL must be http(s), not ${url.protocol}`);
  }
  if (!options.token) {
    throw invalid(
      "publishing to a worker needs its admin token in the PINION_ADMIN_TOKEN environment variable",
    );
  }
  return new RemoteTarget(url, options.token);
}

async function openLocalTarget(persistTo: string, actor: string): Promise<Target> {
  const r2 = await openLocalR2(persistTo);
  const registry = new ModelRegistry(r2.store);
  let promoter: Promise<Promoter> | undefined;
  // Gates run here, in Node, on the same runtimes and kernels the worker uses.
  const getPromoter = () =>
    (promoter ??= (async () => {
      const kernels = await WebAssembly.compile(new Uint8Array(await readFile(kernelsPath())));
      const plane = edgeDataPlane(
        registry,
        [new Int8Runtime(kernels), new OrtRuntime(async () => (await import("./onnx-graph")).ort)],
        parseServingConfig({
          ALIAS_TTL_MS: "0",
          VERSION_LIST_TTL_MS: "0",
          // Gates of origin-placed versions run on the origin.
          ORIGIN_URL: process.env.PINION_ORIGIN_URL,
          PINION_ORIGIN_TOKEN: process.env.PINION_ORIGIN_TOKEN,
        }),
      );
      return new Promoter(registry, plane);
    })());
  const requireModel = async (name: string) => {
    await registry.requireModel(name);
  };
  return {
    description: `local R2 (${persistTo})`,
    publish: (name, prepared) =>
      registry.publish({ name, ...prepared.fields, artifacts: prepared.artifacts }),
    listModels: () => registry.listModels(),
    describeVersions: (name) => registry.describeVersions(name),
    aliases: async (name) => {
      await requireModel(name);
      return (await registry.aliases.read(name)).document;
    },
    promote: async (name, request) => (await getPromoter()).promote(name, { ...request, actor }),
    rollback: async (name, request) => (await getPromoter()).rollback(name, { ...request, actor }),
    history: async (name, limit) => {
      await requireModel(name);
      return registry.aliases.history(name, limit);
    },
    shadowReport: async (name) => {
      await requireModel(name);
      return registry.shadowStats.report(name);
    },
    metrics: needsWorker("live metrics"),
    startRollout: needsWorker("rollouts"),
    rollout: needsWorker("rollouts"),
    controlRollout: needsWorker("rollouts"),
    close: () => r2.dispose(),
  };
}

/** A client of the worker's admin API. */
export class RemoteTarget implements Target {
  readonly description: string;
  /** host:port, naming this target's saved upload state. */
  readonly host: string;

  constructor(
    private readonly base: URL,
    private readonly token: string,
  ) {
    this.description = `${base.origin} (admin API)`;
    this.host = base.host;
  }

  /** `accept` lists non-2xx statuses whose JSON body is an answer rather than an error. */
  async request(path: string, init: RequestInit = {}, accept: number[] = []): Promise<Response> {
    const url = new URL(
      `admin/${path}`,
      this.base.href.endsWith("/") ? this.base : `${this.base.href}/`,
    );
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${this.token}`);
    let response: Response;
    try {
      response = await fetch(url, { ...init, headers });
    } catch (error) {
      throw invalid(`cannot reach ${url.origin}: ${(error as Error).message}`);
    }
    if (!response.ok && !accept.includes(response.status)) {
      const text = await response.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: keep the text
      }
      throw new PinionError(
        kindOfStatus(response.status),
        `${init.method ?? "GET"} ${url.pathname}: ${response.status} ${message}`,
      );
    }
    return response;
  }

  async json<T>(path: string, init: RequestInit = {}, accept: number[] = []): Promise<T> {
    return (await (await this.request(path, init, accept)).json()) as T;
  }

  private model(name: string, rest: string): string {
    return `models/${encodeURIComponent(name)}/${rest}`;
  }

  aliases(name: string): Promise<AliasDocument> {
    return this.json<AliasDocument>(this.model(name, "aliases"));
  }

  promote(name: string, request: PromoteRequest): Promise<PromotionOutcome> {
    const { canaryPercent, shadowPercent, ...rest } = request;
    return this.json<PromotionOutcome>(
      this.model(name, "promotions"),
      {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          ...rest,
          ...(canaryPercent !== undefined ? { canary: canaryPercent } : {}),
          ...(shadowPercent !== undefined ? { shadow: shadowPercent } : {}),
        }),
      },
      [422], // gates failed: the body is the outcome
    );
  }

  rollback(name: string, request: RollbackRequest): Promise<PromotionOutcome> {
    return this.json<PromotionOutcome>(this.model(name, "rollbacks"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(request),
    });
  }

  async history(name: string, limit?: number): Promise<AuditRecord[]> {
    const query = limit === undefined ? "" : `?limit=${limit}`;
    return (await this.json<{ records: AuditRecord[] }>(this.model(name, `history${query}`)))
      .records;
  }

  async shadowReport(name: string): Promise<ShadowReport[]> {
    return (await this.json<{ reports: ShadowReport[] }>(this.model(name, "shadow"))).reports;
  }

  metrics(name: string, since?: string): Promise<MetricsReport> {
    const query = since === undefined ? "" : `?since=${encodeURIComponent(since)}`;
    return this.json<MetricsReport>(this.model(name, `metrics${query}`));
  }

  startRollout(name: string, request: RolloutRequest): Promise<RolloutState> {
    return this.json<RolloutState>(this.model(name, "rollouts"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(request),
    });
  }

  async rollout(name: string): Promise<RolloutState | null> {
    return (await this.json<{ rollout: RolloutState | null }>(this.model(name, "rollout"))).rollout;
  }

  controlRollout(name: string, action: RolloutAction): Promise<RolloutState> {
    return this.json<RolloutState>(this.model(name, `rollout/${action}`), { method: "POST" });
  }

  async publish(
    name: string,
    prepared: PreparedVersion,
    progress?: UploadProgress,
  ): Promise<Manifest> {
    const artifacts: Record<string, unknown> = {};
    for (const [role, artifact] of Object.entries(prepared.artifacts)) {
      if (!artifact) continue;
      const sha256 = createHash("sha256").update(artifact.bytes).digest("hex");
      const stored = await uploadArtifact(
        this,
        name,
        artifact.bytes,
        sha256,
        artifact.mediaType,
        progress,
      );
      artifacts[role] = {
        key: stored.key,
        bytes: artifact.bytes.byteLength,
        sha256,
        mediaType: artifact.mediaType,
      };
    }
    return this.json<Manifest>(`models/${encodeURIComponent(name)}/versions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...prepared.fields, artifacts }),
    });
  }

  async listModels(): Promise<string[]> {
    return (await this.json<{ models: string[] }>("models")).models;
  }

  async describeVersions(name: string): Promise<VersionSummary[]> {
    return (
      await this.json<{ versions: VersionSummary[] }>(`models/${encodeURIComponent(name)}/versions`)
    ).versions;
  }

  async close(): Promise<void> {}
}
