/**
 * @module
 * Starts `npm start`'s script (seed demo models + `wrangler dev`) on a free
 * port in its own process group, and ends that whole group (wrangler spawns
 * workerd children) — only the processes we started. Tokens given as
 * `--var PINION_ADMIN_TOKEN:…` travel in the child's environment instead, so
 * no command line (`ps`) shows them.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";

export const root = new URL("../../", import.meta.url);

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface DevServer {
  base: string;
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** Fixed ports for a server and its helpers (otherwise free ones are picked). */
export interface DevServerPorts {
  server: number;
  inspector: number;
  origin: number;
}

export async function startDevServer(
  persistTo: string,
  extraArgs: string[] = [],
  ports?: DevServerPorts,
): Promise<DevServer> {
  const port = ports?.server ?? (await freePort());
  const base = `http://127.0.0.1:${port}`;
  const secrets: Record<string, string> = {};
  const passed: string[] = [];
  for (let i = 0; i < extraArgs.length; i++) {
    const match = /^(PINION_ADMIN_TOKENS?|PINION_ORIGIN_TOKEN):(.*)$/s.exec(extraArgs[i + 1] ?? "");
    if (extraArgs[i] === "--var" && match) {
      secrets[match[1]!] = match[2]!;
      i++;
    } else {
      passed.push(extraArgs[i]!);
    }
  }
  const tsx = new URL("node_modules/tsx/dist/cli.mjs", root).pathname;
  const args = [
    tsx,
    "scripts/dev.ts",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--persist-to",
    persistTo,
    "--inspector-port",
    String(ports?.inspector ?? (await freePort())),
    "--show-interactive-dev-session=false",
    ...passed,
  ];
  const child = spawn(process.execPath, args, {
    cwd: root,
    detached: true, // its own process group, so the whole tree can be ended
    stdio: ["ignore", "pipe", "pipe"],
    // The GPU origin beside it gets a free port too, so servers can run side by side.
    env: {
      ...process.env,
      CI: "true",
      PINION_ORIGIN_PORT: String(ports?.origin ?? (await freePort())),
      ...secrets,
    },
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));

  const stop = async () => {
    const pid = child.pid!;
    if (!groupAlive(pid)) return;
    process.kill(-pid, "SIGTERM");
    for (let i = 0; i < 100 && groupAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (groupAlive(pid)) process.kill(-pid, "SIGKILL");
  };

  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`npm start exited early:\n${output}`);
    try {
      if ((await fetch(`${base}/v2/health/live`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`server did not come up:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { base, child, output: () => output, stop };
}
