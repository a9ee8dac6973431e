/**
 * @module
 * The data plane: one call per request. `infer` resolves the reference (path
 * version or alias, or the request's `alias` parameter), decides where the
 * version is answered (here, or by the GPU origin), decodes, runs, encodes, and
 * hands back the answer with any shadow run as background work. Gates and
 * shadow runs answer through `answer`, so "where is this version served" is
 * decided in one place: `placedOnOrigin`.
 *
 * Composed per program from parts: the edge uses all four; the origin server
 * has no forwarder (it is the origin) and no shadow recorder. Knows nothing of
 * HTTP; errors are domain errors whose kind the HTTP layer maps to a status.
 */
import {
  conflict,
  invalid,
  modelNotFound,
  notImplemented,
  PinionError,
  unavailable,
  type ErrorKind,
} from "../errors";
import {
  bindBinaryInputs,
  binaryResponseBody,
  parseHeaderLength,
  rawBinaryRequest,
  splitBinaryBody,
} from "../protocol/binary-request";
import { modelConfig, type ModelConfig } from "../protocol/model-config";
import { indexEntries, type RepositoryIndexEntry } from "../protocol/model-repository";
import { decodeRequestJson } from "../protocol/request-json";
import {
  parseInferenceRequest,
  type InferenceRequest,
  type InferenceResponse,
  type ModelMetadata,
  type ModelReady,
} from "../protocol/types";
import type { ArtifactRole, Manifest } from "../registry/manifest";
import { placementOf } from "../registry/manifest";
import type { ModelRegistry } from "../registry/registry";
import type { Runtime } from "../runtimes/runtime";
import { FORWARDER_DEFAULTS, type ServingConfig } from "./config";
import { edgeRuntimeChoice, Executor, type RuntimeChoice } from "./executor";
import { Explanations } from "./explanations";
import { OriginForwarder } from "./origin-forwarder";
import { MetricsRecorder, sumSeries, emptyCounters, type MetricsStore } from "./metrics";
import { ModelCache } from "./model-cache";
import { ModelResolver, type ModelReference, type Resolution } from "./resolver";
import { ShadowRecorder } from "./shadow";
import { modelStat, type StatisticsResponse } from "./statistics";
import { Trace } from "./trace";

export type { ModelReference, Resolution } from "./resolver";

/**
 * Bodies up to this size are held, so a request to the origin can be retried;
 * larger ones stream. (Under wrangler dev, a streamed body whose forward fails
 * also upsets the next request — a Miniflare quirk — so most requests are held.)
 */
const HELD_BODY_BYTES = 1024 * 1024;

/** Kinds of failure that mean "not ready" rather than a bad request. */
const NOT_READY = new Set<ErrorKind>(["unavailable", "upstream_failed", "upstream_timeout"]);

/** A request body, read at most once, in whichever form the data plane needs. */
export interface RequestBody {
  /** The declared length in bytes, when the client sent one. */
  readonly length?: number;
  /** The whole body (its UTF-8 is decoded in the decode phase, so that it is timed). */
  bytes(): Promise<Uint8Array>;
  /** The unread body, to pass on as it arrives. */
  stream(): ReadableStream<Uint8Array> | null;
}

/** One inference request as it arrived. */
export interface InferCall {
  /** The model the path names (version or alias), with the caller's sticky key. */
  reference: ModelReference;
  body: RequestBody;
  contentType?: string;
  /**
   * `Inference-Header-Content-Length` (binary tensor data extension): the JSON
   * header's length in bytes, binary tensor data after it; "0" = raw binary.
   */
  inferenceHeaderLength?: string;
  /** `?runtime=`: the runtime asked for. */
  runtime?: string;
  /** `?repeat=`: benchmarks only, honoured where `benchRepeatMax` allows. */
  repeat?: string;
  /** `?repeat_decode=`: benchmarks only, like `repeat` but for the decode phase. */
  repeatDecode?: string;
  requestId: string;
  traceparent?: string;
}

/** One explain request as it arrived: an inference request whose parameters say how to explain. */
export type ExplainCall = Pick<
  InferCall,
  "reference" | "body" | "runtime" | "repeat" | "requestId"
