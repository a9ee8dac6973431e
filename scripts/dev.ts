/**
 * @module
 * `npm start`: seed the demo models into wrangler's local R2, then run
 * `wrangler dev` (extra arguments pass through, e.g. `npm start -- --port 9000`).
 * The local admin API gets a token, PINION_ADMIN_TOKEN from the environment or
 * `dev-admin-token`, so `pinion … --target http://localhost:8787` works out of the box.
 * Beside it runs the GPU origin (`origin/`, on PINION_ORIGIN_PORT, default
 * 8081) over the same local R2, with `ORIGIN_URL` pointing the worker at it, so
 * origin-placed versions work too (PINION_ORIGIN=off leaves it out).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { openLocalR2 } from "./lib/local-r2";
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

const DEV_ADMIN_TOKEN = "dev-admin-token";
if (!args.some((arg) => arg.startsWith("PINION_ADMIN_TOKEN:"))) {
  const token = process.env.PINION_ADMIN_TOKEN || DEV_ADMIN_TOKEN;
  args.push("--var", `PINION_ADMIN_TOKEN:${token}`);
  console.log(
    `[pinion] admin API token: ${token === DEV_ADMIN_TOKEN ? DEV_ADMIN_TOKEN : "(from PINION_ADMIN_TOKEN)"}`,
  );
}

const require = createRequire(import.meta.url);
const children: ChildProcess[] = [];

if (process.env.PINION_ORIGIN !== "off" && !args.some((arg) => arg.startsWith("ORIGIN_URL:"))) {
  const port = process.env.PINION_ORIGIN_PORT || "8081";
  const token = process.env.PINION_ORIGIN_TOKEN || randomUUID();
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
  args.push(
    "--var",
    `ORIGIN_URL:http://127.0.0.1:${port}`,
    "--var",
    `PINION_ORIGIN_TOKEN:${token}`,
  );
  console.log(`[pinion] GPU origin: http://127.0.0.1:${port} (origin-placed versions go there)`);
}

const wrangler = require.resolve("wrangler/bin/wrangler.js");
const child = spawn(process.execPath, [wrangler, "dev", ...args], {
  stdio: "inherit",
  env: { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", ...process.env },
});
children.push(child);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    for (const c of children) c.kill(signal);
  });
}
child.on("exit", (code, signal) => {
  for (const c of children) if (c !== child) c.kill("SIGTERM");
  process.exit(code ?? (signal ? 1 : 0));
});
