/**
 * @module
 * The demo models `npm start` serves, from the reference fixtures in this repo:
 * each as an fp32 version (onnxruntime) and, where the graph compiles, an int8
 * version after it (the int8 runtime), which is then the default. The digit
 * classifiers carry class labels, so the classification extension names them.
 */
import { fileURLToPath } from "node:url";
import { ModelRegistry } from "../../core/registry/registry";
import type { ObjectStore } from "../../core/registry/store";
import { prepareVersion } from "./prepare";

const fixture = (path: string) => fileURLToPath(new URL(`../../fixtures/${path}`, import.meta.url));

export const DEMO_MODELS = [
  {
    name: "simple",
    file: fixture("seed-simple/simple_model.onnx"),
    golden: fixture("seed-simple/cases.json"),
    int8: true,
  },
  {
    name: "digits-mlp",
    file: fixture("digits-mlp/digits_mlp.onnx"),
    golden: fixture("digits-mlp/testset.json"),
    labels: fixture("digits-labels.txt"),
    int8: true,
  },
  {
    name: "digits-cnn",
    file: fixture("digits-cnn/digits_cnn.onnx"),
    golden: fixture("digits-cnn/testset.json"),
    labels: fixture("digits-labels.txt"),
    int8: true,
  },
  {
    // A transformer encoder over INT64 token ids (an int8 text plan).
    name: "text-small",
    file: fixture("text-small/text_small.onnx"),
    golden: fixture("text-small/testset.json"),
    int8: true,
  },
] as const;

/** Publishes the demo models into an empty bucket; leaves models that already exist alone. */
export async function seedDemoModels(
  store: ObjectStore,
  log: (line: string) => void = () => {},
): Promise<void> {
  const registry = new ModelRegistry(store);
  for (const model of DEMO_MODELS) {
    const { name, file, golden, int8 } = model;
    const labels = "labels" in model ? model.labels : undefined;
    const existing = await registry.listVersions(name);
    if (existing.length > 0) {
      log(`up to date: ${name} (versions ${existing.join(", ")})`);
      continue;
    }
    for (const quantize of int8 ? [undefined, "int8" as const] : [undefined]) {
      const prepared = await prepareVersion(file, {
        golden,
        ...(labels ? { labels } : {}),
        ...(quantize ? { quantize } : {}),
      });
      const manifest = await registry.publish({
        name,
        ...prepared.fields,
        artifacts: prepared.artifacts,
      });
      const size = manifest.artifacts.int8
        ? `int8 plan ${manifest.artifacts.int8.bytes} bytes`
        : `onnx ${manifest.artifacts.onnx.bytes} bytes`;
      log(`published: ${name}@${manifest.version} (${manifest.runtime}, ${size})`);
    }
  }
}
