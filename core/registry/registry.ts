/**
 * @module
 * The model registry over an object store: list versions, read manifests, read
 * artifacts with their digests verified, and publish new immutable versions.
 */
import { conflict, invalid, modelNotFound, notFound, unavailable } from "../errors";
import type { TensorSpec } from "../protocol/datatypes";
import { readChunks } from "./chunks";
import { bufferedSha256, sha256Hex, type DigestFactory } from "./digest";
import { blobKey, manifestKey, versionFromPrefix, versionsPrefix } from "./layout";
import {
  MANIFEST_SCHEMA_VERSION,
  manifestSchema,
  type Artifact,
  type ArtifactRole,
  type Manifest,
  type Quantization,
  type PruningRecord,
  describePruning,
  type Placement,
  type RuntimeHint,
  placementOf,
  type VersionSummary,
} from "./manifest";
import { MAX_VERSION, MODEL_NAME_PATTERN, checkModelName } from "./names";
import { listPages, type ObjectStore, type StoredObject } from "./store";
import { AliasStore } from "./alias-store";
import { ShadowStatsStore } from "./shadow-stats";

/** What a new version is made of, besides its artifacts. */
export interface VersionFields {
  /** Omit to take the next free version number. */
  version?: number;
  platform: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  runtime: RuntimeHint;
  placement?: Placement;
  source?: string;
  quantization?: Quantization;
  pruning?: PruningRecord;
  createdAt?: Date;
}

export interface PublishInput extends VersionFields {
  name: string;
  artifacts: Partial<Record<ArtifactRole, { bytes: Uint8Array; mediaType: string }>> & {
    onnx: { bytes: Uint8Array; mediaType: string };
  };
}

/** How often a publish without a version number retries after losing a race. */
const PUBLISH_ATTEMPTS = 5;
/** How much of an artifact is read per step (see `readChunks`). */
const READ_CHUNK_BYTES = 1 << 20;

/** Takes an artifact's bytes as they arrive: `chunk` starts at `offset` and is reused afterwards. */
export type ArtifactSink = (chunk: Uint8Array, offset: number) => void;

export interface RegistryOptions {
  /** The platform's incremental SHA-256, for artifacts streamed into place (default: buffered). */
  digests?: DigestFactory;
}

export class ModelRegistry {
  /** The models' aliases and their audit log. */
  readonly aliases: AliasStore;
  /** Shadow divergence totals, written by serving isolates. */
  readonly shadowStats: ShadowStatsStore;

  private readonly digests: DigestFactory;

  constructor(
    private readonly store: ObjectStore,
    options: RegistryOptions = {},
  ) {
    this.digests = options.digests ?? bufferedSha256;
    this.aliases = new AliasStore(store);
    this.shadowStats = new ShadowStatsStore(store);
  }

  /** True when the store answers a listing; used by readiness probes. */
  async ping(): Promise<boolean> {
    try {
      await this.store.list({ prefix: "models/", limit: 1 });
      return true;
    } catch (error) {
      console.error("registry unreachable", error);
      return false;
    }
  }

  /** Published versions of a model, ascending. Empty when the model does not exist. */
  /** A model's versions, ascending; a model without any does not exist (not_found). */
  async requireModel(name: string): Promise<number[]> {
    const versions = await this.listVersions(name);
    if (versions.length === 0) throw modelNotFound(name);
    return versions;
  }

  async listVersions(name: string): Promise<number[]> {
    checkModelName(name);
    const versions: number[] = [];
    for await (const page of listPages(this.store, {
      prefix: versionsPrefix(name),
      delimiter: "/",
    })) {
      for (const prefix of page.delimitedPrefixes) {
        const version = versionFromPrefix(prefix);
        if (version !== undefined) versions.push(version);
      }
    }
    return versions.sort((a, b) => a - b);
  }

  /** Reads and validates a manifest; a version without one does not exist. */
  async getManifest(name: string, version: number): Promise<Manifest> {
    checkModelName(name);
    const object = await this.store.get(manifestKey(name, version));
    if (!object) throw notFound(`model '${name}' has no version ${version}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(await object.text());
    } catch (cause) {
      throw unavailable(`manifest of ${name}@${version} is not valid JSON`, cause);
    }
    const result = manifestSchema.safeParse(parsed);
    if (!result.success) {
      throw unavailable(
        `manifest of ${name}@${version} is invalid: ${result.error.issues[0]!.message}`,
      );
    }
    const manifest = result.data;
    if (manifest.name !== name || manifest.version !== version) {
      throw unavailable(
        `manifest at ${name}@${version} describes ${manifest.name}@${manifest.version}`,
      );
    }
    return manifest;
  }

  /**
   * Opens an artifact after checking it against the manifest: `maxBytes` before
   * any byte is fetched, then the stored size. The digest is the reader's to
   * check (see `checkDigest`), as the bytes go by.
   */
  async openArtifact(
    manifest: Manifest,
    role: ArtifactRole,
    maxBytes: number,
  ): Promise<{ artifact: Artifact; object: StoredObject }> {
    const artifact = manifest.artifacts[role];
    const label = `${role} artifact of ${manifest.name}@${manifest.version}`;
    if (!artifact) throw notFound(`${manifest.name}@${manifest.version} has no ${role} artifact`);
    if (artifact.bytes > maxBytes) {
      throw unavailable(`${label} is ${artifact.bytes} bytes; this server's limit is ${maxBytes}`);
    }
    const object = await this.store.get(artifact.key);
    if (!object) throw unavailable(`${label} is missing from the bucket (${artifact.key})`);
    if (object.size !== artifact.bytes) {
      throw unavailable(`${label} is ${object.size} bytes, the manifest says ${artifact.bytes}`);
    }
    return { artifact, object };
  }

