/**
 * @module
 * Execution: a resolved version's request, run here. Picks the runtime, loads
 * the version through the model cache, decodes the inputs, runs, encodes the
 * outputs. Knows nothing of aliases or of the GPU origin.
 */
import { echo, invalid, resultTooLarge, unavailable } from "../errors";
import {
  encodeBinaryOutput,
  halfValues,
  requestedDatatype,
  toHalfBits,
  wantsBinary,
} from "../protocol/binary-request";
import type { Tensor } from "../protocol/datatypes";
import {
  checkAgainstSpec,
  checkOutputElements,
  checkOutputSize,
  decodeInput,
  encodeOutput,
  type ResponseLimits,
} from "../protocol/tensor-codec";
import type { InferenceRequest, InferenceResponse, Parameters } from "../protocol/types";
import type { Manifest } from "../registry/manifest";
import type { ModelRegistry } from "../registry/registry";
import type { ArtifactSource, LoadedModel, Runtime, RuntimeName } from "../runtimes/runtime";
import {
  checkClassifiable,
  classificationCount,
  classify,
  echoedParameters,
  LabelCache,
} from "./classification";
import { ModelCache } from "./model-cache";
import type { Timing } from "./timing";

/** Smallest JSON encoding of one element is two bytes ("0,"), so no request holds more. */
const MIN_BYTES_PER_ELEMENT = 2;

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

export interface ExecutorConfig {
  /** Largest request body accepted, in bytes: bounds the elements a request may hold. */
  maxRequestBytes: number;
  /** Most output elements in one answer (unbounded when absent). */
  maxResponseElements?: number;
  /** Most bytes of JSON output data in one answer (unbounded when absent). */
  maxResponseBytes?: number;
}

/** What one run produced. */
export interface Execution {
  response: InferenceResponse;
  runtime: RuntimeName;
  /** The binary tensor data of the outputs sent binary, in order (absent when none is). */
  binary?: Uint8Array[];
}

export class Executor {
  private readonly runtimes = new Map<RuntimeName, Runtime>();
  private readonly labels: LabelCache;

  /**
   * `cache` keeps loaded versions within its byte budget, which also bounds
   * any one artifact read.
   */
  constructor(
    private readonly registry: ModelRegistry,
    runtimes: readonly Runtime[],
    private readonly cache: ModelCache,
    private readonly config: ExecutorConfig,
    private readonly chooseRuntime: RuntimeChoice = edgeRuntimeChoice,
  ) {
    for (const runtime of runtimes) this.runtimes.set(runtime.name, runtime);
    this.labels = new LabelCache(registry);
  }

  /** A version's class labels (its `labels` artifact), or undefined when it has none. */
  labelsOf(manifest: Manifest): Promise<string[] | undefined> {
    return this.labels.labelsOf(manifest);
  }

  /** The runtime that serves a version, as `chooseRuntime` decides (see `edgeRuntimeChoice`). */
  runtimeFor(manifest: Manifest, requested?: string): Runtime {
    const name = this.chooseRuntime(manifest, requested);
    const runtime = this.runtimes.get(name);
    if (!runtime) throw unavailable(`this server has no ${name} runtime`);
    return runtime;
  }

  /** Loads the version (if not loaded yet), so readiness means "can answer now". */
  async load(manifest: Manifest, requested?: string): Promise<LoadedModel> {
    const runtime = this.runtimeFor(manifest, requested);
    return this.cache.get(cacheKey(manifest, runtime), this.loader(manifest, runtime));
  }

