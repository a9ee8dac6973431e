/**
 * The edge's failure handling for origin-placed versions, against real
 * processes: `wrangler dev` → a fault-injecting HTTP proxy (written here, on
 * node:http) → a real origin (`origin/main.ts`) over the dev server's local R2.
 * The proxy passes requests through, or plays a dead, slow, garbled or
 * mismatched origin; each fault must give its documented status with a clear
 * `{"error"}` fast, the circuit breaker must stop traffic to a failing origin
 * and let it back after its cooldown, and connection failures are retried only
 * where the request can be resent.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { freePort, root, startDevServer, type DevServer } from "../../scripts/lib/dev-server";
import type { Manifest } from "../../core/registry/manifest";

const run = promisify(execFile);
const ADMIN_TOKEN = "e2e-origin-faults-admin";
const ORIGIN_TOKEN = "e2e-origin-faults-origin-token";
const TIMEOUT_MS = 1500;
const COOLDOWN_MS = 2000;
const THRESHOLD = 3;
/** What "fast" means for a failure that needs no waiting: far below any hang. */
const FAST_MS = 1200;
const MODEL = "far";
const PINNED = `/v2/models/${MODEL}/versions/1/infer`;

/** What the proxy does with the next requests. */
type Mode =
  | {
      kind: "pass";
      /** Request headers replaced on the way to the origin. */
      request?: Record<string, string>;
      /** Response headers replaced on the way back. */
      response?: Record<string, string>;
    }
  /** Waits this long before passing the request on (if the caller is still there). */
  | { kind: "delay"; ms: number }
  /** Answers itself, without asking the origin. */
  | { kind: "answer"; status: number; contentType: string; body: string }
  /**
   * Starts a proper answer (headers announcing `declared` bytes) and sends only
   * `body`; then goes quiet (`hang`) or closes the connection (short answer).
   */
  | { kind: "partial"; body: string; declared: number; hang: boolean };

interface Seen {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

/** A fault-injecting reverse proxy in front of the origin; counts what reaches it. */
class FaultProxy {
  mode: Mode = { kind: "pass" };
  /** Requests that reached the proxy (and so would have reached the origin). */
  hits = 0;
  /** TCP connections accepted, including those reset at once. */
  connections = 0;
  seen: Seen[] = [];
  private resets = 0;
  private server: Server | undefined;

  constructor(
    readonly port: number,
    private readonly originPort: number,
  ) {}

  /** The next `count` connections are reset as soon as they are accepted (nothing is read). */
  resetNextConnections(count: number): void {
    this.resets = count;
  }