>;

/** The answer to an inference request. */
export type Answer =
  | {
      kind: "response";
      response: InferenceResponse;
      /** Work that runs after the response (the shadow run), for `waitUntil`. */
      background?: Promise<void>;
    }
  | {
      /** Binary outputs: the JSON header (`headerLength` bytes), then their tensor data. */
      kind: "binary";
      headerLength: number;
      body: Uint8Array<ArrayBuffer>;
      background?: Promise<void>;
    }
  | {
      /** The GPU origin's answer, passed on as it arrives. */
      kind: "relayed";
      status: number;
      headers: Headers;
      body: ReadableStream<Uint8Array> | null;
    };

export interface DataPlaneParts {
  resolver: ModelResolver;
  executor: Executor;
  /** Answers origin-placed versions; without one, every version runs here (the origin server). */
  forwarder?: OriginForwarder;
  /** Mirrors shadowed requests; without one, shadow versions are not run. */
  shadow?: ShadowRecorder;
  /** Largest request body accepted, in bytes. */
  maxRequestBytes: number;
  /** The most times `?repeat=N` may rerun a compute, or `?repeat_decode=N` a decode (0: not at all). */
  benchRepeatMax?: number;
  /** The most model evaluations one explanation may take (MAX_EXPLAIN_EVALUATIONS). */
  maxExplainEvaluations?: number;
  /** Counts requests (the HTTP layer reports each one); without one, nothing is counted. */
  metrics?: MetricsRecorder;
  /** Where counted metrics are read back (the statistics extension); without one, it answers 501. */
  metricsStore?: MetricsStore;
}

export class DataPlane {
  private readonly resolver: ModelResolver;
  private readonly executor: Executor;
  private readonly forwarder: OriginForwarder | undefined;
  private readonly shadow: ShadowRecorder | undefined;
  /** Largest request body accepted, in bytes; the HTTP layer enforces it while reading. */
  readonly maxRequestBytes: number;
  private readonly benchRepeatMax: number;
  private readonly explanations: Explanations;
  /** This isolate's metrics buffer, which the HTTP layer feeds one request at a time. */
  readonly metrics: MetricsRecorder | undefined;
  private readonly metricsStore: MetricsStore | undefined;

  constructor(parts: DataPlaneParts) {
    this.metrics = parts.metrics;
    this.metricsStore = parts.metricsStore;
    this.resolver = parts.resolver;
    this.executor = parts.executor;
    this.forwarder = parts.forwarder;
    this.shadow = parts.shadow;
    this.maxRequestBytes = parts.maxRequestBytes;
    this.benchRepeatMax = parts.benchRepeatMax ?? 0;
    this.explanations = new Explanations(
      (manifest, role) => this.resolver.readArtifact(manifest, role),
      parts.maxExplainEvaluations,
    );
  }

