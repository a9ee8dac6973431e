/**
 * @module
 * Publishing an ONNX file as a new version, from Node. The signature is read by
 * onnxruntime-web itself, so a model it cannot load never becomes a version.
 */
import * as ort from "onnxruntime-web";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { sha256Hex } from "../../worker/registry/digest";
import type { Manifest } from "../../worker/registry/manifest";
import type { ModelRegistry } from "../../worker/registry/registry";
import { readOnnxSignature } from "../../worker/runtimes/ort/tensor-types";

ort.env.wasm.numThreads = 1;
ort.env.logLevel = "error";

export const ONNX_MEDIA_TYPE = "application/x-onnx";

export async function publishOnnx(
  registry: ModelRegistry,
  name: string,
  bytes: Uint8Array,
  options: { version?: number; source?: string } = {},
): Promise<Manifest> {
  const { inputs, outputs } = await readOnnxSignature(ort, bytes);
  return registry.publish({
    name,
    version: options.version,
    platform: "onnx_onnxv1",
    inputs,
    outputs,
    runtime: "ort",
    artifacts: { onnx: { bytes, mediaType: ONNX_MEDIA_TYPE } },
    source: options.source,
  });
}

/**
 * Publishes `file` unless the model's latest version already holds exactly these
 * bytes; returns the version that serves them and whether it was just created.
 */
export async function publishOnnxFileIfChanged(
  registry: ModelRegistry,
  name: string,
  file: string,
): Promise<{ manifest: Manifest; created: boolean }> {
  const bytes = new Uint8Array(await readFile(file));
  const latest = (await registry.listVersions(name)).at(-1);
  if (latest !== undefined) {
    const manifest = await registry.getManifest(name, latest);
    if (manifest.artifacts.onnx.sha256 === (await sha256Hex(bytes))) {
      return { manifest, created: false };
    }
  }
  return {
    manifest: await publishOnnx(registry, name, bytes, { source: basename(file) }),
    created: true,
  };
}
