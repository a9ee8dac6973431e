/**
 * @module
 * Listening with @hono/node-server, and shutting down gracefully: readiness
 * turns false first (optionally for `drainDelayMs` while still serving, so a
 * load balancer stops sending traffic), then the server stops accepting
 * connections, requests in flight finish (their responses close their
 * connections), and after `shutdownTimeoutMs` whatever is left is cut off.
 */
import { serve } from "@hono/node-server";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { OriginApp } from "./app";
import { jsonLogger, type Logger } from "./log";

export interface ListenOptions {
  /** 0 picks a free port. */
  port: number;
  host?: string;
  /** How long readiness reports false before the listener closes (default 0). */
  drainDelayMs?: number;
  /** How long requests in flight may take to finish once draining (default 30 s). */
  shutdownTimeoutMs?: number;
  log?: Logger;
}

export interface OriginServer {
  readonly url: string;
  readonly port: number;
  /** Drains and stops; resolves once every connection is closed and the app is closed. */
  shutdown(): Promise<void>;
}

export async function startOriginServer(
  origin: OriginApp,
  options: ListenOptions,
): Promise<OriginServer> {
  const log = options.log ?? jsonLogger;
  const host = options.host ?? "0.0.0.0";
  const server = await new Promise<Server>((resolve, reject) => {
    const listening = serve(
      {
        fetch: origin.app.fetch,
        port: options.port,
        hostname: host,
        // The adapter's default: it replaces the global Request/Response with subclasses
        // that wrap its lightweight requests (Hono's bodyLimit re-wraps c.req.raw with
        // `new Request(…)`, which Node's own Request cannot do for those).
        overrideGlobalObjects: true,
      },
      () => resolve(listening as Server),
    );
    listening.once("error", reject);
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host}:${port}`;
  log({ level: "info", event: "listening", host, port });

  let stopping: Promise<void> | undefined;
  const shutdown = async () => {
    origin.startDraining();
    log({
      level: "info",
      event: "draining",
      inFlight: origin.metrics.requestsInFlight,
      drainDelayMs: options.drainDelayMs ?? 0,
    });
    if (options.drainDelayMs) await new Promise((r) => setTimeout(r, options.drainDelayMs));
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const timeout = setTimeout(() => {
      log({
        level: "warn",
        event: "shutdown_timeout",
        inFlight: origin.metrics.requestsInFlight,
      });
      server.closeAllConnections();
    }, options.shutdownTimeoutMs ?? 30_000);
    await closed;
    clearTimeout(timeout);
    await origin.close();
    log({ level: "info", event: "stopped" });
  };

  return {
    url,
    port,
    shutdown: () => (stopping ??= shutdown()),
  };
}
