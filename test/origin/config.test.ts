/**
 * The origin's configuration from environment variables and flags: defaults,
 * the store choice, and one clear error for anything wrong.
 */
import { describe, expect, it } from "vitest";
import { parseOriginConfig, parseProviders } from "../../origin/config";

describe("origin configuration", () => {
  it("defaults to port 8081, the CPU, no auth and wrangler's local R2 state", () => {
    expect(parseOriginConfig({})).toEqual({
      port: 8081,
      host: "0.0.0.0",
      providers: ["cpu"],
      cacheBytes: 4 * 1024 ** 3,
      maxRequestBytes: 64 * 1024 ** 2,
      versionListTtlMs: 5000,
      drainDelayMs: 0,
      shutdownTimeoutMs: 30_000,
      store: { kind: "local-r2" },
    });
  });

  it("reads every variable, flags winning over the environment, empty meaning unset", () => {
    const config = parseOriginConfig(
      {
        PORT: "9000",
        PINION_ORIGIN_HOST: "",
        PINION_ORIGIN_TOKEN: "secret",
        PINION_ORIGIN_PROVIDERS: " CUDA, cpu ,cuda",
        PINION_ORIGIN_CACHE_BYTES: "1000",
        PINION_ORIGIN_MAX_REQUEST_BYTES: "2000",
        PINION_ORIGIN_VERSION_LIST_TTL_MS: "0",
        PINION_ORIGIN_DRAIN_DELAY_MS: "5000",
        PINION_ORIGIN_SHUTDOWN_TIMEOUT_MS: "60000",
        PINION_ORIGIN_TMP_DIR: "/scratch",
      },
      { port: "9001", host: "127.0.0.1", persistTo: "/state" },
    );
    expect(config).toEqual({
      port: 9001,
      host: "127.0.0.1",
      token: "secret",
      providers: ["cuda", "cpu"],
      cacheBytes: 1000,
      maxRequestBytes: 2000,
      versionListTtlMs: 0,
      drainDelayMs: 5000,
      shutdownTimeoutMs: 60000,
      tmpDir: "/scratch",
      store: { kind: "local-r2", persistTo: "/state" },
    });
  });

  it("takes R2's S3 API from PINION_S3_*, or a directory from --dir", () => {
    expect(
      parseOriginConfig({
        PINION_S3_ENDPOINT: "https://acct.r2.cloudflarestorage.com",
        PINION_S3_ACCESS_KEY_ID: "id",
        PINION_S3_SECRET_ACCESS_KEY: "key",
      }).store,
    ).toEqual({
      kind: "s3",
      endpoint: "https://acct.r2.cloudflarestorage.com",
      bucket: "pinion-models",
      accessKeyId: "id",
      secretAccessKey: "key",
      region: "auto",
    });
    expect(parseOriginConfig({}, { dir: "models" }).store).toEqual({ kind: "dir", path: "models" });
  });

  it("fails with one clear message on a bad value or an ambiguous store", () => {
    expect(() => parseOriginConfig({ PORT: "http" })).toThrow(/^configuration: PORT: /);
    expect(() => parseOriginConfig({ PINION_ORIGIN_CACHE_BYTES: "0" })).toThrow(
      /^configuration: PINION_ORIGIN_CACHE_BYTES: /,
    );
    expect(() => parseOriginConfig({ PINION_S3_ENDPOINT: "r2" })).toThrow(
      /^configuration: PINION_S3_ENDPOINT: /,
    );
    expect(() => parseOriginConfig({ PINION_S3_ENDPOINT: "https://x.example" })).toThrow(
      "configuration: PINION_S3_ENDPOINT needs PINION_S3_ACCESS_KEY_ID and PINION_S3_SECRET_ACCESS_KEY",
    );
    expect(() => parseOriginConfig({}, { dir: "a", persistTo: "b" })).toThrow(
      "configuration: choose one store, not --dir and --persist-to",
    );
    expect(() => parseProviders(" , ")).toThrow(
      "PINION_ORIGIN_PROVIDERS names no execution provider",
    );
  });
});
