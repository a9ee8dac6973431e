/**
 * @module
 * `npm start`: seed the demo models into wrangler's local R2, then run
 * `wrangler dev` (extra arguments pass through, e.g. `npm start -- --port 9000`).
 * The local admin API gets a token, PINION_ADMIN_TOKEN from the environment or
 * `dev-admin-token`, so `pinion … --target http://localhost:8787` works out of the box.
 */
import { spawn } from "node:child_process";
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

const wrangler = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
const child = spawn(process.execPath, [wrangler, "dev", ...args], {
  stdio: "inherit",
  env: { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", ...process.env },
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => child.kill(signal));
}
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
