/**
 * @module
 * Resolution: which pinned version answers a model reference. Reads version
 * lists, alias documents and manifests from the registry and keeps per-isolate
 * copies: manifests forever (they are immutable), version lists and aliases for
 * a TTL, the bound on how long a publish or a promotion takes to reach every
 * isolate.
 */
import { invalid, modelNotFound, notFound, PinionError } from "../errors";
import type { ModelMetadata } from "../protocol/types";
import {
  checkAliasName,
  DEFAULT_ALIAS,
  isShadowed,
  pickVersion,
  type AliasDocument,
} from "../registry/aliases";
import { manifestKey } from "../registry/layout";
import type { ArtifactRole, Manifest } from "../registry/manifest";
import { checkModelName, parseVersion } from "../registry/names";
import type { ModelRegistry } from "../registry/registry";

/** How a request named its model: pinned, through an alias, or neither (the default alias, else the latest version). */
export interface ModelReference {
  name: string;
  version?: string;
  alias?: string;
  /** Sticky canary key: the same key lands on the same version while a split is unchanged. */
  key?: string;
}

/** What a reference resolved to. */
export interface Resolution {
  manifest: Manifest;
  /** The alias that chose the version, if one did. */
  alias?: string;
  /** The alias state revision the choice was made on. */
  revision?: number;
  /** Set when this request is to be mirrored to the alias's shadow version. */
  shadowVersion?: number;
}

export interface ResolverConfig {
  /** How long an isolate trusts its list of a model's versions, in ms (0 = always re-list). */
  versionListTtlMs: number;
  /** How long an isolate trusts its copy of a model's aliases, in ms (0 = always re-read). */
  aliasTtlMs: number;
  /** The most bytes an artifact read may hold (gates read golden sets). */
  maxArtifactBytes: number;
}

export class ModelResolver {
  private readonly manifests = new Map<string, Manifest>();
  private readonly versionLists = new Map<string, { versions: number[]; fetchedAt: number }>();
  private readonly aliasDocuments = new Map<
    string,
    { document: AliasDocument; fetchedAt: number }
  >();

  constructor(
    private readonly registry: ModelRegistry,
    private readonly config: ResolverConfig,
    private readonly now: () => number = Date.now,
  ) {}

  /** Published versions, from a per-isolate list refreshed every `versionListTtlMs`. */
  async versions(name: string): Promise<number[]> {
    checkModelName(name);
    const cached = this.versionLists.get(name);
    if (cached && this.now() - cached.fetchedAt < this.config.versionListTtlMs) {
      return cached.versions;
    }
    const versions = await this.registry.listVersions(name);
    this.versionLists.set(name, { versions, fetchedAt: this.now() });
    return versions;
  }

  /** The manifest of `name` at a version string, or at its latest version. */
  async manifest(name: string, version?: string): Promise<Manifest> {
    checkModelName(name);
    let pinned: number;
    if (version === undefined) {
      const latest = (await this.versions(name)).at(-1);
      if (latest === undefined) throw modelNotFound(name);
      pinned = latest;
    } else {
      pinned = parseVersion(version);
    }
    const key = manifestKey(name, pinned);
    let manifest = this.manifests.get(key);
    if (!manifest) {
      manifest = await this.registry.getManifest(name, pinned).catch(async (error: unknown) => {
        // Tell "no such model" apart from "no such version of this model".
        const missing = error instanceof PinionError && error.kind === "not_found";
        if (missing && (await this.registry.listVersions(name)).length === 0) {
          throw modelNotFound(name);
        }
        throw error;
      });
      this.manifests.set(key, manifest);
    }
    return manifest;
  }

  /**
   * A model's aliases, from a per-isolate copy refreshed every `aliasTtlMs`:
   * the bound on how long a promotion takes to reach every isolate.
   */
  async aliases(name: string): Promise<AliasDocument> {
    checkModelName(name);
    const cached = this.aliasDocuments.get(name);
    if (cached && this.now() - cached.fetchedAt < this.config.aliasTtlMs) return cached.document;
    // Each request reads for itself: in workerd, a request awaiting a promise that another
    // request's I/O resolves can be cancelled as hung, so reads are not shared.
    const { document } = await this.registry.aliases.read(name);
    // Never step back: a read that started before a promotion may finish after one that saw it.
    const latest = this.aliasDocuments.get(name);
    const keep =
      latest && latest.document.revision > document.revision ? latest.document : document;
    this.aliasDocuments.set(name, { document: keep, fetchedAt: this.now() });
    return keep;
  }

  /**
   * Resolves a reference to the version that serves it: a pinned version
   * always means that version; an alias (or, with neither, the `production`
   * alias when it exists) picks from its split by the request key; with no
   * alias at all, the latest version answers.
   */
  async resolve(reference: ModelReference): Promise<Resolution> {
    const { name, version, alias } = reference;
    checkModelName(name);
    if (version !== undefined) {
      if (alias !== undefined) {
        throw invalid("a request names either a version or an alias, not both");
      }
      return { manifest: await this.manifest(name, version) };
    }
    const chosenAlias = alias === undefined ? undefined : checkAliasName(alias);
    const document = await this.aliases(name);
    const aliasName = chosenAlias ?? DEFAULT_ALIAS;
    const entry = document.aliases[aliasName];
    if (!entry) {
      if (chosenAlias === undefined) return { manifest: await this.manifest(name) };
      if ((await this.versions(name)).length === 0) throw modelNotFound(name);
      throw notFound(`model '${name}' has no alias '${chosenAlias}'`);
    }
    const key = reference.key ?? "";
    const salt = `${name}/${aliasName}`;
    const manifest = await this.manifest(name, String(pickVersion(entry, key, salt)));
    const resolution: Resolution = { manifest, alias: aliasName, revision: document.revision };
    if (entry.shadow && entry.shadow.version !== manifest.version && isShadowed(entry, key, salt)) {
      resolution.shadowVersion = entry.shadow.version;
    }
    return resolution;
  }

  /** Every model name with objects in the registry, sorted (read on each call). */
  models(): Promise<string[]> {
    return this.registry.listModels();
  }

  /** OIP model metadata for a resolved version. */
  async metadata(manifest: Manifest): Promise<ModelMetadata> {
    const versions = await this.versions(manifest.name);
    return {
      name: manifest.name,
      versions: (versions.includes(manifest.version)
        ? versions
        : [...versions, manifest.version]
      ).map(String),
      platform: manifest.platform,
      inputs: manifest.inputs,
      outputs: manifest.outputs,
    };
  }

  /** One of a version's artifacts, digest verified (gates read golden sets this way). */
  readArtifact(manifest: Manifest, role: ArtifactRole): Promise<Uint8Array> {
    return this.registry.readArtifact(manifest, role, this.config.maxArtifactBytes);
  }

  /** Registry reachability, for the server readiness probe. */
  registryReachable(): Promise<boolean> {
    return this.registry.ping();
  }
}
