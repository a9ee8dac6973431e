/**
 * @module
 * The data plane: resolve a model reference to a pinned version, load it
 * through the model cache, run it. Knows nothing of HTTP; errors are domain
 * errors whose kind the HTTP layer maps to a status.
 */
import { echo, invalid, notFound, PinionError, unavailable } from "../errors";
import type { Tensor } from "../protocol/datatypes";
import {
  checkAgainstSpec,
  checkOutputElements,
  checkOutputSize,
  decodeInput,
  encodeOutput,
  type ResponseLimits,
} from "../protocol/tensor-codec";
import type {
  InferenceRequest,
  InferenceResponse,
  ModelMetadata,
  Parameters,
} from "../protocol/types";
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
import type { LoadedModel, Runtime, RuntimeName } from "../runtimes/runtime";
import { ORIGIN_DEFAULTS, type ServingConfig } from "./config";
import { ModelCache } from "./model-cache";
import { ShadowRecorder } from "./shadow";
import { OriginForwarder } from "./origin-forwarder";
import { Timing } from "./timing";

/** Smallest JSON encoding of one element is two bytes ("0,"), so no request holds more. */
const MIN_BYTES_PER_ELEMENT = 2;

export interface InferenceResult {
  response: InferenceResponse;
  manifest: Manifest;
  runtime: LoadedModel["runtime"];
  /** How many times the compute ran (benchmarks only; else 1). */
  repeat: number;
}

/** How a request named its model: pinned, through an alias, or neither (the default alias, else the latest version). */
export interface ModelReference {
  name: string;
  version?: string;
  alias?: string;
  /** Sticky canary key: the same key lands on the same version while a split is unchanged. */
  key?: string;
}

/** What a reference resolved to. */
export interface Route {
  manifest: Manifest;
  /** The alias that chose the version, if one did. */
  alias?: string;
  /** The alias state revision the choice was made on. */
  revision?: number;
  /** Set when this request is to be mirrored to the alias's shadow version. */
  shadowVersion?: number;
}
/**
 * Picks the runtime for a version from its manifest and what the request asked
 * for (`?runtime=` or the `runtime` request parameter, when given).
 */
export type RuntimeChoice = (manifest: Manifest, requested: string | undefined) => RuntimeName;

/**
 * The edge's choice: the runtime asked for, else int8 when the version carries
 * a plan and its publisher chose int8, else onnxruntime.
 */
export const edgeRuntimeChoice: RuntimeChoice = (manifest, requested) => {
  if (requested === undefined) {
    return manifest.runtime === "int8" && manifest.artifacts.int8 ? "int8" : "ort";
  }
  if (requested !== "ort" && requested !== "int8") {
    throw invalid(`unknown runtime '${echo(requested)}'; use 'ort' or 'int8'`);
  }
  if (requested === "int8" && !manifest.artifacts.int8) {
    throw invalid(
      `${manifest.name}@${manifest.version} has no int8 plan; publish it with --quantize int8`,
    );
  }
  return requested;
};

export class DataPlane {
  readonly cache: ModelCache;
  /** Mirrors shadowed requests and keeps their divergence totals. */
  readonly shadow: ShadowRecorder;
  /** Passes requests for origin-placed versions to the GPU origin (one circuit breaker per isolate). */
  readonly origin: OriginForwarder;
  /** Manifests are immutable once published, so they are cached without expiry. */
  private readonly manifests = new Map<string, Manifest>();
  private readonly versionLists = new Map<string, { versions: number[]; fetchedAt: number }>();
  private readonly aliasDocuments = new Map<
    string,
    { document: AliasDocument; fetchedAt: number }
  >();

  private readonly runtimes = new Map<RuntimeName, Runtime>();

