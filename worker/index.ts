/**
 * @module
 * Worker entry point: wires the R2 registry, the runtime and the serving limits
 * into the HTTP app. One data plane per isolate (the model cache lives in it).
 */
import { createApp } from "./http/app";
import { ModelRegistry } from "./registry/registry";
import { OrtRuntime } from "./runtimes/ort/ort-runtime";
import { loadOrt } from "./runtimes/ort/ort-workerd";
import { parseServingConfig } from "./serving/config";
import { DataPlane } from "./serving/data-plane";

const planes = new WeakMap<object, DataPlane>();

function planeFor(env: Env): DataPlane {
  let plane = planes.get(env.MODELS);
  if (!plane) {
    plane = new DataPlane(
      new ModelRegistry(env.MODELS),
      new OrtRuntime(loadOrt),
      parseServingConfig(env as unknown as Record<string, unknown>),
    );
    planes.set(env.MODELS, plane);
  }
  return plane;
}

export default createApp<Env>(planeFor);
