/**
 * @module
 * `npm start`: seed the demo models into wrangler's local R2, then run
 * `wrangler dev` (extra arguments pass through, e.g. `npm start -- --port 9000`).
 * The local admin API gets a token, PINION_ADMIN_TOKEN from the environment or
 * `dev-admin-token`, so `pinion … --target http://localhost:8787` works out of the box.
 * Beside it runs the GPU origin (`origin/`, on PINION_ORIGIN_PORT, default
 * 8081) over the same local R2, with `ORIGIN_URL` pointing the worker at it, so
 * origin-placed versions work too (PINION_ORIGIN=off leaves it out).
 * The tokens never go on a command line, where `ps` shows them to every user:
 * wrangler reads them from an env file only this user can read (0600, in a
 * fresh temp directory, deleted on exit), the origin from its environment.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { openLocalR2 } from "../origin/stores/local-r2";
import { seedDemoModels } from "./lib/demo-models";

const args = process.argv.slice(2);
const persistFlag = args.indexOf("--persist-to");
const persistTo = persistFlag >= 0 ? args[persistFlag + 1] : undefined;

const r2 = await openLocalR2(persistTo);
try {
  await seedDemoModels(r2.store, (line) => console.log(`[pinion] ${line}`));
} finally {
  await r2.dispose();
}

/** Worker variables that are credentials: passed to wrangler in an env file, never as `--var`. */
const SECRET_VARS = ["PINION_ADMIN_TOKEN", "PINION_ADMIN_TOKENS", "PINION_ORIGIN_TOKEN"];
const secrets = new Map<string, string>();
for (const name of SECRET_VARS) {
  if (process.env[name]) secrets.set(name, process.env[name]);
}
// `--var PINION_ADMIN_TOKEN:…` still works (it wins over the environment), but moves off wrangler's command line.
for (let i = 0; i < args.length - 1; i++) {
  const [name, ...rest] = args[i + 1]!.split(":");
  if (args[i] === "--var" && SECRET_VARS.includes(name!) && rest.length > 0) {
    secrets.set(name!, rest.join(":"));
    args.splice(i--, 2);
  }
}

const DEV_ADMIN_TOKEN = "dev-admin-token";
if (!secrets.has("PINION_ADMIN_TOKEN")) {
  secrets.set("PINION_ADMIN_TOKEN", DEV_ADMIN_TOKEN);
  console.log(`[pinion] admin API token: ${DEV_ADMIN_TOKEN}`);
} else {
  console.log("[pinion] admin API token: (from PINION_ADMIN_TOKEN)");
}

const require = createRequire(import.meta.url);
const children: ChildProcess[] = [];

if (process.env.PINION_ORIGIN !== "off" && !args.some((arg) => arg.startsWith("ORIGIN_URL:"))) {
  const port = process.env.PINION_ORIGIN_PORT || "8081";
  const token = secrets.get("PINION_ORIGIN_TOKEN") ?? randomUUID();
  secrets.set("PINION_ORIGIN_TOKEN", token);
  const origin = spawn(
    process.execPath,
    [
      require.resolve("tsx/cli"),
      "origin/main.ts",
      "--host",
      "127.0.0.1",
      "--port",
      port,
      ...(persistTo ? ["--persist-to", persistTo] : []),
    ],
    { stdio: "inherit", env: { ...process.env, PINION_ORIGIN_TOKEN: token } },
  );
  children.push(origin);
  origin.on("exit", (code) => {
    if (code !== 0 && code !== null) console.error(`[pinion] the origin exited with ${code}`);
  });
  args.push("--var", `ORIGIN_URL:http://127.0.0.1:${port}`);
  console.log(`[pinion] GPU origin: http://127.0.0.1:${port} (origin-placed versions go there)`);
}

const secretsFile = writeSecretsFile(secrets);
// With --env-file, wrangler skips .dev.vars: read it first, so our tokens still win over it.
const devVars = resolve(".dev.vars");
const envFiles = [...(existsSync(devVars) ? [devVars] : []), secretsFile.path];
const wrangler = require.resolve("wrangler/bin/wrangler.js");
const child = spawn(
  process.execPath,
  [wrangler, "dev", ...args, ...envFiles.flatMap((file) => ["--env-file", file])],
  {
    stdio: "inherit",
    env: { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", ...process.env },
  },
);
children.push(child);
process.on("exit", () => secretsFile.remove());
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    for (const c of children) c.kill(signal);
  });
}
child.on("exit", (code, signal) => {
  for (const c of children) if (c !== child) c.kill("SIGTERM");
  process.exit(code ?? (signal ? 1 : 0));
});

/**
 * `NAME='value'` lines in a file only this user can read, in a directory of
 * its own; dotenv takes single-quoted values literally.
 */
function writeSecretsFile(values: Map<string, string>): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "pinion-dev-")); // 0700
  const path = join(dir, "secrets.env");
  const lines = [...values].map(([name, value]) => {
    if (/['\r\n]/.test(value)) {
      throw new Error(`${name} must not contain quotes or line breaks`);
    }
    return `${name}='${value}'\n`;
  });
  writeFileSync(path, lines.join(""), { mode: 0o600, flag: "wx" });
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