  constructor(
    private readonly registry: ModelRegistry,
    runtimes: readonly Runtime[],
    readonly config: ServingConfig,
    private readonly now: () => number = Date.now,
    private readonly chooseRuntime: RuntimeChoice = edgeRuntimeChoice,
  ) {
    for (const runtime of runtimes) this.runtimes.set(runtime.name, runtime);
    this.cache = new ModelCache(config.modelCacheBytes);
    this.shadow = new ShadowRecorder(registry.shadowStats, config.shadowFlushMs, now);
    this.origin = new OriginForwarder(config.origin ?? ORIGIN_DEFAULTS, undefined, now);
  }

  /** The runtime that serves a version, as `chooseRuntime` decides (see `edgeRuntimeChoice`). */
  runtimeFor(manifest: Manifest, requested?: string): Runtime {
    const name = this.chooseRuntime(manifest, requested);
    const runtime = this.runtimes.get(name);
    if (!runtime) throw unavailable(`this server has no ${name} runtime`);
    return runtime;
  }

  /** This isolate's runtime of that name, if it has one (an int8-only build has no ORT). */
  runtimeNamed(name: RuntimeName): Runtime | undefined {
    return this.runtimes.get(name);
  }

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

  /** Resolves `name` plus an optional version string to a manifest. */
  async resolve(name: string, version?: string): Promise<Manifest> {
    checkModelName(name);
    let pinned: number;
    if (version === undefined) {
      const latest = (await this.versions(name)).at(-1);
      if (latest === undefined) throw notFound(`model '${name}' not found`);
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
          throw notFound(`model '${name}' not found`);
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
  async route(reference: ModelReference): Promise<Route> {
    const { name, version, alias } = reference;
    checkModelName(name);
    if (version !== undefined) {
      if (alias !== undefined) {
        throw invalid("a request names either a version or an alias, not both");
      }
      return { manifest: await this.resolve(name, version) };
    }
    const chosenAlias = alias === undefined ? undefined : checkAliasName(alias);
    const document = await this.aliases(name);
    const aliasName = chosenAlias ?? DEFAULT_ALIAS;
    const entry = document.aliases[aliasName];
    if (!entry) {
      if (chosenAlias === undefined) return { manifest: await this.resolve(name) };
      if ((await this.versions(name)).length === 0) throw notFound(`model '${name}' not found`);
      throw notFound(`model '${name}' has no alias '${chosenAlias}'`);
    }
    const key = reference.key ?? "";
    const salt = `${name}/${aliasName}`;
    const manifest = await this.resolve(name, String(pickVersion(entry, key, salt)));
    const route: Route = { manifest, alias: aliasName, revision: document.revision };
    if (entry.shadow && entry.shadow.version !== manifest.version && isShadowed(entry, key, salt)) {
      route.shadowVersion = entry.shadow.version;
    }
    return route;
  }

  /** One of a version's artifacts, digest verified (gates read golden sets this way). */
  readArtifact(manifest: Manifest, role: ArtifactRole): Promise<Uint8Array> {
    return this.registry.readArtifact(manifest, role, this.config.modelCacheBytes);
  }

  async metadata(name: string, version?: string): Promise<ModelMetadata> {
    const manifest = await this.resolve(name, version);
    const versions = await this.versions(name);
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

  /** Loads the version (if not loaded yet), so readiness means "can answer now". */
  async load(manifest: Manifest, requested?: string): Promise<LoadedModel> {
    const runtime = this.runtimeFor(manifest, requested);
    return this.cache.get(cacheKey(manifest, runtime), this.loader(manifest, runtime));
  }

  private loader(manifest: Manifest, runtime: Runtime): () => Promise<LoadedModel> {
    return () =>
      runtime.load(manifest, (role) =>
        this.registry.readArtifact(manifest, role, this.config.modelCacheBytes),
      );
  }

  /** Registry reachability, for the server readiness probe. */
  async registryReachable(): Promise<boolean> {
    return this.registry.ping();
  }

  /** Runs a request against an already resolved version. */
  async inferResolved(
    manifest: Manifest,
    request: InferenceRequest,
    timing: Timing = new Timing(),
    requestedRuntime?: string,
    repeat = 1,
  ): Promise<InferenceResult> {
    const parameter = request.parameters?.runtime;
    const runtime = this.runtimeFor(
      manifest,
      requestedRuntime ?? (parameter === undefined ? undefined : String(parameter)),
    );
    const inputs = this.decodeInputs(manifest, request);
    const outputs = this.selectOutputs(manifest, request);
    const lease = await timing.measure("load", () =>
      this.cache.acquire(cacheKey(manifest, runtime), this.loader(manifest, runtime)),
    );
    const model = lease.model;
    const names = outputs.map((o) => o.name);
    const limits = this.responseLimits();
    let results: Tensor[];
    try {
      const planned = model.outputElements?.(inputs, names);
      if (planned !== undefined) checkOutputElements(planned, limits);
      results = await timing.measure("compute", async () => {
        // Benchmarks rerun the compute to measure it with workerd's coarse clock;
        // each rerun costs what a request's run costs (a synchronous runtime's
        // result is not awaited there either: `measure` awaits once).
        for (let i = 1; i < repeat; i++) {
          const pending = model.run(inputs, names);
          if (pending instanceof Promise) await pending;
        }
        return model.run(inputs, names);
      });
    } finally {
      lease.release();
    }
    // Before encoding: a model whose output shape follows input values can be asked for anything.
    checkOutputSize(results, limits);
    const response: InferenceResponse = {
      model_name: manifest.name,
      model_version: String(manifest.version),
      ...(request.id !== undefined ? { id: request.id } : {}),
      outputs: results.map((tensor, i) => encodeOutput(tensor, outputs[i]!.parameters)),
    };
    return { response, manifest, runtime: model.runtime, repeat };
  }

  private responseLimits(): ResponseLimits {
    return {
      maxElements: this.config.maxResponseElements ?? Infinity,
      maxBytes: this.config.maxResponseBytes ?? Infinity,
    };
  }

  private decodeInputs(manifest: Manifest, request: InferenceRequest): Tensor[] {
    const maxElements = Math.floor(this.config.maxRequestBytes / MIN_BYTES_PER_ELEMENT);
    const byName = new Map<string, Tensor>();
    for (const input of request.inputs) {
      const spec = manifest.inputs.find((s) => s.name === input.name);
      if (!spec) {
        throw invalid(
          `unknown input '${echo(input.name)}'; ${manifest.name}@${manifest.version} takes ${listNames(manifest.inputs)}`,
        );
      }
      if (byName.has(input.name))
        throw invalid(`input '${echo(input.name)}' is given more than once`);
      const tensor = decodeInput(input, maxElements);
      checkAgainstSpec(tensor, spec);
      byName.set(input.name, tensor);
    }
    const missing = manifest.inputs.filter((s) => !byName.has(s.name));
    if (missing.length > 0) throw invalid(`missing input ${listNames(missing)}`);
    return manifest.inputs.map((s) => byName.get(s.name)!);
  }

  private selectOutputs(
    manifest: Manifest,
    request: InferenceRequest,
  ): { name: string; parameters?: Parameters }[] {
    if (!request.outputs || request.outputs.length === 0) {
      return manifest.outputs.map((o) => ({ name: o.name }));
    }
    const seen = new Set<string>();
    for (const output of request.outputs) {
      if (!manifest.outputs.some((o) => o.name === output.name)) {
        throw invalid(
          `unknown output '${echo(output.name)}'; ${manifest.name}@${manifest.version} produces ${listNames(manifest.outputs)}`,
        );
      }
      if (seen.has(output.name))
        throw invalid(`output '${echo(output.name)}' is requested more than once`);
      seen.add(output.name);
    }
    return request.outputs;
  }
}

const cacheKey = (manifest: Manifest, runtime: Runtime) =>
  `${manifest.name}@${manifest.version}/${runtime.name}`;

function listNames(specs: readonly { name: string }[]): string {
  return specs.map((s) => `'${s.name}'`).join(", ");
}
