/**
 * @module
 * The origin's configuration, from the environment and command-line flags
 * (flags win). Everything is checked at startup, so a typo fails the process
 * with one clear line instead of at the first request.
 *
 * Store: `--dir <path>` (a plain directory), `--persist-to <dir>` (the local R2
 * state `wrangler dev` uses), or R2 through its S3 API when `PINION_S3_ENDPOINT`
 * is set; with none of them, the local R2 state in `.wrangler/state`, as
 * `npm start` leaves it.
 */
import { z } from "zod";
import { invalid } from "../core/errors";

export const SERVER_DEFAULTS = {
  port: 8081,
  providers: ["cpu"],
  cacheBytes: 4 * 1024 ** 3,
  maxRequestBytes: 64 * 1024 ** 2,
  versionListTtlMs: 5000,
  shutdownTimeoutMs: 30_000,
} as const;

/** `"cuda, CPU"` → `["cuda", "cpu"]`. */
export function parseProviders(text: string): string[] {
  const names = text
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  if (names.length === 0) throw invalid("PINION_ORIGIN_PROVIDERS names no execution provider");
  return [...new Set(names)];
}

export type StoreConfig =
  | { kind: "dir"; path: string }
  /** `persistTo` defaults to wrangler's `.wrangler/state`. */
  | { kind: "local-r2"; persistTo?: string }
  | {
      kind: "s3";
      endpoint: string;
      bucket: string;
      accessKeyId: string;
      secretAccessKey: string;
      region: string;
    };

export interface OriginConfig {
  port: number;
  host: string;
  token?: string;
  providers: string[];
  cacheBytes: number;
  maxRequestBytes: number;
  versionListTtlMs: number;
  drainDelayMs: number;
  shutdownTimeoutMs: number;
  tmpDir?: string;
  store: StoreConfig;
}

export interface OriginFlags {
  port?: string;
  host?: string;
  dir?: string;
  persistTo?: string;
}

const int = (min: number) => z.coerce.number().int().min(min);

const envSchema = z.object({
  PORT: int(0).max(65535).default(SERVER_DEFAULTS.port),
  PINION_ORIGIN_HOST: z.string().min(1).default("0.0.0.0"),
  PINION_ORIGIN_TOKEN: z.string().optional(),
  PINION_ORIGIN_PROVIDERS: z.string().default(SERVER_DEFAULTS.providers.join(",")),
  PINION_ORIGIN_CACHE_BYTES: int(1).default(SERVER_DEFAULTS.cacheBytes),
  PINION_ORIGIN_MAX_REQUEST_BYTES: int(1).default(SERVER_DEFAULTS.maxRequestBytes),
  PINION_ORIGIN_VERSION_LIST_TTL_MS: int(0).default(SERVER_DEFAULTS.versionListTtlMs),
  PINION_ORIGIN_DRAIN_DELAY_MS: int(0).default(0),
  PINION_ORIGIN_SHUTDOWN_TIMEOUT_MS: int(0).default(SERVER_DEFAULTS.shutdownTimeoutMs),
  PINION_ORIGIN_TMP_DIR: z.string().min(1).optional(),
  PINION_S3_ENDPOINT: z.url().optional(),
  PINION_S3_BUCKET: z.string().min(1).default("pinion-models"),
  PINION_S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  PINION_S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  PINION_S3_REGION: z.string().min(1).default("auto"),
});

export function parseOriginConfig(
  env: Record<string, string | undefined>,
  flags: OriginFlags = {},
): OriginConfig {
  // An empty variable counts as unset, as in the worker's config.
  const set = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v !== ""),
  );
  const parsed = envSchema.safeParse({
    ...set,
    ...(flags.port !== undefined ? { PORT: flags.port } : {}),
    ...(flags.host !== undefined ? { PINION_ORIGIN_HOST: flags.host } : {}),
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw invalid(`configuration: ${issue.path.join(".")}: ${issue.message}`);
  }
  const e = parsed.data;

  const chosen = [
    flags.dir !== undefined && "--dir",
    flags.persistTo !== undefined && "--persist-to",
    e.PINION_S3_ENDPOINT !== undefined && "PINION_S3_ENDPOINT",
  ].filter(Boolean);
  if (chosen.length > 1) {
    throw invalid(`configuration: choose one store, not ${chosen.join(" and ")}`);
  }
  let store: StoreConfig;
  if (flags.dir !== undefined) {
    store = { kind: "dir", path: flags.dir };
  } else if (e.PINION_S3_ENDPOINT !== undefined) {
    if (!e.PINION_S3_ACCESS_KEY_ID || !e.PINION_S3_SECRET_ACCESS_KEY) {
      throw invalid(
        "configuration: PINION_S3_ENDPOINT needs PINION_S3_ACCESS_KEY_ID and PINION_S3_SECRET_ACCESS_KEY",
      );
    }
    store = {
      kind: "s3",
      endpoint: e.PINION_S3_ENDPOINT,
      bucket: e.PINION_S3_BUCKET,
      accessKeyId: e.PINION_S3_ACCESS_KEY_ID,
      secretAccessKey: e.PINION_S3_SECRET_ACCESS_KEY,
      region: e.PINION_S3_REGION,
    };
  } else {
    store = {
      kind: "local-r2",
      ...(flags.persistTo !== undefined ? { persistTo: flags.persistTo } : {}),
    };
  }

  return {
    port: e.PORT,
    host: e.PINION_ORIGIN_HOST,
    ...(e.PINION_ORIGIN_TOKEN ? { token: e.PINION_ORIGIN_TOKEN } : {}),
    providers: parseProviders(e.PINION_ORIGIN_PROVIDERS),
    cacheBytes: e.PINION_ORIGIN_CACHE_BYTES,
    maxRequestBytes: e.PINION_ORIGIN_MAX_REQUEST_BYTES,
    versionListTtlMs: e.PINION_ORIGIN_VERSION_LIST_TTL_MS,
    drainDelayMs: e.PINION_ORIGIN_DRAIN_DELAY_MS,
    shutdownTimeoutMs: e.PINION_ORIGIN_SHUTDOWN_TIMEOUT_MS,
    ...(e.PINION_ORIGIN_TMP_DIR ? { tmpDir: e.PINION_ORIGIN_TMP_DIR } : {}),
    store,
  };
}
