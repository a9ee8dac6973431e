/**
 * @module
 * Worker entry point: wires the R2 registry, the runtimes and the serving limits
 * into the HTTP app. One data plane per isolate (the model cache lives in it).
 */
import { consoleRoutes } from "../console/shell";
import { parseAdminTokens, type AdminContext } from "../http/admin";
import { createApp } from "../http/app";
import { ModelRegistry } from "../core/registry/registry";
import kernelsWasm from "../build/kernels.wasm";
import { Int8Runtime } from "../core/runtimes/int8/int8-runtime";
import { OrtRuntime } from "../core/runtimes/ort/ort-runtime";
import { parseServingConfig } from "../core/serving/config";
import { edgeDataPlane, type DataPlane } from "../core/serving/data-plane";
import { Promoter } from "../core/serving/promoter";
import { VersionChecker } from "../core/serving/version-checker";
import { ArtifactUploads } from "../core/registry/uploads";
import { r2Store } from "./r2-store";
import { r2Uploads } from "./r2-uploads";

/** Build-time switch (`wrangler deploy --define PINION_WITH_ORT:false`); on unless defined false. */
declare const PINION_WITH_ORT: boolean | undefined;

/** Secrets are not in wrangler.toml, so `wrangler types` does not list them. */
type WorkerEnv = Env & { PINION_ADMIN_TOKEN?: string; PINION_ADMIN_TOKENS?: string };

/** What an isolate builds once per bucket binding: the data plane and the admin API's context. */
interface Wiring {
  plane: DataPlane;
  admin: AdminContext;
}

const wirings = new WeakMap<object, Wiring>();

function wiringFor(env: WorkerEnv): Wiring {
  let wiring = wirings.get(env.MODELS);
  if (!wiring) {
    const registry = new ModelRegistry(r2Store(env.MODELS));
    const config = parseServingConfig(env as unknown as Record<string, unknown>);
    const runtimes = [
      new Int8Runtime(kernelsWasm),
      // Imported on first use: an isolate serving only int8 versions never
      // evaluates onnxruntime-web or pays its initialisation. A build with
      // `--define PINION_WITH_ORT:false` leaves ORT out of the bundle entirely.
      // (Written inline so the bundler can fold the condition and drop the import.)
      ...(typeof PINION_WITH_ORT === "undefined" || PINION_WITH_ORT
        ? [new OrtRuntime(async () => (await import("./ort-workerd")).loadOrt())]
        : []),
    ];
    const plane = edgeDataPlane(registry, runtimes, config);
    wiring = {
      plane,
      admin: {
        tokens: parseAdminTokens(env.PINION_ADMIN_TOKEN, env.PINION_ADMIN_TOKENS),
        uploads: new ArtifactUploads(r2Uploads(env.MODELS)),
        registry,
        promoter: new Promoter(registry, plane),
        checker: new VersionChecker(registry, runtimes, config.modelCacheBytes),
      },
    };
    wirings.set(env.MODELS, wiring);
  }
  return wiring;
}

const app = createApp<WorkerEnv>({
  planeFor: (env) => wiringFor(env).plane,
  adminFor: (env) => wiringFor(env).admin,
});
// The web console's page; its script and stylesheet are static assets (wrangler.toml [assets]).
app.route("/console", consoleRoutes());

export default app;