  /** Answers an inference request: resolve → place → decode → run → encode. */
  async infer(call: InferCall, trace: Trace): Promise<Answer> {
    const { reference, body } = call;
    const timing = trace.timing;
    const repeat = this.repeatOf(call.repeat, "repeat");
    const repeatDecode = this.repeatOf(call.repeatDecode, "repeat_decode");
    let resolution: Resolution | undefined;
    if (this.forwarder && (reference.version !== undefined || reference.alias !== undefined)) {
      // The path names the version: an origin-placed one gets the body as a stream, unread.
      resolution = await timing.measure("resolve", () => this.resolver.resolve(reference));
      if (this.placedOnOrigin(resolution.manifest)) {
        served(trace, resolution);
        const held = body.length !== undefined && body.length <= HELD_BODY_BYTES;
        return this.relay(
          resolution.manifest,
          held ? await body.bytes() : body.stream(),
          call,
          trace,
        );
      }
    }
    // The JSON first, since an OIP request may name its alias in its parameters;
    // a body that does not parse is reported after resolving, like any bad request.
    // Reading the body is I/O; parsing it (UTF-8, JSON.parse, the binary framing) is the
    // `decode` phase, with turning the inputs into typed arrays (see `decodeRequest`).
    let json: unknown;
    let bodyError: unknown;
    // The body as it came; with binary tensor data it is forwarded unchanged.
    let raw: Uint8Array | undefined;
    let headerLength: number | undefined;
    let binary: Uint8Array | undefined;
    try {
      if (call.inferenceHeaderLength !== undefined) {
        headerLength = parseHeaderLength(call.inferenceHeaderLength);
      }
      const read = await body.bytes();
      raw = read;
      ({ json, binary } = await timing.measure("decode", async () =>
        parseBody(read, headerLength),
      ));
    } catch (error) {
      bodyError = error;
    }
    const bytes = headerLength === undefined ? undefined : raw;
    const parameterAlias = (json as { parameters?: { alias?: unknown } } | null)?.parameters?.alias;
    const chosen =
      typeof parameterAlias === "string" && reference.alias === undefined
        ? { ...reference, alias: parameterAlias }
        : reference;
    if (!resolution || chosen !== reference) {
      resolution = await timing.measure("resolve", () => this.resolver.resolve(chosen));
    }
    const manifest = resolution.manifest;
    // Name what is being served even when the request then fails.
    served(trace, resolution);
    if (bodyError !== undefined) throw bodyError;
    if (parameterAlias !== undefined && typeof parameterAlias !== "string") {
      throw invalid("the 'alias' request parameter must be a string");
    }
    if (this.placedOnOrigin(manifest)) {
      const forwarded = bytes ?? new TextEncoder().encode(JSON.stringify(json));
      return this.relay(manifest, forwarded, call, trace);
    }
    const request = await timing.measure("decode", async () => {
      // Benchmarks rerun the whole decode, from the body's bytes, to measure it with
      // workerd's coarse clock (the executor reruns its part, the inputs, as often).
      for (let i = 1; i < repeatDecode; i++) {
        const again = parseBody(raw!, headerLength);
        decodeRequest(manifest, again.json, again.binary, bytes);
      }
      return decodeRequest(manifest, json, binary, bytes);
    });
    const execution = await this.executor.run(manifest, request, timing, {
      ...(call.runtime !== undefined ? { runtime: call.runtime } : {}),
      repeat,
      repeatDecode,
      onRuntime: (name) => (trace.runtime = name),
      onColdLoad: () => (trace.coldLoad = true),
    });
    const { response, runtime } = execution;
    trace.runtime = runtime;
    if (repeat > 1) trace.repeat = repeat;
    if (repeatDecode > 1) trace.decodeRepeat = repeatDecode;
    // Shadow runs mirror JSON requests and answers; binary ones are not mirrored.
    const background =
      this.shadow &&
      resolution.shadowVersion !== undefined &&
      bytes === undefined &&
      execution.binary === undefined
        ? this.shadow.mirror(resolution, request, response, (version, shadowed) =>
            this.answerVersion(manifest.name, version, shadowed),
          )
        : undefined;
    if (execution.binary) {
      return {
        kind: "binary",
        ...binaryResponseBody(response, execution.binary),
        ...(background ? { background } : {}),
      };
    }
    return { kind: "response", response, ...(background ? { background } : {}) };
  }

