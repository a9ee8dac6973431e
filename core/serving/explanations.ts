/**
 * @module
 * An explain request against a resolved, edge-served version: checks the
 * request and its parameters, bounds the work (MAX_EXPLAIN_EVALUATIONS), picks
 * the baseline (the version's background set, the mean of its golden inputs,
 * zeros or a value), leases the model from the runtime that serves the
 * version, and runs `explainer.ts` on it in batches. Answers OIP-shaped: the
 * prediction's output, an `attributions` output shaped like the input, and
 * parameters naming what was done.
 */
import { echo, invalid } from "../errors";
import type { Tensor } from "../protocol/datatypes";
import { encodeOutput } from "../protocol/tensor-codec";
import type { InferenceRequest, InferenceResponse, Parameters } from "../protocol/types";
import { backgroundRows, decodeBackground } from "../registry/background";
import { decodeGolden, flatten } from "../registry/golden";
import type { ArtifactRole, Manifest } from "../registry/manifest";
import type { LoadedModel, RuntimeName } from "../runtimes/runtime";
import type { Executor } from "./executor";
import {
  explain,
  parseExplainSettings,
  plannedWork,
  type Baseline,
  type Evaluate,
  type ExplainSettings,
} from "./explainer";
import type { Timing } from "./timing";

/** Model evaluations one explanation may take when MAX_EXPLAIN_EVALUATIONS is not set. */
export const DEFAULT_MAX_EXPLAIN_EVALUATIONS = 200_000;
/** The output tensor that carries the attributions. */
export const ATTRIBUTIONS_OUTPUT = "attributions";
/** Versions whose reference rows are kept decoded (background sets are at most 4 MB). */
const BASELINE_CACHE_ENTRIES = 16;

/** Reads one of a version's artifacts, digest verified. */
export type ArtifactReader = (manifest: Manifest, role: ArtifactRole) => Promise<Uint8Array>;

export class Explanations {
  /** Decoded background sets and golden means, by version (least recently used out first). */
  private readonly references = new Map<string, Promise<Baseline>>();

  constructor(
    private readonly readArtifact: ArtifactReader,
    /** The most model evaluations one explanation may take. */
    readonly maxEvaluations: number = DEFAULT_MAX_EXPLAIN_EVALUATIONS,
  ) {}

  /** Explains the request's one input row for the version, on the runtime that serves it. */
  async explain(
    executor: Executor,
    manifest: Manifest,
    request: InferenceRequest,
    timing: Timing,
    /** `runtime`: the runtime asked for; `repeat`: benchmarks rerun the explanation (compute phase). */
    options: { runtime?: string; repeat?: number } = {},
  ): Promise<{ response: InferenceResponse; runtime: RuntimeName }> {
    const settings = parseExplainSettings(request.parameters);
    const label = `${manifest.name}@${manifest.version}`;
    if (manifest.inputs.length !== 1) {
      throw invalid(
        `${label} takes ${manifest.inputs.length} inputs; explanations need exactly one`,
      );
    }
    const [input] = await timing.measure("decode", async () =>
      executor.inputsOf(manifest, request),
    );
    if (input!.datatype !== "FP32") {
      throw invalid(`explanations need an FP32 input; '${input!.name}' is ${input!.datatype}`);
    }
    const shape = input!.shape;
    if (shape.length < 1 || shape[0] !== 1) {
      throw invalid(
        `explain one instance at a time: input '${input!.name}' has shape [${shape.join(", ")}]; its batch axis must be 1`,
      );
    }
    const output = this.outputOf(manifest, request);
    const rowShape = shape.slice(1);
    const x = input!.data as Float32Array;
    // Bounded before any reference row is read or any buffer allocated: a value, zeros and the
    // golden mean are one row; a background set has the row count its manifest entry allows.
    const referenceRows = await this.referenceRowCount(manifest, settings);
    const work = plannedWork(settings, rowShape, referenceRows, this.maxEvaluations);
    const baseline = await this.baseline(manifest, settings, x.length);
    const parameterRuntime = request.parameters?.runtime;
    const requested =
      options.runtime ?? (parameterRuntime === undefined ? undefined : String(parameterRuntime));
    return executor.withModel(manifest, requested, timing, async (model) => {
      const evaluate = evaluator(model, input!, output);
      const explanation = await timing.measure("compute", async () => {
        for (let i = 1; i < (options.repeat ?? 1); i++) {
          await explain(settings, x, rowShape, baseline, work.samples, evaluate);
        }
        return explain(settings, x, rowShape, baseline, work.samples, evaluate);
      });
      const outputSpec = manifest.outputs.find((o) => o.name === output)!;
      const length = explanation.prediction.length;
      const predicted: Tensor = {
        name: output,
        datatype: "FP32",
        // As `infer` answers it: [1, …row] for a batched output, [row] for an unbatched one.
        shape:
          outputSpec.shape.length <= 1 ? [length] : [1, ...rowShapeOf(outputSpec.shape, length)],
        data: explanation.prediction,
      };
      const parameters: Parameters = {
        method: explanation.method,
        baseline: baseline.description,
        baseline_rows: baseline.count,
        samples: explanation.samples,
        evaluations: explanation.evaluations,
        target: explanation.target,
        target_output: output,
        prediction: explanation.prediction[explanation.target]!,
        base_value: explanation.baseValue,
        seed: settings.seed,
        runtime: model.runtime,
        ...(explanation.exact !== undefined ? { exact: explanation.exact } : {}),
        ...(explanation.window ? { window: explanation.window.join("x") } : {}),
        ...(explanation.stride ? { stride: explanation.stride.join("x") } : {}),
        ...(explanation.convergenceDelta !== undefined
          ? { convergence_delta: explanation.convergenceDelta }
          : {}),
      };
      const response: InferenceResponse = {
        model_name: manifest.name,
        model_version: String(manifest.version),
        ...(request.id !== undefined ? { id: request.id } : {}),
        parameters,
        outputs: [
          encodeOutput(predicted),
          encodeOutput({
            name: ATTRIBUTIONS_OUTPUT,
            datatype: "FP32",
            shape: [...shape],
            data: explanation.attributions,
          }),
        ],
      };
      return { response, runtime: model.runtime };
    });
  }

