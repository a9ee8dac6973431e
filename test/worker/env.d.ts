declare namespace Cloudflare {
  interface Env {
    /** Test-only: serves files from `fixtures/` (see vitest.config.ts). */
    FIXTURES: Fetcher;
    /** Test-only value of the admin API's secret. */
    PINION_ADMIN_TOKEN: string;
  }
}
