/**
 * @module
 * Worker entry point: wires the R2 registry, the runtimes and the serving limits
 * into the HTTP app. One data plane per isolate (the model cache lives in it).
 */
import { consoleRoutes } from "../console/shell";
import { parseAdminTokens, type AdminContext } from "../http/admin";
import { createApp } from "../http/app";
import { ModelRegistry } from "../core/registry/registry";
import { parseServingConfig } from "../core/serving/config";
import { edgeDataPlane, type DataPlane } from "../core/serving/data-plane";
import { Promoter } from "../core/serving/promoter";
import { VersionChecker } from "../core/serving/version-checker";
import { ArtifactUploads } from "../core/registry/uploads";
import { monitorMetricsStore, monitorRollouts, type MonitorNamespace } from "./monitor-client";
import { edgeRuntimes } from "./runtimes";
import { r2Store } from "./r2-store";
import { digestStreamSha256 } from "./digest-stream";
import { r2Uploads } from "./r2-uploads";

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
    const registry = new ModelRegistry(r2Store(env.MODELS), { digests: digestStreamSha256 });
    const config = parseServingConfig(env as unknown as Record<string, unknown>);
    const runtimes = edgeRuntimes();
    const monitors = env.MONITOR as MonitorNamespace;
    const metrics = monitorMetricsStore(monitors);
    const plane = edgeDataPlane(registry, runtimes, config, Date.now, undefined, metrics);
    wiring = {
      plane,
      admin: {
        tokens: parseAdminTokens(env.PINION_ADMIN_TOKEN, env.PINION_ADMIN_TOKENS),
        uploads: new ArtifactUploads(r2Uploads(env.MODELS)),
        registry,
        promoter: new Promoter(registry, plane),
        checker: new VersionChecker(registry, runtimes, config.modelCacheBytes),
        metrics,
        rollouts: monitorRollouts(monitors),
      },
    };
    wirings.set(env.MODELS, wiring);
  }
  return wiring;
}

export { ModelMonitor } from "./model-monitor";

const app = createApp<WorkerEnv>({
  planeFor: (env) => wiringFor(env).plane,
  adminFor: (env) => wiringFor(env).admin,
});
// The web console's page; its script and stylesheet are static assets (wrangler.toml [assets]).
app.route("/console", consoleRoutes());

export default app;
