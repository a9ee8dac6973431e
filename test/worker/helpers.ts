/**
 * @module
 * Shared test helpers for code running inside workerd: fixture files (through
 * the test-only FIXTURES binding), publishing them to the real emulated R2, and
 * calling the worker over its fetch handler.
 */
import { env, exports } from "cloudflare:workers";
import kernelsWasm from "../../build/kernels.wasm";
import { compileInt8 } from "../../convert/int8-compiler";
import { ModelRegistry, type PublishInput } from "../../worker/registry/registry";
import type { Manifest, Quantization } from "../../worker/registry/manifest";
import { Int8Kernels } from "../../worker/runtimes/int8/kernels";
import { loadOrt } from "../../worker/runtimes/ort/ort-workerd";
import { readOnnxSignature } from "../../worker/runtimes/ort/tensor-types";

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
 * workerd (same compiler as `pinion publish --quantize int8`) and prefers it.
 */
export async function publishFixture(
  name: string,
  path: string,
  version?: number,
  options: { int8?: boolean } = {},
): Promise<Manifest> {
  const bytes = await fixtureBytes(path);
  const { inputs, outputs } = await readOnnxSignature(await loadOrt(), bytes);
  const artifacts: PublishInput["artifacts"] = { onnx: { bytes, mediaType: "application/x-onnx" } };
  let quantization: Quantization | undefined;
  if (options.int8) {
    const outcome = compileInt8(bytes, await Int8Kernels.instantiate(kernelsWasm));
    if (!outcome.ok) throw new Error(`${path} does not compile to int8: ${outcome.reason}`);
    artifacts.int8 = { bytes: outcome.plan, mediaType: "application/x-pinion-int8-plan" };
    quantization = {
      scheme: "int8-per-channel-symmetric-weights-dynamic-u8-activations",
      layers: outcome.layers,
    };
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