  async up(): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    server.on("connection", (socket) => {
      this.connections += 1;
      if (this.resets > 0) {
        this.resets -= 1;
        socket.resetAndDestroy();
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.server = server;
  }

  /** Stops listening and cuts every connection: the edge then gets "connection refused". */
  async down(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.hits += 1;
    this.seen.push({ method: req.method!, path: req.url!, headers: req.headers });
    const mode = this.mode;
    switch (mode.kind) {
      case "pass":
        return this.forward(req, res, mode.request, mode.response);
      case "delay": {
        const timer = setTimeout(() => {
          if (!res.destroyed && !res.writableEnded) this.forward(req, res);
        }, mode.ms);
        res.on("close", () => clearTimeout(timer));
        return;
      }
      case "partial":
        req.resume();
        res.writeHead(200, {
          "content-type": "application/json",
          "x-pinion-model": `${MODEL}@1`,
          "content-length": String(mode.declared),
        });
        res.write(mode.body);
        if (!mode.hang) res.socket?.destroy();
        return;
      case "answer":
        req.resume();
        res.writeHead(mode.status, {
          "content-type": mode.contentType,
          connection: "close",
        });
        res.end(mode.body);
    }
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    requestHeaders: Record<string, string> = {},
    responseHeaders: Record<string, string> = {},
  ): void {
    const upstream = httpRequest(
      {
        host: "127.0.0.1",
        port: this.originPort,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, ...requestHeaders, host: `127.0.0.1:${this.originPort}` },
        agent: false,
      },
      (answer) => {
        const headers: IncomingHttpHeaders = { ...answer.headers, ...responseHeaders };
        delete headers["keep-alive"];
        // One request per connection, so a reset always meets a fresh connection.
        headers.connection = "close";
        res.writeHead(answer.statusCode!, headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  }
}

interface ErrorAnswer {
  status: number;
  ms: number;
  error: string;
  headers: Headers;
}

let dir: string;
let server: DevServer | undefined;
let origin: ChildProcess | undefined;
let originOutput = "";
let proxy: FaultProxy;
let persistTo: string;
let originPort: number;
let manifest: Manifest;
let cases: { inputs: number[][]; expected: number[][] };

async function startOrigin(persistTo: string, port: number): Promise<ChildProcess> {
  const tsx = new URL("node_modules/tsx/dist/cli.mjs", root).pathname;
  const child = spawn(
    process.execPath,
    [
      tsx,
      "origin/main.ts",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--persist-to",
      persistTo,
    ],
    {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      // Its scratch directory inside ours, so nothing is left behind even if it exits abruptly.
      env: {
        ...process.env,
        PINION_ORIGIN_TOKEN: ORIGIN_TOKEN,
        PINION_ORIGIN_TMP_DIR: join(dir, "origin-tmp"),
      },
    },
  );
  child.stdout!.on("data", (d) => (originOutput += d));
  child.stderr!.on("data", (d) => (originOutput += d));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the origin exited early:\n${originOutput}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/v2/health/ready`)).ok) return child;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the origin did not come up:\n${originOutput}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function stopOrigin(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function pinion(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      [new URL("bin/pinion.js", root).pathname, ...args],
      {
        cwd: root,
        env: {
          ...process.env,
          PINION_ADMIN_TOKEN: ADMIN_TOKEN,
          PINION_STATE_DIR: join(dir, "cli"),
        },
      },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const inferBody = (rows: number[][]) =>
  JSON.stringify({
    inputs: [{ name: "input", shape: [rows.length, 10], datatype: "FP32", data: rows }],
  });

async function infer(path = PINNED, rows = [cases.inputs[0]!], init: RequestInit = {}) {
  const started = performance.now();
  const response = await fetch(`${server!.base}${path}`, {
    method: "POST",
    ...init,
    headers: { "content-type": "application/json", ...(init.headers ?? {}) },
    body: inferBody(rows),
  });
  const text = await response.text();
  return { response, text, ms: performance.now() - started };
}

/** A request that must fail: its status, how long it took, and its `{"error"}` message. */
async function failing(path = PINNED, rows?: number[][]): Promise<ErrorAnswer> {
  const { response, text, ms } = await infer(path, rows);
  expect(response.headers.get("content-type")).toMatch(/application\/json/);
  const body = JSON.parse(text) as { error?: unknown };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(typeof body.error).toBe("string");
  // A clear message, never a stack trace.
  expect(body.error as string).not.toMatch(/\n\s+at /);
  // Errors still say what would have answered.
  expect(response.headers.get("x-pinion-model")).toBe(`${MODEL}@1`);
  expect(response.headers.get("x-pinion-runtime")).toBe("origin");
  return { status: response.status, ms, error: body.error as string, headers: response.headers };
}

/** The origin answers through the proxy: right outputs, from the origin. Also closes the breaker. */
async function expectHealthy(path = PINNED): Promise<void> {
  const hits = proxy.hits;
  const { response, text } = await infer(path);
  expect(response.status, text).toBe(200);
  expect(response.headers.get("x-pinion-runtime")).toBe("origin");
  expect(response.headers.get("x-pinion-model")).toBe(`${MODEL}@1`);
  const body = JSON.parse(text) as { outputs: { data: number[] }[] };
  const expected = cases.expected[0]!;
  const data = body.outputs[0]!.data.flat(2) as number[];
  expect(data).toHaveLength(expected.length);
  for (const [i, v] of data.entries()) expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-5);
  expect(proxy.hits).toBe(hits + 1);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pinion-origin-faults-"));
  cases = JSON.parse(
    await readFile(new URL("fixtures/seed-simple/cases.json", root), "utf8"),
  ) as typeof cases;
  persistTo = join(dir, "state");
  await mkdir(join(dir, "origin-tmp"));
  originPort = await freePort();
  proxy = new FaultProxy(await freePort(), originPort);
  await proxy.up();
  server = await startDevServer(persistTo, [
    "--var",
    `PINION_ADMIN_TOKEN:${ADMIN_TOKEN}`,
    "--var",
    `ORIGIN_URL:http://127.0.0.1:${proxy.port}`,
    "--var",
    `PINION_ORIGIN_TOKEN:${ORIGIN_TOKEN}`,
    "--var",
    `ORIGIN_TIMEOUT_MS:${TIMEOUT_MS}`,
    "--var",
    `ORIGIN_BREAKER_COOLDOWN_MS:${COOLDOWN_MS}`,
    "--var",
    `ORIGIN_BREAKER_THRESHOLD:${THRESHOLD}`,
    "--var",
    "VERSION_LIST_TTL_MS:0",
  ]);
  // ORIGIN_URL is given, so npm start's script runs no origin of its own: this one is ours.
  expect(server.output()).not.toMatch(/GPU origin:/);
  origin = await startOrigin(persistTo, originPort);

  const published = await pinion([
    "publish",
    MODEL,
    new URL("fixtures/seed-simple/simple_model.onnx", root).pathname,
    "--golden",
    new URL("fixtures/seed-simple/cases.json", root).pathname,
    "--placement",
    "origin",
    "--target",
    server.base,
    "--json",
  ]);
  expect(published.stderr).toBe("");
  expect(published.code).toBe(0);
  manifest = JSON.parse(published.stdout) as Manifest;
  expect(manifest).toMatchObject({ name: MODEL, version: 1, placement: "origin" });
  // Load it on the origin once, so later timings measure the hop, not the first load.
  await expectHealthy();
}, 180_000);

afterAll(async () => {
  await server?.stop();
  if (origin) await stopOrigin(origin);
  await proxy?.down();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("edge → origin, through a fault-injecting proxy", () => {
  beforeEach(() => {
    proxy.mode = { kind: "pass" };
  });

  it("passes requests pinned to the version and its sha256, with the token, request id and traceparent", async () => {
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for (const path of [PINNED, `/v2/models/${MODEL}/infer`]) {
      const before = proxy.seen.length;
      const { response, text } = await infer(path, [cases.inputs[0]!], {
        headers: { traceparent },
      });
      expect(response.status, text).toBe(200);
      expect(response.headers.get("x-pinion-runtime")).toBe("origin");
      expect(response.headers.get("x-pinion-origin-timing")).toMatch(/compute;dur=/);
      expect(proxy.seen.length).toBe(before + 1);
      const seen = proxy.seen.at(-1)!;
      expect(seen.method).toBe("POST");
      expect(seen.path).toBe(PINNED);
      expect(seen.headers.authorization).toBe(`Bearer ${ORIGIN_TOKEN}`);
      expect(seen.headers["x-pinion-artifact-sha256"]).toBe(manifest.artifacts.onnx.sha256);
      expect(seen.headers["x-request-id"]).toBe(response.headers.get("x-request-id"));
      expect(seen.headers.traceparent).toBe(traceparent);
    }
  });

  it("streams a large request body through (not held, so not resendable) and answers it", async () => {
    const rows = Array.from({ length: 8000 }, (_, i) => cases.inputs[i % cases.inputs.length]!);
    // Over the 1 MiB the edge holds for retries, so it streams.
    expect(inferBody(rows).length).toBeGreaterThan(1024 * 1024);
    const { response, text } = await infer(PINNED, rows);
    expect(response.status, text.slice(0, 300)).toBe(200);
    const body = JSON.parse(text) as { outputs: { shape: number[]; data: number[] }[] };
    expect(body.outputs[0]!.shape).toEqual([8000, 10]);
    const last = (body.outputs[0]!.data.flat(2) as number[]).slice(-10);
    const expected = cases.expected[7999 % cases.inputs.length]!;
    for (const [i, v] of last.entries()) expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-5);
  });

  it("origin down (connection refused): 503 fast, with a clear error; recovers when it is back", async () => {
    await proxy.down();
    try {
      const answer = await failing();
      expect(answer.status).toBe(503);
      expect(answer.error).toMatch(/cannot reach the origin for far@1 \(3 attempts\)/);
      expect(answer.ms).toBeLessThan(FAST_MS);

      const ready = await fetch(`${server!.base}/v2/models/${MODEL}/versions/1/ready`);
      expect(ready.status).toBe(503);
      const body = (await ready.json()) as { ready: boolean; error: string };
      expect(body.ready).toBe(false);
      expect(body.error).toMatch(/cannot reach the origin/);
    } finally {
      await proxy.up();
    }
    await expectHealthy();
  });

  it("the real origin process stopped: 503 fast; started again (it reloads the version): 200", async () => {
    await stopOrigin(origin!);
    const answer = await failing();
    expect(answer.status).toBe(503);
    expect(answer.error).toMatch(/cannot reach the origin for far@1 \(3 attempts\)/);
    expect(answer.ms).toBeLessThan(FAST_MS);
    origin = await startOrigin(persistTo, originPort);
    await expectHealthy();
  }, 90_000);

  it("origin slow past ORIGIN_TIMEOUT_MS: 504 after the timeout, not a hang", async () => {
    proxy.mode = { kind: "delay", ms: TIMEOUT_MS + 3000 };
    const hits = proxy.hits;
    const answer = await failing();
    expect(answer.status).toBe(504);
    expect(answer.error).toBe(`the origin did not answer far@1 within ${TIMEOUT_MS} ms`);
    expect(answer.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(answer.ms).toBeLessThan(TIMEOUT_MS + FAST_MS);
    // A timeout is not retried: the request had reached the origin.
    expect(proxy.hits).toBe(hits + 1);
    proxy.mode = { kind: "pass" };
    await expectHealthy();
  });

  const garbage: { what: string; mode: Mode; message: RegExp }[] = [
    {
      what: "200 text/plain",
      mode: { kind: "answer", status: 200, contentType: "text/plain", body: "hello from nginx" },
      message: /^the origin answered far@1 with 200: a text\/plain$/,
    },
    {
      what: "200 with broken JSON",
      mode: {
        kind: "answer",
        status: 200,
        contentType: "application/json",
        body: '{"outputs": [{"name": "output", "data": [0.1, ',
      },
      message: /^the origin answered for no model, not far@1$/,
    },
    {
      what: "500 with a JSON error",
      mode: {
        kind: "answer",
        status: 500,
        contentType: "application/json",
        body: '{"error":"CUDA out of memory"}',
      },
      message: /^the origin answered far@1 with 500: CUDA out of memory$/,
    },
    {
      what: "502 HTML from a load balancer",
      mode: {
        kind: "answer",
        status: 502,
        contentType: "text/html",
        body: "<html><body>Bad Gateway</body></html>",
      },
      message: /^the origin answered far@1 with 502: a text\/html$/,
    },
    {
      what: "an answer for another version",
      mode: { kind: "pass", response: { "x-pinion-model": "far@7" } },
      message: /^the origin answered for far@7, not far@1$/,
    },
  ];
  for (const { what, mode, message } of garbage) {
    it(`origin answering garbage (${what}): 502 fast, naming what was wrong`, async () => {
      proxy.mode = mode;
      const hits = proxy.hits;
      const answer = await failing();
      expect(answer.status).toBe(502);
      expect(answer.error).toMatch(message);
      expect(answer.ms).toBeLessThan(FAST_MS);
      expect(proxy.hits).toBe(hits + 1);
      proxy.mode = { kind: "pass" };
      await expectHealthy();
    });
  }

  for (const hang of [true, false]) {
    it(`an answer the origin ${hang ? "stops sending mid-body" : "ends short of its Content-Length"}: a clean ${hang ? "504" : "502/503"}, never a hang or a broken 200`, async () => {
      proxy.mode = { kind: "partial", body: '{"model_name":"far",', declared: 1000, hang };
      const answer = await failing();
      if (hang) {
        expect(answer.status, answer.error).toBe(504);
        expect(answer.error).toMatch(
          /^the origin (stalled mid-answer for|did not finish answering) far@1/,
        );
        expect(answer.ms).toBeLessThan(TIMEOUT_MS + 3000);
      } else {
        // Cut before or after the headers: either way a clear error, fast.
        expect([502, 503]).toContain(answer.status);
        expect(answer.error).toMatch(/far@1/);
        expect(answer.ms).toBeLessThan(FAST_MS);
      }
      proxy.mode = { kind: "pass" };
      await expectHealthy();
    });
  }

  it("the origin holding a different sha256 (412 there): 502 naming both digests", async () => {
    const other = "ab".repeat(32);
    proxy.mode = { kind: "pass", request: { "x-pinion-artifact-sha256": other } };
    const answer = await failing();
    expect(answer.status).toBe(502);
    expect(answer.error).toMatch(/^the origin holds different bytes for far@1: /);
    expect(answer.error).toContain(other);
    expect(answer.error).toContain(manifest.artifacts.onnx.sha256);
    expect(answer.ms).toBeLessThan(FAST_MS);
  });

  it("the origin refusing the token (401 there): 502 saying to check PINION_ORIGIN_TOKEN", async () => {
    proxy.mode = { kind: "pass", request: { authorization: "Bearer not-the-token" } };
    const answer = await failing();
    expect(answer.status).toBe(502);
    expect(answer.error).toBe(
      "the origin refused this worker's token (401); check PINION_ORIGIN_TOKEN",
    );
    expect(answer.ms).toBeLessThan(FAST_MS);
  });

  it("the origin's own 4xx answers pass through unchanged", async () => {
    const { response, text } = await infer(PINNED, [[1, 2, 3]]);
    expect(response.status).toBe(400);
    expect(response.headers.get("x-pinion-runtime")).toBe("origin");
    expect((JSON.parse(text) as { error: string }).error).toMatch(/shape|elements|10/);
    await expectHealthy();
  });

  it("retries a refused connection when the body is held: first reset, then accepted → 200", async () => {
    const connections = proxy.connections;
    const hits = proxy.hits;
    proxy.resetNextConnections(1);
    await expectHealthy();
    expect(proxy.connections).toBe(connections + 2);
    expect(proxy.hits).toBe(hits + 1);

    // Every attempt refused: ORIGIN_RETRIES (2) + 1 connections, then 503.
    proxy.resetNextConnections(3);
    const answer = await failing();
    expect(answer.status).toBe(503);
    expect(answer.error).toMatch(/cannot reach the origin for far@1 \(3 attempts\)/);
    expect(answer.ms).toBeLessThan(FAST_MS);
    expect(proxy.connections).toBe(connections + 5);
    expect(proxy.hits).toBe(hits + 1);
    await expectHealthy();
  });

  it("the circuit breaker opens after the threshold, fails fast without reaching the origin, and closes after the cooldown", async () => {
    await expectHealthy(); // closed, no failures counted
    proxy.mode = {
      kind: "answer",
      status: 503,
      contentType: "application/json",
      body: '{"error":"overloaded"}',
    };
    const hits = proxy.hits;
    for (let i = 0; i < THRESHOLD; i++) {
      const answer = await failing();
      expect(answer.status).toBe(502);
      expect(answer.error).toMatch(/with 503: overloaded/);
    }
    expect(proxy.hits).toBe(hits + THRESHOLD);
    const openedAt = performance.now();

    // Open: 503 at once, and nothing reaches the origin.
    for (let i = 0; i < 5; i++) {
      const answer = await failing();
      expect(answer.status).toBe(503);
      expect(answer.error).toMatch(
        /^the origin is failing; far@1 is not tried again for \d s \(circuit open\)$/,
      );
      expect(answer.ms).toBeLessThan(FAST_MS / 2);
    }
    const ready = await fetch(`${server!.base}/v2/models/${MODEL}/versions/1/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { error: string }).error).toMatch(/circuit open/);
    expect(proxy.hits).toBe(hits + THRESHOLD);

    // The origin is healthy again, but the circuit stays open until the cooldown ends …
    proxy.mode = { kind: "pass" };
    expect((await failing()).error).toMatch(/circuit open/);
    expect(proxy.hits).toBe(hits + THRESHOLD);

    // … after which one trial request goes through; it fails, so the circuit opens again.
    proxy.mode = { kind: "answer", status: 500, contentType: "text/plain", body: "still down" };
    await sleep(COOLDOWN_MS + 200 - (performance.now() - openedAt));
    const trial = await failing();
    expect(trial.status).toBe(502);
    expect(proxy.hits).toBe(hits + THRESHOLD + 1);
    const reopened = await failing();
    expect(reopened.status).toBe(503);
    expect(reopened.error).toMatch(/circuit open/);
    expect(proxy.hits).toBe(hits + THRESHOLD + 1);

    // Recovery: the origin answers, the cooldown passes, the trial succeeds and the circuit closes.
    proxy.mode = { kind: "pass" };
    await sleep(COOLDOWN_MS + 200);
    await expectHealthy();
    for (let i = 0; i < 3; i++) await expectHealthy();
    const readyAgain = await fetch(`${server!.base}/v2/models/${MODEL}/versions/1/ready`);
    expect(readyAgain.status).toBe(200);
    expect(await readyAgain.json()).toEqual({ name: MODEL, version: "1", ready: true });
  }, 30_000);

  it("promotion gates of an origin-placed version run on the origin", async () => {
    const hits = proxy.hits;
    const promoted = await pinion(["promote", MODEL, "1", "--target", server!.base]);
    expect(promoted.stderr).toBe("");
    expect(promoted.code).toBe(0);
    expect(promoted.stdout).toMatch(/gate golden: passed — 100 golden cases on origin/);
    // One request per golden case went through the proxy to the origin.
    expect(proxy.hits - hits).toBe(100);
    await expectHealthy(`/v2/models/${MODEL}/infer`);
  });

  it("does not retry a streamed body (it cannot be resent): one attempt, 503", async () => {
    const rows = Array.from({ length: 8000 }, (_, i) => cases.inputs[i % cases.inputs.length]!);
    const connections = proxy.connections;
    const hits = proxy.hits;
    proxy.resetNextConnections(1);
    const answer = await failing(PINNED, rows);
    expect(answer.status).toBe(503);
    expect(answer.error).toMatch(/cannot reach the origin for far@1 \(1 attempt\)/);
    expect(proxy.connections).toBe(connections + 1);
    expect(proxy.hits).toBe(hits);
    // Last on purpose: under wrangler dev, the request after a streamed forward whose
    // connection failed hangs or gets "Your worker restarted mid-request" (a Miniflare
    // quirk; bodies up to 1 MiB are held for that reason), so nothing runs after this one.
  });
});