  /**
   * Runs a request against a resolved version. `runtime` is what the caller
   * asked for (`?runtime=`), else the request's `runtime` parameter decides;
   * `repeat` reruns the compute, `repeatDecode` the decoding of the inputs
   * (benchmarks only).
   */
  async run(
    manifest: Manifest,
    request: InferenceRequest,
    timing: Timing,
    options: {
      runtime?: string;
      repeat?: number;
      repeatDecode?: number;
      onRuntime?: (name: RuntimeName) => void;
      /** Called when the version is not loaded in this isolate and is loaded for this request. */
      onColdLoad?: () => void;
    } = {},
  ): Promise<Execution> {
    const parameter = request.parameters?.runtime;
    const runtime = this.runtimeFor(
      manifest,
      options.runtime ?? (parameter === undefined ? undefined : String(parameter)),
    );
    options.onRuntime?.(runtime.name);
    const repeatDecode = options.repeatDecode ?? 1;
    const inputs = await timing.measure("decode", async () => {
      for (let i = 1; i < repeatDecode; i++) this.decodeInputs(manifest, request);
      return this.decodeInputs(manifest, request);
    });
    const outputs = this.selectOutputs(manifest, request);
    const binary = outputs.map((o) => wantsBinary(o.parameters, request.parameters));
    const narrowed = outputs.map((o) =>
      requestedDatatype(
        o.name,
        manifest.outputs.find((spec) => spec.name === o.name)!.datatype,
        o.parameters,
      ),
    );
    const counts = this.classifications(manifest, outputs);
    const labels = counts.some((k) => k !== undefined) ? await this.labelsOf(manifest) : undefined;
    const load = this.loader(manifest, runtime);
    const lease = await timing.measure("load", () =>
      this.cache.acquire(
        cacheKey(manifest, runtime),
        options.onColdLoad
          ? () => {
              options.onColdLoad!();
              return load();
            }
          : load,
      ),
    );
    const model = lease.model;
    const names = outputs.map((o) => o.name);
    const repeat = options.repeat ?? 1;
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
    // Classified outputs are answered as their strings, so those are what the bounds count.
    const answered = results.map((tensor, i) => {
      const count = counts[i];
      return count === undefined ? tensor : classify(tensor, count, labels);
    });
    // Before encoding: a model whose output shape follows input values can be asked for anything.
    checkOutputElements(
      answered.reduce((sum, tensor) => sum + tensor.data.length, 0),
      limits,
    );
    checkOutputSize(
      answered.filter((_, i) => !binary[i]),
      limits,
    );
    const binaryParts = answered.map((tensor, i) =>
      binary[i] ? encodeBinaryOutput(tensor, narrowed[i]) : undefined,
    );
    const binaryBytes = binaryParts.reduce((sum, part) => sum + (part?.bytes.length ?? 0), 0);
    if (binaryBytes > limits.maxBytes) {
      throw resultTooLarge(
        `the answer's binary output data would be ${binaryBytes} bytes; this server sends at most ${limits.maxBytes} (MAX_RESPONSE_BYTES): send fewer rows or ask for fewer outputs`,
      );
    }
    const parts: Uint8Array[] = [];
    const response: InferenceResponse = {
      model_name: manifest.name,
      model_version: String(manifest.version),
      ...(request.id !== undefined ? { id: request.id } : {}),
      outputs: answered.map((tensor, i) => {
        const as = narrowed[i];
        const parameters =
          counts[i] === undefined
            ? outputs[i]!.parameters
            : echoedParameters(outputs[i]!.parameters);
        const part = binaryParts[i];
        if (part) {
          parts.push(part.bytes);
          return part.output;
        }
        if (as === undefined || tensor.datatype === "BYTES")
          return encodeOutput(tensor, parameters);
        const half = { ...tensor, data: halfValues(toHalfBits(tensor.data as Float32Array)) };
        return { ...encodeOutput(half, parameters), datatype: as };
      }),
    };
    return { response, runtime: model.runtime, ...(parts.length > 0 ? { binary: parts } : {}) };
  }

  /**
   * The request's inputs decoded and checked against the version's signature,
   * in the manifest's order (what `run` feeds the runtime).
   */
  inputsOf(manifest: Manifest, request: InferenceRequest): Tensor[] {
    return this.decodeInputs(manifest, request);
  }

  /**
   * Leases the loaded model that serves a version for `use`, which may run it
   * many times (explanations); the lease holds it in the cache until `use` ends.
   */
  async withModel<T>(
    manifest: Manifest,
    requested: string | undefined,
    timing: Timing,
    use: (model: LoadedModel) => Promise<T>,
  ): Promise<T> {
    const runtime = this.runtimeFor(manifest, requested);
    const lease = await timing.measure("load", () =>
      this.cache.acquire(cacheKey(manifest, runtime), this.loader(manifest, runtime)),
    );
    try {
      return await use(lease.model);
    } finally {
      lease.release();
    }
  }

  private responseLimits(): ResponseLimits {
    return {
      maxElements: this.config.maxResponseElements ?? Infinity,
      maxBytes: this.config.maxResponseBytes ?? Infinity,
    };
  }

  private loader(manifest: Manifest, runtime: Runtime): () => Promise<LoadedModel> {
    const limit = this.cache.budgetBytes;
    const artifacts: ArtifactSource = (role) => this.registry.readArtifact(manifest, role, limit);
    artifacts.stream = (role, sink) => this.registry.streamArtifact(manifest, role, limit, sink);
    artifacts.limitBytes = limit;
    return () => runtime.load(manifest, artifacts);
  }

  /** The classification count each selected output asks for, checked against its signature. */
  private classifications(
    manifest: Manifest,
    outputs: readonly { name: string; parameters?: Parameters }[],
  ): (number | undefined)[] {
    return outputs.map((output) => {
      const count = classificationCount(output);
      if (count !== undefined) {
        checkClassifiable(
          manifest.outputs.find((o) => o.name === output.name)!,
          count,
        );
      }
      return count;
    });
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