  /** Refuses (and logs) an artifact whose bytes hash to anything but the manifest's sha256. */
  checkDigest(manifest: Manifest, role: ArtifactRole, digest: string): void {
    const artifact = manifest.artifacts[role];
    if (artifact && digest === artifact.sha256) return;
    console.error(
      JSON.stringify({
        event: "artifact_integrity_failure",
        model: manifest.name,
        version: manifest.version,
        key: artifact?.key,
        expected: artifact?.sha256,
        actual: digest,
      }),
    );
    throw unavailable(
      `${role} artifact of ${manifest.name}@${manifest.version} failed its sha256 check; refusing to serve it`,
    );
  }

  /**
   * Reads an artifact and verifies its size and sha256 against the manifest.
   * `maxBytes` is checked against the manifest before any byte is fetched.
   */
  async readArtifact(
    manifest: Manifest,
    role: ArtifactRole,
    maxBytes: number,
  ): Promise<Uint8Array> {
    const { artifact, object } = await this.openArtifact(manifest, role, maxBytes);
    const bytes = new Uint8Array(artifact.bytes);
    await this.pump(manifest, role, object, artifact.bytes, (chunk, at) => bytes.set(chunk, at));
    this.checkDigest(manifest, role, await sha256Hex(bytes));
    return bytes;
  }

  /**
   * Streams an artifact into `sink` in order, never holding it whole, and
   * resolves once its size and sha256 are verified. On a rejection, whatever
   * the sink built from the bytes must be dropped: they are not the artifact.
   */
  async streamArtifact(
    manifest: Manifest,
    role: ArtifactRole,
    maxBytes: number,
    sink: ArtifactSink,
  ): Promise<void> {
    const { artifact, object } = await this.openArtifact(manifest, role, maxBytes);
    const digest = this.digests();
    await this.pump(manifest, role, object, artifact.bytes, async (chunk, at) => {
      sink(chunk, at);
      await digest.update(chunk);
    });
    this.checkDigest(manifest, role, await digest.hex());
  }

  /** Feeds an object's body to `take`, refusing more or fewer bytes than the manifest says. */
  private async pump(
    manifest: Manifest,
    role: ArtifactRole,
    object: StoredObject,
    size: number,
    take: (chunk: Uint8Array, offset: number) => void | Promise<void>,
  ): Promise<void> {
    const wrong = (what: string) =>
      unavailable(
        `${role} artifact of ${manifest.name}@${manifest.version} ${what} than the ${size} bytes its manifest says`,
      );
    let offset = 0;
    try {
      for await (const chunk of readChunks(object.body, READ_CHUNK_BYTES)) {
        if (offset + chunk.byteLength > size) throw wrong("holds more");
        await take(chunk, offset);
        offset += chunk.byteLength;
      }
    } catch (error) {
      await object.body.cancel().catch(() => {}); // free the rest of a body left unread
      throw error;
    }
    if (offset !== size) throw wrong("holds fewer");
  }

  /** Model names that have at least one object in the bucket, sorted. */
  async listModels(): Promise<string[]> {
    const names: string[] = [];
    for await (const page of listPages(this.store, { prefix: "models/", delimiter: "/" })) {
      for (const prefix of page.delimitedPrefixes) {
        const name = prefix.slice("models/".length, -1);
        if (MODEL_NAME_PATTERN.test(name)) names.push(name);
      }
    }
    return names.sort();
  }

  /**
   * Stores one artifact under its content address (skipped when already there)
   * and returns its manifest entry. The store verifies the digest on upload, and
   * the write is create-only: bytes already at the key are never replaced.
   */
  async storeArtifact(name: string, bytes: Uint8Array, mediaType: string): Promise<Artifact> {
    checkModelName(name);
    const sha256 = await sha256Hex(bytes);
    const key = blobKey(name, sha256);
    if (!(await this.store.head(key))) {
      await this.store.put(key, bytes, {
        sha256,
        onlyIf: { etagDoesNotMatch: "*" },
        httpMetadata: { contentType: mediaType },
      });
    }
    return { key, bytes: bytes.byteLength, sha256, mediaType };
  }

