/**
 * @module
 * Idempotent publishing for the demo seed: publish a file unless the model's
 * latest version already serves exactly the same ONNX bytes.
 */
import { sha256Hex } from "../../worker/registry/digest";
import type { Manifest } from "../../worker/registry/manifest";
import type { ModelRegistry } from "../../worker/registry/registry";
import { prepareVersion } from "./prepare";

export async function publishFileIfChanged(
  registry: ModelRegistry,
  name: string,
  file: string,
): Promise<{ manifest: Manifest; created: boolean }> {
  const prepared = await prepareVersion(file);
  const latest = (await registry.listVersions(name)).at(-1);
  if (latest !== undefined) {
    const manifest = await registry.getManifest(name, latest);
    if (manifest.artifacts.onnx.sha256 === (await sha256Hex(prepared.artifacts.onnx.bytes))) {
      return { manifest, created: false };
    }
  }
  const manifest = await registry.publish({
    name,
    ...prepared.fields,
    artifacts: prepared.artifacts,
  });
  return { manifest, created: true };
}
