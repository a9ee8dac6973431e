declare namespace Cloudflare {
  interface Env {
    /** Test-only: serves files from `fixtures/` (see vitest.config.ts). */
    FIXTURES: Fetcher;
  }
}