  /**
   * Publishes a new immutable version: artifacts first (content-addressed), then
   * the manifest with a create-only condition. An existing version is never
   * overwritten; asking for one is a conflict.
   */
  async publish(input: PublishInput): Promise<Manifest> {
    const name = checkModelName(input.name);
    const artifacts: Partial<Record<ArtifactRole, Artifact>> = {};
    for (const [role, artifact] of Object.entries(input.artifacts)) {
      if (artifact) {
        artifacts[role as ArtifactRole] = await this.storeArtifact(
          name,
          artifact.bytes,
          artifact.mediaType,
        );
      }
    }
    return this.commitVersion(name, input, artifacts as Manifest["artifacts"]);
  }

  /**
   * Writes the manifest of a new version whose artifacts are already stored —
   * the commit point of a publish. Checks that each artifact is in the bucket
   * with the recorded size first, then runs `check` (the admin API's
   * `VersionChecker`) on the candidate manifest: a version it refuses is never written.
   */
  async commitVersion(
    name: string,
    fields: VersionFields,
    artifacts: Manifest["artifacts"],
    check?: (candidate: Manifest) => Promise<void>,
  ): Promise<Manifest> {
    checkModelName(name);
    for (const [role, artifact] of Object.entries(artifacts)) {
      if (!artifact) continue;
      if (artifact.key !== blobKey(name, artifact.sha256)) {
        throw invalid(`${role} artifact key must be ${blobKey(name, artifact.sha256)}`);
      }
      const stored = await this.store.head(artifact.key);
      if (!stored) throw invalid(`${role} artifact ${artifact.sha256} has not been uploaded`);
      if (stored.size !== artifact.bytes) {
        throw invalid(
          `${role} artifact is ${stored.size} bytes in the bucket, not ${artifact.bytes}`,
        );
      }
    }
    const attempts = fields.version === undefined ? PUBLISH_ATTEMPTS : 1;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const version = fields.version ?? ((await this.listVersions(name)).at(-1) ?? 0) + 1;
      // Past the largest number a URL or listing knows, a version would be invisible.
      if (version > MAX_VERSION && fields.version !== undefined) {
        throw invalid(`cannot publish ${name}@${version}: versions are at most ${MAX_VERSION}`);
      }
      if (version > MAX_VERSION) {
        throw conflict(
          `${name} already has version ${MAX_VERSION}, the largest a version can be; publish with an explicit free version number below it`,
        );
      }
      // The check sees the first candidate; a retry changes only the version number.
      const candidate = {
        schema: MANIFEST_SCHEMA_VERSION,
        name,
        version,
        createdAt: (fields.createdAt ?? new Date()).toISOString(),
        platform: fields.platform,
        inputs: fields.inputs,
        outputs: fields.outputs,
        artifacts,
        runtime: fields.runtime,
        ...(fields.placement ? { placement: fields.placement } : {}),
        ...(fields.source ? { source: fields.source } : {}),
        ...(fields.quantization ? { quantization: fields.quantization } : {}),
        ...(fields.pruning ? { pruning: fields.pruning } : {}),
      };
      const checked = manifestSchema.safeParse(candidate);
      if (!checked.success) {
        const issue = checked.error.issues[0]!;
        throw invalid(`cannot publish ${name}: manifest ${issue.path.join(".")}: ${issue.message}`);
      }
      if (attempt === 0) await check?.(checked.data);
      const written = await this.store.put(
        manifestKey(name, version),
        JSON.stringify(checked.data, null, 2),
        { onlyIf: { etagDoesNotMatch: "*" }, httpMetadata: { contentType: "application/json" } },
      );
      if (written) return checked.data;
      if (fields.version !== undefined) {
        throw conflict(
          `${name}@${version} already exists and versions are immutable; publish a new version instead`,
        );
      }
    }
    throw conflict(
      `could not claim a version number for ${name} after ${PUBLISH_ATTEMPTS} attempts`,
    );
  }

  /** One line per version: what `pinion versions` prints. */
  async describeVersions(name: string): Promise<VersionSummary[]> {
    const versions = await this.listVersions(name);
    const manifests = await Promise.all(versions.map((v) => this.getManifest(name, v)));
    return manifests.map((m) => ({
      version: m.version,
      createdAt: m.createdAt,
      runtime: m.runtime,
      placement: placementOf(m),
      bytes: Object.values(m.artifacts).reduce((sum, a) => sum + (a?.bytes ?? 0), 0),
      sha256: m.artifacts.onnx.sha256,
      ...(m.source ? { source: m.source } : {}),
      ...(m.pruning ? { pruned: describePruning(m.pruning) } : {}),
      ...(m.quantization ? { quantization: m.quantization } : {}),
    }));
  }
}
