/**
 * @module
 * The demo models `npm start` serves, from the reference fixtures in this repo.
 */
import { fileURLToPath } from "node:url";
import { ModelRegistry } from "../../worker/registry/registry";
import type { ObjectStore } from "../../worker/registry/store";
import { publishFileIfChanged } from "./publish-if-changed";

const fixture = (path: string) => fileURLToPath(new URL(`../../fixtures/${path}`, import.meta.url));

export const DEMO_MODELS = [
  { name: "simple", file: fixture("seed-simple/simple_model.onnx") },
  { name: "digits-mlp", file: fixture("digits-mlp/digits_mlp.onnx") },
  { name: "digits-cnn", file: fixture("digits-cnn/digits_cnn.onnx") },
] as const;

export async function seedDemoModels(
  store: ObjectStore,
  log: (line: string) => void = () => {},
): Promise<void> {
  const registry = new ModelRegistry(store);
  for (const { name, file } of DEMO_MODELS) {
    const { manifest, created } = await publishFileIfChanged(registry, name, file);
    log(
      `${created ? "published" : "up to date"}: ${name}@${manifest.version} (${manifest.artifacts.onnx.bytes} bytes)`,
    );
  }
}