  /**
   * Answers an explain request: resolve (the path, or the request's `alias`
   * parameter) → place → decode → explain, evaluating the model in batches on
   * the runtime that serves the version here. Explanations run where the
   * runtimes are cheap to call thousands of times: an origin-placed version is
   * refused (501), not forwarded.
   */
  async explain(call: ExplainCall, trace: Trace): Promise<InferenceResponse> {
    const timing = trace.timing;
    const repeat = this.repeatOf(call.repeat, "repeat");
    let json: unknown;
    let bodyError: unknown;
    try {
      const read = await call.body.bytes();
      json = await timing.measure("decode", async () => parseBody(read, undefined).json);
    } catch (error) {
      bodyError = error;
    }
    const parameterAlias = (json as { parameters?: { alias?: unknown } } | null)?.parameters?.alias;
    const reference =
      typeof parameterAlias === "string" && call.reference.alias === undefined
        ? { ...call.reference, alias: parameterAlias }
        : call.reference;
    const resolution = await timing.measure("resolve", () => this.resolver.resolve(reference));
    const manifest = resolution.manifest;
    served(trace, resolution);
    if (bodyError !== undefined) throw bodyError;
    if (parameterAlias !== undefined && typeof parameterAlias !== "string") {
      throw invalid("the 'alias' request parameter must be a string");
    }
    if (this.placedOnOrigin(manifest)) {
      throw notImplemented(
        `${manifest.name}@${manifest.version} is served by the GPU origin; explanations run at the edge only, on versions it serves`,
      );
    }
    const request = parseInferenceRequest(json);
    const { response, runtime } = await this.explanations.explain(
      this.executor,
      manifest,
      request,
      timing,
      { ...(call.runtime !== undefined ? { runtime: call.runtime } : {}), repeat },
    );
    trace.runtime = runtime;
    if (repeat > 1) trace.repeat = repeat;
    return response;
  }

  /**
   * One request against a resolved version, answered where it is served: here,
   * or by the GPU origin. Gates and shadow runs go through this.
   */
  async answer(
    manifest: Manifest,
    request: InferenceRequest,
  ): Promise<{ response: InferenceResponse; runtime: string }> {
    if (!this.placedOnOrigin(manifest)) {
      return this.executor.run(manifest, request, new Trace().timing);
    }
    const reply = await this.forwarder!.forward({
      endpoint: "infer",
      manifest,
      body: new TextEncoder().encode(JSON.stringify(request)),
      contentType: "application/json",
      requestId: crypto.randomUUID(),
    });
    if (!reply.ok) {
      const text = (await reply.text()).slice(0, 300);
      throw unavailable(`the origin answered ${reply.status}: ${text}`);
    }
    return { response: (await reply.json()) as InferenceResponse, runtime: "origin" };
  }

  /** Whether a version can answer now: loads it here, or asks the origin. */
  async ready(
    reference: ModelReference,
    trace: Trace,
    options: { runtime?: string; requestId: string; traceparent?: string },
  ): Promise<ModelReady & { version: string; error?: string }> {
    const resolution = await trace.timing.measure("resolve", () =>
      this.resolver.resolve(reference),
    );
    const manifest = resolution.manifest;
    served(trace, resolution);
    const state = { name: manifest.name, version: String(manifest.version), ready: true };
    try {
      if (this.placedOnOrigin(manifest)) {
        trace.runtime = "origin";
        const reply = await trace.timing.measure("load", () =>
          this.forwarder!.forward({
            endpoint: "ready",
            manifest,
            requestId: options.requestId,
            ...(options.traceparent ? { traceparent: options.traceparent } : {}),
          }),
        );
        await reply.body?.cancel();
        if (reply.status !== 200) {
          return { ...state, ready: false, error: `the origin answered ${reply.status}` };
        }
        return state;
      }
      const model = await trace.timing.measure("load", () =>
        this.executor.load(manifest, options.runtime),
      );
      trace.runtime = model.runtime;
    } catch (error) {
      if (!(error instanceof PinionError) || !NOT_READY.has(error.kind)) throw error;
      return { ...state, ready: false, error: error.message };
    }
    return state;
  }

  /** OIP model metadata of the version a reference resolves to. */
  async metadata(reference: ModelReference, trace: Trace): Promise<ModelMetadata> {
    const resolution = await trace.timing.measure("resolve", () =>
      this.resolver.resolve(reference),
    );
    served(trace, resolution);
    return this.resolver.metadata(resolution.manifest);
  }

  /** Triton-shaped model configuration of the version a reference resolves to. */
  async config(reference: ModelReference, trace: Trace): Promise<ModelConfig> {
    const resolution = await trace.timing.measure("resolve", () =>
      this.resolver.resolve(reference),
    );
    served(trace, resolution);
    return modelConfig(resolution.manifest, await this.labels(resolution.manifest));
  }

