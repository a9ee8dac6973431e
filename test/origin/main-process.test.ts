/**
 * `npm run origin` as a process: it starts from flags and environment, logs
 * what it runs on, and on SIGTERM drains gracefully — readiness turns false,
 * the request in flight finishes with its answer, then the process exits 0.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LogEntry } from "../../origin/log";
import { DirectoryStore } from "../../origin/stores/directory-store";
import { freePort, root } from "../../scripts/lib/dev-server";
import { maxAbsDiff, publish, SEED_ONNX, seedCases, type InferBody } from "./helpers";

const TOKEN = "process-test-token";
const tsx = new URL("node_modules/tsx/dist/cli.mjs", root).pathname;

interface OriginProcess {
  child: ChildProcess;
  logs: LogEntry[];
  exited: Promise<number | null>;
}

function startProcess(args: string[], env: Record<string, string>): OriginProcess {
  const child = spawn(process.execPath, [tsx, "origin/main.ts", ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  const logs: LogEntry[] = [];
  let pending = "";
  const collect = (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      // onnxruntime's own native log lines are not JSON; only ours are kept.
      if (line.startsWith("{")) logs.push(JSON.parse(line) as LogEntry);
    }
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, logs, exited };
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("npm run origin (a real process)", () => {
  let dir: string;
  let running: OriginProcess | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pinion-origin-process-"));
    await publish(new DirectoryStore(join(dir, "registry")), "seed", SEED_ONNX);
  });

  afterAll(async () => {
    if (running && running.child.exitCode === null) running.child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  it("finishes the request in flight on SIGTERM, with readiness false while draining, then exits 0", async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    running = startProcess(
      ["--dir", join(dir, "registry"), "--port", String(port), "--host", "127.0.0.1"],
      {
        PINION_ORIGIN_TOKEN: TOKEN,
        PINION_ORIGIN_PROVIDERS: "cpu",
        PINION_ORIGIN_DRAIN_DELAY_MS: "1500",
        PINION_ORIGIN_TMP_DIR: dir,
      },
    );
    const { logs } = running;
    await until("the origin to listen", async () =>
      logs.find((e) => e.event === "listening") ? true : undefined,
    );
    expect(logs).toContainEqual(
      expect.objectContaining({ event: "execution_providers", active: ["cpu"] }),
    );
    expect(logs).toContainEqual(
      expect.objectContaining({ event: "store", store: `directory ${join(dir, "registry")}` }),
    );
    expect(logs.some((e) => e.event === "auth_disabled")).toBe(false);

    // A request whose body arrives in two halves: it is in flight until the second is sent.
    const cases = await seedCases();
    const body = new TextEncoder().encode(
      JSON.stringify({
        inputs: [{ name: "input", shape: [100, 10], datatype: "FP32", data: cases.inputs }],
      }),
    );
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
    controller.enqueue(body.subarray(0, body.length >> 1));
    const inFlight = fetch(`${base}/v2/models/seed/versions/1/infer`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    await until("the request to be in flight", async () => {
      const metrics = await (await fetch(`${base}/metrics`)).text();
      // The scrape itself is one of them.
      return /^pinion_origin_requests_in_flight 2$/m.test(metrics) ? true : undefined;
    });

    running.child.kill("SIGTERM");
    const draining = await until("readiness to turn false", async () => {
      const ready = await fetch(`${base}/v2/health/ready`);
      return ready.status === 503 ? ready.json() : undefined;
    });
    expect(draining).toEqual({ ready: false });
    expect(running.child.exitCode).toBeNull();

    controller.enqueue(body.subarray(body.length >> 1));
    controller.close();
    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(response.headers.get("connection")).toBe("close");
    const answer = (await response.json()) as InferBody;
    expect(maxAbsDiff(answer.outputs[0]!.data, cases.expected.flat())).toBeLessThan(1e-5);

    expect(await running.exited).toBe(0);
    expect(logs.map((e) => e.event)).toEqual(
      expect.arrayContaining(["signal", "draining", "stopped"]),
    );
    await expect(fetch(`${base}/v2/health/live`)).rejects.toThrow();
  });

  it("also drains and exits 0 on SIGTERM with the local-R2 store (npm start's), despite Miniflare's exit hooks", async () => {
    const port = await freePort();
    running = startProcess(
      ["--persist-to", join(dir, "state"), "--port", String(port), "--host", "127.0.0.1"],
      { PINION_ORIGIN_TOKEN: TOKEN, PINION_ORIGIN_TMP_DIR: dir },
    );
    const { logs } = running;
    await until("the origin to listen", async () =>
      logs.find((e) => e.event === "listening") ? true : undefined,
    );
    running.child.kill("SIGTERM");
    expect(await running.exited).toBe(0);
    expect(logs.map((e) => e.event)).toEqual(
      expect.arrayContaining(["signal", "draining", "stopped"]),
    );
  });

  it("exits 1 with one clear log line when the configuration is wrong", async () => {
    const failing = startProcess(["--dir", "a", "--persist-to", "b"], {});
    expect(await failing.exited).toBe(1);
    expect(failing.logs).toEqual([
      expect.objectContaining({
        level: "error",
        event: "startup_failed",
        error: "configuration: choose one store, not --dir and --persist-to",
      }),
    ]);
  });
});
