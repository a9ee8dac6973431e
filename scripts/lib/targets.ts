/**
 * @module
 * Where `pinion` publishes: the local R2 emulation `wrangler dev` reads
 * (`--target local`), or a deployed worker's admin API (`--target https://…`).
 * Both take the same prepared version and answer the same questions.
 */
import { createHash } from "node:crypto";
import { invalid } from "../../worker/errors";
import type { Manifest, VersionSummary } from "../../worker/registry/manifest";
import { ModelRegistry } from "../../worker/registry/registry";
import { openLocalR2, DEFAULT_PERSIST_TO } from "./local-r2";
import type { PreparedVersion } from "./prepare";
import { uploadArtifact, type UploadProgress } from "./upload";

export interface Target {
  readonly description: string;
  publish(name: string, prepared: PreparedVersion, progress?: UploadProgress): Promise<Manifest>;
  listModels(): Promise<string[]>;
  describeVersions(name: string): Promise<VersionSummary[]>;
  close(): Promise<void>;
}

export interface TargetOptions {
  persistTo?: string;
  token?: string;
}

export async function openTarget(target: string, options: TargetOptions = {}): Promise<Target> {
  if (target === "local") return openLocalTarget(options.persistTo ?? DEFAULT_PERSIST_TO);
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

async function openLocalTarget(persistTo: string): Promise<Target> {
  const r2 = await openLocalR2(persistTo);
  const registry = new ModelRegistry(r2.store);
  return {
    description: `local R2 (${persistTo})`,
    publish: (name, prepared) =>
      registry.publish({ name, ...prepared.fields, artifacts: prepared.artifacts }),
    listModels: () => registry.listModels(),
    describeVersions: (name) => registry.describeVersions(name),
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

  async request(path: string, init: RequestInit = {}): Promise<Response> {
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
    if (!response.ok) {
      const text = await response.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: keep the text
      }
      throw invalid(`${init.method ?? "GET"} ${url.pathname}: ${response.status} ${message}`);
    }
    return response;
  }

  async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    return (await (await this.request(path, init)).json()) as T;
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