  /** Every published version of every model, each `READY`, with the aliases routing to it. */
  async repositoryIndex(): Promise<RepositoryIndexEntry[]> {
    const entries: RepositoryIndexEntry[] = [];
    for (const name of await this.resolver.models()) {
      const versions = await this.resolver.versions(name);
      if (versions.length === 0) continue;
      entries.push(...indexEntries(name, versions, await this.resolver.aliases(name)));
    }
    return entries;
  }

  /**
   * The repository extension's load: warms the version a plain request to
   * `name` would get (loads it into this isolate, or asks the origin), since
   * published versions are always available. Fails as `ready` would.
   */
  async load(
    name: string,
    trace: Trace,
    options: { requestId: string; traceparent?: string },
  ): Promise<void> {
    const state = await this.ready({ name }, trace, options);
    if (!state.ready) {
      throw unavailable(
        `model '${name}' version ${state.version} could not be loaded: ${state.error}`,
      );
    }
  }

  /** The repository extension's unload: refused, since published versions are always available. */
  async unload(name: string): Promise<never> {
    await this.resolver.manifest(name);
    throw conflict(
      `model '${name}' cannot be unloaded: published versions are immutable and always available; ` +
        "retire a version by moving its aliases with the admin API",
    );
  }

  /**
   * The statistics extension: one Triton `model_stat` per version of `name`
   * (every model without one), cumulative; a version narrows it to one, an
   * alias to the requests that came through that alias.
   */
  async statistics(reference?: {
    name: string;
    version?: string;
    alias?: string;
  }): Promise<StatisticsResponse> {
    const store = this.metricsStore;
    if (!store) throw notImplemented("this server keeps no statistics (see GET /v2 extensions)");
    const names = reference ? [reference.name] : await this.resolver.models();
    const model_stats: StatisticsResponse["model_stats"] = [];
    for (const name of names) {
      let versions = await this.resolver.versions(name);
      if (reference?.version !== undefined) {
        versions = [(await this.resolver.manifest(name, reference.version)).version];
      } else if (versions.length === 0) {
        if (reference) throw modelNotFound(name);
        continue;
      }
      const report = await store.read(name, {
        ...(versions.length === 1 ? { version: versions[0]! } : {}),
        ...(reference?.alias !== undefined ? { alias: reference.alias } : {}),
      });
      const sums = sumSeries(report.series, (s) => s.version);
      for (const version of versions) {
        model_stats.push(modelStat(name, version, sums.get(version) ?? emptyCounters()));
      }
    }
    return { model_stats };
  }

  /** The manifest of `name` at a version string, or at its latest version. */
  manifest(name: string, version?: string): Promise<Manifest> {
    return this.resolver.manifest(name, version);
  }

  /** One of a version's artifacts, digest verified (gates read golden sets this way). */
  readArtifact(manifest: Manifest, role: ArtifactRole): Promise<Uint8Array> {
    return this.resolver.readArtifact(manifest, role);
  }

  /** A version's class labels (its `labels` artifact), or undefined when it has none. */
  labels(manifest: Manifest): Promise<string[] | undefined> {
    return this.executor.labelsOf(manifest);
  }

  /** Registry reachability, for the server readiness probe. */
  registryReachable(): Promise<boolean> {
    return this.resolver.registryReachable();
  }

  /** The one placement rule: origin-placed versions go to the origin when this plane has one. */
  private placedOnOrigin(manifest: Manifest): boolean {
    return this.forwarder !== undefined && placementOf(manifest) === "origin";
  }

  private async answerVersion(
    name: string,
    version: number,
    request: InferenceRequest,
  ): Promise<InferenceResponse> {
    const manifest = await this.resolver.manifest(name, String(version));
    return (await this.answer(manifest, request)).response;
  }

