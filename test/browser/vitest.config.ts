import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * `npm run test:browser`: the web console in Debian's Chromium (playwright-core,
 * no browser download) against `wrangler dev`. Not one of `npm test`'s projects:
 * it needs a system Chromium, which `.ci/run` installs with apt when missing.
 */
export default defineConfig({
  root: fileURLToPath(new URL("../..", import.meta.url)),
  test: {
    include: ["test/browser/**/*.test.ts"],
    environment: "node",
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
