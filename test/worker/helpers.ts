/**
 * @module
 * Shared test helpers for code running inside workerd: fixture files (through
 * the test-only FIXTURES binding), publishing them to the real emulated R2, and
 * calling the worker over its fetch handler.
 */
import { env, exports } from "cloudflare:workers";
import kernelsWasm from "../../build/kernels.wasm";
import { parseGolden } from "../../convert/golden";
import { compileInt8, measureAccuracy } from "../../convert/int8-compiler";
import { ModelRegistry, type PublishInput } from "../../core/registry/registry";
import type { Manifest, Quantization } from "../../core/registry/manifest";
import { flatten } from "../../core/registry/golden";
import { encodeLabels, LABELS_MEDIA_TYPE } from "../../core/registry/labels";
import {
  BACKGROUND_MEDIA_TYPE,
  encodeBackground,
  parseBackgroundFile,
} from "../../core/registry/background";
import { loadProgram } from "../../core/runtimes/int8/int8-runtime";
import { Int8Kernels } from "../../core/runtimes/int8/kernels";
import { loadOrt } from "../../worker/ort-workerd";
import { readOnnxSignature } from "../../core/runtimes/ort/tensor-types";

export async function fixtureBytes(path: string): Promise<Uint8Array> {
  const response = await env.FIXTURES.fetch(`http://fixtures/${path}`);
  if (!response.ok) throw new Error(`fixture ${path}: ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

export async function fixtureJson<T>(path: string): Promise<T> {
  return JSON.parse(new TextDecoder().decode(await fixtureBytes(path))) as T;
}

export const registry = () => new ModelRegistry(env.MODELS);

/**
 * Publishes a fixture model; with `int8`, compiles its int8 plan here inside
 * workerd (same compiler as `pinion publish --quantize int8`) and prefers it;
 * with `golden` (a fixture cases file), stores the golden set and, for int8,
 * measures the plan against fp32 on it as publishing does; with `labels`,
 * stores them as the version's labels artifact (unchecked: tests of the check publish otherwise).
 */
export async function publishFixture(
  name: string,
  path: string,
  version?: number,
  options: {
    int8?: boolean;
    golden?: string;
    labels?: readonly string[];
    /** Background rows for explanations, stored (checked) as the version's background set. */
    background?: unknown[];
    placement?: "edge" | "origin";
  } = {},
): Promise<Manifest> {
  const bytes = await fixtureBytes(path);
  const ort = await loadOrt();
  const { inputs, outputs } = await readOnnxSignature(ort, bytes);
  const artifacts: PublishInput["artifacts"] = { onnx: { bytes, mediaType: "application/x-onnx" } };
  const golden = options.golden
    ? parseGolden(new TextDecoder().decode(await fixtureBytes(options.golden)), inputs, outputs)
    : undefined;
  if (golden) {
    artifacts.golden = {
      bytes: new TextEncoder().encode(JSON.stringify(golden)),
      mediaType: "application/json",
    };
  }
  if (options.labels) {
    artifacts.labels = { bytes: encodeLabels(options.labels), mediaType: LABELS_MEDIA_TYPE };
  }
  if (options.background) {
    const file = new TextEncoder().encode(JSON.stringify(options.background));
    artifacts.background = {
      bytes: encodeBackground(parseBackgroundFile(file, inputs)),
      mediaType: BACKGROUND_MEDIA_TYPE,
    };
  }
  let quantization: Quantization | undefined;
  if (options.int8) {
    const kernels = await Int8Kernels.instantiate(kernelsWasm);
    const outcome = compileInt8(bytes, kernels);
    if (!outcome.ok) throw new Error(`${path} does not compile to int8: ${outcome.reason}`);
    artifacts.int8 = { bytes: outcome.plan, mediaType: "application/x-pinion-int8-plan" };
    quantization = {
      scheme: "int8-per-channel-symmetric-weights-dynamic-u8-activations",
      layers: outcome.layers,
    };
    if (golden) {
      const rows = golden.inputs.map((row) => Float32Array.from(flatten(row)));
      const width = rows[0]!.length;
      const session = await ort.InferenceSession.create(bytes);
      const result = await session.run({
        [golden.inputName]: new ort.Tensor(
          "float32",
          Float32Array.from(rows.flatMap((r) => Array.from(r))),
          [rows.length, width],
        ),
      });
      const all = result[golden.outputName]!.data as Float32Array;
      const n = all.length / rows.length;
      const program = await loadProgram(kernelsWasm, outcome.plan);
      quantization.accuracy = measureAccuracy((x) => program.run(x, 1), {
        inputs: rows,
        fp32: rows.map((_, i) => all.slice(i * n, (i + 1) * n)),
        ...(golden.labels ? { labels: golden.labels } : {}),
      });
      await session.release();
    }
  }
  return registry().publish({
    name,
    version,
    platform: "onnx_onnxv1",
    inputs,
    outputs,
    runtime: options.int8 ? "int8" : "ort",
    artifacts,
    ...(quantization ? { quantization } : {}),
    ...(options.placement ? { placement: options.placement } : {}),
  });
}

/** Sends a request to the worker under test. */
export function api(path: string, init?: RequestInit): Promise<Response> {
  return exports.default.fetch(new Request(`http://pinion.test${path}`, init));
}

export function postJson(path: string, body: unknown, headers: Record<string, string> = {}) {
  return api(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}
