import { readFile } from "node:fs/promises";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { SummaryReporter } from "./test/summary-reporter.ts";

/** Test-only binding: serves files from `fixtures/` to code running inside workerd. */
async function serveFixture(request: Request): Promise<Response> {
  const path = decodeURIComponent(new URL(request.url).pathname);
  if (path.includes("..")) return new Response("bad path", { status: 400 });
  try {
    return new Response(
      new Uint8Array(await readFile(new URL(`./fixtures${path}`, import.meta.url))),
    );
  } catch {
    return new Response(`no fixture ${path}`, { status: 404 });
  }
}

export default defineConfig({
  test: {
    reporters: ["default", new SummaryReporter()],
    projects: [
      {
        // Worker code, inside the real workerd runtime with real (emulated) R2.
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              // Re-read versions and aliases on every request, write shadow totals at
              // once, and a 1 MB body limit that is cheap to exceed.
              bindings: {
                VERSION_LIST_TTL_MS: "0",
                ALIAS_TTL_MS: "0",
                SHADOW_FLUSH_MS: "0",
                // Metrics batched per quarter second: written at once (0), every request would
                // also write to the ModelMonitor object, which slows long request loops 2-3×.
                METRICS_FLUSH_MS: "250",
                MAX_REQUEST_BYTES: "1000000",
                PINION_ADMIN_TOKEN: "test-admin-token",
                PINION_ADMIN_TOKENS: "ci-deploy=ci-token",
              },
              serviceBindings: { FIXTURES: serveFixture },
            },
          }),
        ],
        test: {
          name: "workerd",
          include: ["test/core/**/*.test.ts", "test/http/**/*.test.ts", "test/worker/**/*.test.ts"],
          testTimeout: 60_000,
        },
      },
      {
        // Scripts, the origin server and the end-to-end test against `wrangler dev`, in Node.
        test: {
          name: "node",
          include: [
            "test/architecture/**/*.test.ts",
            "test/assembly/**/*.test.ts",
            "test/convert/**/*.test.ts",
            "test/scripts/**/*.test.ts",
            "test/e2e/**/*.test.ts",
            "test/origin/**/*.test.ts",
          ],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
