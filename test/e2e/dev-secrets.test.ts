/**
 * `npm start` keeps its tokens off every command line: `ps` shows each
 * process's arguments to every user of the machine, so the admin and origin
 * tokens reach wrangler through an env file only this user can read, deleted
 * on exit — and still work: the admin API takes the token, and the worker
 * reaches the origin with its token.
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { root, startDevServer, type DevServer } from "../../scripts/lib/dev-server";

const run = promisify(execFile);
const ADMIN_TOKEN = "admin-secret-4f1c9e";
const ORIGIN_TOKEN = "origin-secret-7b2d0a";

/** Command lines of every process in the process group `pgid`. */
function groupCommandLines(pgid: number): string[] {
  const lines: string[] = [];
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // pid (comm) state ppid pgrp …: comm may hold spaces, so count from its ')'.
      const pgrp = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
      if (pgrp !== pgid) continue;
      lines.push(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" "));
    } catch {
      // the process ended while we looked
    }
  }
  return lines;
}

describe("npm start's tokens", () => {
  let persistTo: string;
  let server: DevServer | undefined;

  beforeAll(async () => {
    persistTo = await mkdtemp(join(tmpdir(), "pinion-secrets-"));
    // An origin-placed version, so the worker must reach the origin with its token.
    await run(
      process.execPath,
      [
        new URL("bin/pinion.js", root).pathname,
        "publish",
        "far",
        new URL("fixtures/seed-simple/simple_model.onnx", root).pathname,
        "--placement",
        "origin",
        "--persist-to",
        persistTo,
      ],
      { cwd: root },
    );
    server = await startDevServer(persistTo, [
      "--var",
      `PINION_ADMIN_TOKEN:${ADMIN_TOKEN}`,
      "--var",
      `PINION_ORIGIN_TOKEN:${ORIGIN_TOKEN}`,
    ]);
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
    await rm(persistTo, { recursive: true, force: true });
  });

  it("are on no command line of wrangler, workerd or the origin, and still work", async () => {
    const commands = groupCommandLines(server!.child.pid!);
    expect(commands.some((c) => c.includes("wrangler"))).toBe(true);
    expect(commands.some((c) => c.includes("workerd"))).toBe(true);
    expect(commands.some((c) => c.includes("origin/main.ts"))).toBe(true);
    for (const command of commands) {
      expect(command).not.toContain(ADMIN_TOKEN);
      expect(command).not.toContain(ORIGIN_TOKEN);
    }

    // wrangler reads them from a file only this user can read.
    const wrangler = commands.find((c) => c.includes("wrangler.js dev"))!;
    const envFile = /--env-file (\S+secrets\.env)/.exec(wrangler)![1]!;
    expect(statSync(envFile).mode & 0o777).toBe(0o600);

    const models = `${server!.base}/admin/models`;
    expect((await fetch(models)).status).toBe(401);
    const authorised = await fetch(models, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(authorised.status).toBe(200);
    expect(((await authorised.json()) as { models: string[] }).models).toContain("far");

    const inferred = await fetch(`${server!.base}/v2/models/far/infer`, {
      method: "POST",
      body: JSON.stringify({
        inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: new Array(10).fill(1) }],
      }),
    });
    expect(inferred.status).toBe(200);
    expect(inferred.headers.get("x-pinion-runtime")).toBe("origin");

    await server!.stop();
    expect(existsSync(envFile)).toBe(false);
  });
});