  /** Passes an inference request to the origin; its answer streams back as it arrives. */
  private async relay(
    manifest: Manifest,
    body: Uint8Array | ReadableStream<Uint8Array> | null,
    call: InferCall,
    trace: Trace,
  ): Promise<Answer> {
    trace.runtime = "origin";
    const reply = await trace.timing.measure("compute", () =>
      this.forwarder!.forward({
        endpoint: "infer",
        manifest,
        body,
        contentType: call.contentType ?? "application/json",
        ...(call.inferenceHeaderLength !== undefined
          ? { inferenceHeaderLength: call.inferenceHeaderLength }
          : {}),
        requestId: call.requestId,
        ...(call.traceparent ? { traceparent: call.traceparent } : {}),
      }),
    );
    return { kind: "relayed", status: reply.status, headers: reply.headers, body: reply.body };
  }

  private repeatOf(value: string | undefined, what: string): number {
    const max = this.benchRepeatMax;
    if (value === undefined || max === 0) return 1;
    const repeat = Number(value);
    if (!Number.isInteger(repeat) || repeat < 1 || repeat > max) {
      throw invalid(`${what} must be an integer from 1 to ${max}`);
    }
    return repeat;
  }
}

/**
 * A request body's JSON, parsed: the whole body as JSON, or with an
 * `Inference-Header-Content-Length`, its JSON header and binary section (a raw
 * binary request, length 0, has neither: its body is the tensor).
 */
function parseBody(
  body: Uint8Array,
  headerLength: number | undefined,
): { json?: unknown; binary?: Uint8Array } {
  if (headerLength === undefined) {
    return { json: decodeRequestJson(new TextDecoder().decode(body)) };
  }
  if (headerLength === 0) return {};
  const { header, binary } = splitBinaryBody(body, headerLength);
  return { json: header, binary };
}

/** The inference request a parsed body makes; `raw` is the body of a binary request. */
function decodeRequest(
  manifest: Manifest,
  json: unknown,
  binary: Uint8Array | undefined,
  raw: Uint8Array | undefined,
): InferenceRequest {
  if (raw !== undefined && binary === undefined) {
    return rawBinaryRequest(`${manifest.name}@${manifest.version}`, manifest.inputs, raw);
  }
  const request = parseInferenceRequest(json);
  bindBinaryInputs(request, binary);
  return request;
}

function served(trace: Trace, resolution: Resolution): void {
  trace.model = `${resolution.manifest.name}@${resolution.manifest.version}`;
  if (resolution.alias !== undefined) trace.alias = resolution.alias;
}

/**
 * The edge's plane: resolution and execution here, origin-placed versions
 * forwarded to the GPU origin (none configured: they answer 503), shadow runs
 * recorded. The CLI composes the same for local gates.
 */
export function edgeDataPlane(
  registry: ModelRegistry,
  runtimes: readonly Runtime[],
  config: ServingConfig,
  now: () => number = Date.now,
  chooseRuntime: RuntimeChoice = edgeRuntimeChoice,
  metricsStore?: MetricsStore,
): DataPlane {
  // Counted only where there is a store to flush to, and unless switched off (benchmarks).
  const metrics =
    metricsStore && config.metricsEnabled !== false
      ? new MetricsRecorder(metricsStore, config.metricsFlushMs ?? 5000, now)
      : undefined;
  return new DataPlane({
    resolver: new ModelResolver(
      registry,
      {
        versionListTtlMs: config.versionListTtlMs,
        aliasTtlMs: config.aliasTtlMs,
        maxArtifactBytes: config.modelCacheBytes,
      },
      now,
    ),
    executor: new Executor(
      registry,
      runtimes,
      new ModelCache(config.modelCacheBytes),
      config,
      chooseRuntime,
    ),
    forwarder: new OriginForwarder(config.origin ?? FORWARDER_DEFAULTS, undefined, now),
    shadow: new ShadowRecorder(
      registry.shadowStats,
      config.shadowFlushMs,
      now,
      metrics && ((sample) => metrics.observeShadow(sample)),
    ),
    maxRequestBytes: config.maxRequestBytes,
    ...(config.benchRepeatMax !== undefined ? { benchRepeatMax: config.benchRepeatMax } : {}),
    ...(config.maxExplainEvaluations !== undefined
      ? { maxExplainEvaluations: config.maxExplainEvaluations }
      : {}),
    ...(metrics ? { metrics } : {}),
    ...(metricsStore ? { metricsStore } : {}),
  });
}