  /** The output explained: the one the request asks for, else the version's first. */
  private outputOf(manifest: Manifest, request: InferenceRequest): string {
    const asked = request.outputs ?? [];
    if (asked.length > 1) {
      throw invalid("an explanation explains one output: name at most one in 'outputs'");
    }
    const name = asked[0]?.name ?? manifest.outputs[0]!.name;
    const spec = manifest.outputs.find((o) => o.name === name);
    if (!spec) {
      throw invalid(
        `unknown output '${echo(name)}'; ${manifest.name}@${manifest.version} produces ${manifest.outputs.map((o) => `'${o.name}'`).join(", ")}`,
      );
    }
    if (spec.datatype !== "FP32" && spec.datatype !== "FP64") {
      throw invalid(`explanations need a floating-point output; '${name}' is ${spec.datatype}`);
    }
    return name;
  }

  /** How many reference rows the settings will use, from the manifest alone (before reading). */
  private async referenceRowCount(manifest: Manifest, settings: ExplainSettings): Promise<number> {
    const kind = this.baselineKind(manifest, settings);
    if (kind !== "background") return 1;
    return (await this.reference(manifest, "background")).count;
  }

  private baselineKind(
    manifest: Manifest,
    settings: ExplainSettings,
  ): "background" | "golden" | "zeros" | "value" {
    const kind = settings.baseline.kind;
    const label = `${manifest.name}@${manifest.version}`;
    if (kind === "background" && !manifest.artifacts.background) {
      throw invalid(`${label} has no background set; publish it with --background file.json`);
    }
    if (kind === "golden" && !manifest.artifacts.golden) {
      throw invalid(`${label} has no golden set to average; publish it with --golden cases.json`);
    }
    if (kind !== "default") return kind;
    if (manifest.artifacts.background) return "background";
    if (manifest.artifacts.golden) return "golden";
    return "zeros";
  }

  private async baseline(
    manifest: Manifest,
    settings: ExplainSettings,
    features: number,
  ): Promise<Baseline> {
    const kind = this.baselineKind(manifest, settings);
    if (kind === "zeros")
      return { rows: new Float32Array(features), count: 1, description: "zeros" };
    if (kind === "value") {
      const value = (settings.baseline as { value: number }).value;
      return {
        rows: new Float32Array(features).fill(value),
        count: 1,
        description: `value ${value}`,
      };
    }
    const reference = await this.reference(manifest, kind);
    if (reference.rows.length !== reference.count * features) {
      throw invalid(
        `the ${kind} rows of ${manifest.name}@${manifest.version} have ${reference.rows.length / reference.count} values; this input has ${features}`,
      );
    }
    return reference;
  }

  /** A version's background rows or golden mean, read once and kept. */
  private reference(manifest: Manifest, kind: "background" | "golden"): Promise<Baseline> {
    const key = `${manifest.name}@${manifest.version}/${kind}`;
    let entry = this.references.get(key);
    if (entry) {
      this.references.delete(key);
      this.references.set(key, entry);
      return entry;
    }
    entry = this.readArtifact(manifest, kind).then((bytes): Baseline => {
      if (kind === "background") {
        const { rows, count } = backgroundRows(decodeBackground(bytes));
        return { rows, count, description: "background" };
      }
      const golden = decodeGolden(bytes);
      const flat = golden.inputs.map((row) => flatten(row));
      const mean = new Float64Array(flat[0]!.length);
      for (const row of flat) row.forEach((v, j) => (mean[j]! += v));
      return {
        rows: Float32Array.from(mean, (v) => v / flat.length),
        count: 1,
        description: `golden mean (${flat.length} cases)`,
      };
    });
    this.references.set(key, entry);
    entry.catch(() => this.references.delete(key));
    if (this.references.size > BASELINE_CACHE_ENTRIES) {
      this.references.delete(this.references.keys().next().value!);
    }
    return entry;
  }
}

/** The output's row shape when it has fixed trailing dims matching the row's length. */
function rowShapeOf(shape: readonly number[], length: number): number[] {
  const rest = shape.slice(1);
  const fixed = rest.every((d) => d > 0) && rest.reduce((a, d) => a * d, 1) === length;
  return fixed ? rest : [length];
}

/** Runs rows of the explained input through the loaded model, returning the output's rows. */
function evaluator(model: LoadedModel, input: Tensor, output: string): Evaluate {
  const rowShape = input.shape.slice(1);
  return async (rows, count) => {
    const [result] = await model.run(
      [{ name: input.name, datatype: "FP32", shape: [count, ...rowShape], data: rows }],
      [output],
    );
    const data = result!.data;
    // Copied: the int8 runtime may answer with a view it reuses.
    return data instanceof Float32Array ? data.slice() : Float32Array.from(data as Float64Array);
  };
}
