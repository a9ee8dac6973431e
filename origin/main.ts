/**
 * @module
 * `npm run origin`: the GPU origin server. Wiring only — configuration from the
 * environment and flags, the store, the app, the listener, and signals:
 * SIGTERM or SIGINT drains and stops gracefully; a second one exits at once.
 */
import { Command } from "commander";
import { createOriginApp } from "./app";
import { parseOriginConfig, type OriginFlags } from "./config";
import { jsonLogger } from "./log";
import { startOriginServer } from "./server";
import { openStore } from "./stores/open-store";

const flags = new Command("pinion-origin")
  .description("Pinion's companion origin: OIP v2 over onnxruntime-node")
  .option("--port <port>", "port to listen on (env PORT, default 8081)")
  .option("--host <address>", "address to listen on (env PINION_ORIGIN_HOST, default 0.0.0.0)")
  .option("--dir <path>", "serve the registry from a plain directory")
  .option("--persist-to <dir>", "serve the registry from wrangler's local R2 state")
  .parse()
  .opts<OriginFlags>();

const log = jsonLogger;
try {
  const config = parseOriginConfig(process.env, flags);
  const signalListeners = {
    SIGTERM: process.listeners("SIGTERM"),
    SIGINT: process.listeners("SIGINT"),
  };
  const store = await openStore(config.store);
  log({ level: "info", event: "store", store: store.description });
  const origin = await createOriginApp({
    store: store.store,
    ...(config.token ? { token: config.token } : {}),
    providers: config.providers,
    cacheBytes: config.cacheBytes,
    maxRequestBytes: config.maxRequestBytes,
    versionListTtlMs: config.versionListTtlMs,
    ...(config.tmpDir ? { tmpDir: config.tmpDir } : {}),
    log,
  });
  origin.metrics.collectProcessMetrics();
  const server = await startOriginServer(origin, {
    port: config.port,
    host: config.host,
    drainDelayMs: config.drainDelayMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    log,
  });

  let signalledAt: number | undefined;
  const stop = async (signal: NodeJS.Signals) => {
    if (signalledAt !== undefined) {
      // A process-group kill plus a parent passing the signal on deliver it twice at once;
      // only a deliberate second signal (e.g. Ctrl-C again) means "exit now".
      if (Date.now() - signalledAt < 1000) return;
      log({ level: "warn", event: "exit_now", signal });
      process.exit(1);
    }
    signalledAt = Date.now();
    log({ level: "info", event: "signal", signal });
    await server.shutdown();
    await store.close();
    process.exit(0);
  };
  // Miniflare (the local-R2 store) installs exit-on-signal hooks; shutting down is ours to do.
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    for (const listener of process.listeners(signal)) {
      if (!signalListeners[signal].includes(listener)) process.off(signal, listener);
    }
  }
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} catch (error) {
  log({
    level: "error",
    event: "startup_failed",
    error: error instanceof Error ? error.message : String(error),
  });
  process.exit(1);
}
