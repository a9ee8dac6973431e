/**
 * @module
 * The admin API the `pinion` CLI publishes through (`--target https://…`).
 * Bearer-token auth against the PINION_ADMIN_TOKEN / PINION_ADMIN_TOKENS
 * secrets, compared in constant time; the matching token's name is the actor
 * in the audit log. Without a configured token the whole API is disabled.
 *
 * Artifacts arrive as R2 multipart uploads, one part per request, streamed
 * straight into R2, so the worker never holds a whole model. Each upload is
 * assembled under a staging key of its own; its sha256 is then computed by
 * streaming it back through a digest, and only bytes that match are copied to
 * the blob key, create-only — an upload never writes where verified bytes may
 * already be, and a failed one deletes only its staging object. A version is
 * committed last, by writing its manifest create-only, once `VersionChecker`
 * has checked (and, for edge versions, loaded) what it is made of.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { z } from "zod";
import {
  conflict,
  disabled,
  echo,
  invalid,
  lengthRequired,
  notFound,
  refused,
  tooLarge,
  unavailable,
} from "../core/errors";
import { ALIAS_NAME_PATTERN, DEFAULT_ALIAS } from "../core/registry/aliases";
import { blobKey, stagingKey } from "../core/registry/layout";
import {
  artifactSchema,
  quantizationSchema,
  PLACEMENTS,
  RUNTIME_HINTS,
  tensorSpecSchema,
} from "../core/registry/manifest";
import { checkModelName, versionSchema } from "../core/registry/names";
import type { ModelRegistry } from "../core/registry/registry";
import type { Promoter } from "../core/serving/promoter";
import type { VersionChecker } from "../core/serving/version-checker";
import { secretsEqual, tokenAuth } from "./auth";
import { errorResponse } from "./errors";
import { limitBody } from "./middleware";

/** An admin token and the name its changes are recorded under in the audit log. */
export interface AdminToken {
  name: string;
  token: string;
}

/** What the admin API needs from the environment. */
export interface AdminContext {
  /** The configured tokens; none disables the API. */
  tokens: readonly AdminToken[];
  bucket: R2Bucket;
  registry: ModelRegistry;
  /** Runs promotions (gates go through this isolate's data plane). */
  promoter: Promoter;
  /** Checks a version before it is committed; without one, commits are refused. */
  checker?: VersionChecker;
}

/**
 * Tokens from the environment: `PINION_ADMIN_TOKEN` (recorded as "admin") and
 * `PINION_ADMIN_TOKENS`, a comma-separated list of `name=token` (e.g. one per CI job or person).
 */
export function parseAdminTokens(
  single: string | undefined,
  named: string | undefined,
): AdminToken[] {
  const tokens: AdminToken[] = [];
  if (single) tokens.push({ name: "admin", token: single });
  for (const item of (named ?? "").split(",")) {
    const at = item.indexOf("=");
    if (at <= 0 || at === item.length - 1) continue;
    tokens.push({ name: item.slice(0, at).trim(), token: item.slice(at + 1).trim() });
  }
  return tokens;
}

export type AdminVariables = { admin: AdminContext; requestId: string; actor: string };
type Ctx = Context<{ Variables: AdminVariables }>;

/** Every part but the last has exactly this size (R2 needs equal parts of at least 5 MiB). */
export const PART_BYTES = 8 * 1024 * 1024;
const MAX_PARTS = 10_000;
/**
 * The largest artifact: verified bytes reach their blob key in one create-only
 * put, and R2 takes at most 5 GiB − 5 MiB in one put (an ONNX file is at most 2 GiB).
 */
export const MAX_ARTIFACT_BYTES = 5 * 1024 ** 3 - 5 * 1024 ** 2;

const SHA256 = /^[0-9a-f]{64}$/;

/**
 * The admin token check: every configured token is compared (in constant
 * time), so timing tells nothing about which, if any, matched; the match's
 * name becomes the actor. No configured token disables the API.
 */
function requireToken(): MiddlewareHandler<{ Variables: AdminVariables }> {
  const check = tokenAuth(
    "pinion-admin",
    "missing or wrong admin token (Authorization: Bearer …)",
    async (given, c) => {
      const tokens = (c as Ctx).var.admin.tokens;
      const equal = await Promise.all(tokens.map((t) => secretsEqual(given, t.token)));
      const actor = tokens.find((_, i) => equal[i])?.name;
      if (actor !== undefined) c.set("actor", actor);
      return actor !== undefined;
    },
  );
  return async (c, next) => {
    if (c.var.admin.tokens.length === 0) {
      throw disabled("the admin API is disabled: set the PINION_ADMIN_TOKEN secret to enable it");
    }
    return check(c, next);
  };
}

const aliasField = z.string().regex(ALIAS_NAME_PATTERN, "invalid alias").default(DEFAULT_ALIAS);

const promotionSchema = z.object({
  alias: aliasField,
  version: versionSchema,
  canary: z.number().gt(0).lt(100).optional(),
  shadow: z.number().gt(0).max(100).optional(),
  reason: z.string().max(1000).optional(),
  minAgreement: z.number().min(0).max(1).optional(),
  force: z.boolean().default(false),
  dryRun: z.boolean().default(false),
});

const rollbackSchema = z.object({
  alias: aliasField,
  reason: z.string().max(1000).optional(),
  dryRun: z.boolean().default(false),
});

const startUploadSchema = z.object({
  sha256: z.string().regex(SHA256, "sha256 must be 64 lowercase hex digits"),
  bytes: z
    .number()
    .int()
    .positive()
    .max(MAX_ARTIFACT_BYTES, `an artifact is at most ${MAX_ARTIFACT_BYTES} bytes`),
  mediaType: z.string().min(1).max(200),
});

const completeSchema = z.object({
  sha256: z.string().regex(SHA256),
  parts: z
    .array(
      z.object({ partNumber: z.number().int().min(1).max(MAX_PARTS), etag: z.string().min(1) }),
    )
    .min(1),
});

const commitSchema = z.object({
  version: versionSchema.optional(),
  platform: z.string().min(1),
  inputs: z.array(tensorSpecSchema).min(1),
  outputs: z.array(tensorSpecSchema).min(1),
  runtime: z.enum(RUNTIME_HINTS),
  placement: z.enum(PLACEMENTS).optional(),
  source: z.string().max(1024).optional(),
  quantization: quantizationSchema.optional(),
  artifacts: z.object({
    onnx: artifactSchema,
    golden: artifactSchema.optional(),
    int8: artifactSchema.optional(),
  }),
});

async function body<T>(c: Context, schema: z.ZodType<T>): Promise<T> {
  let json: unknown;
  try {
    json = await c.req.json();
  } catch {
    throw invalid("request body is not valid JSON");
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw invalid(`${echo(issue.path.join(".")) || "body"}: ${issue.message}`);
  }
  return parsed.data;
}

function shaParam(c: Ctx): string {
  const sha = c.req.query("sha256") ?? "";
  if (!SHA256.test(sha)) throw invalid("query parameter sha256 must be 64 lowercase hex digits");
  return sha;
}

/**
 * The upload id the client sees is `{staging id}.{R2 upload id}`: the staging
 * key is recovered from it on every later call (so resuming needs nothing
 * else), and is always one the worker generated, never a key the client names.
 */
const UPLOAD_TOKEN = /^([0-9a-f]{32})\.(.+)$/s;

function openUpload(c: Ctx, name: string): { key: string; upload: R2MultipartUpload } {
  const match = UPLOAD_TOKEN.exec(c.req.param("uploadId") ?? "");
  if (!match) throw notFound("no such upload: start it again");
  const key = stagingKey(name, match[1]!);
  return { key, upload: c.var.admin.bucket.resumeMultipartUpload(key, match[2]!) };
}

/** Refuses a start when the blob key holds bytes that cannot be the ones announced. */
function checkExisting(existing: R2Object, sha256: string, bytes: number): void {
  const digest =
    existing.customMetadata?.sha256 ??
    (existing.checksums.sha256 && hex(existing.checksums.sha256));
  if (existing.size === bytes && (digest === undefined || digest === sha256)) return;
  throw conflict(
    `${existing.key} already holds ${existing.size} bytes with sha256 ${digest ?? sha256}; an upload of ${bytes} bytes cannot have that digest, and published bytes are never replaced`,
  );
}

const hex = (buffer: ArrayBuffer) =>
  Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");

/**
 * Copies verified staged bytes to their blob key without ever overwriting it:
 * a blob already there (an earlier or concurrent upload of the same bytes) is kept.
 */
async function placeBlob(bucket: R2Bucket, staging: string, key: string, sha256: string) {
  const existing = await bucket.head(key);
  if (existing) return existing;
  const source = await bucket.get(staging);
  if (!source) throw notFound("the staged upload vanished before it could be stored");
  const written = await bucket.put(key, source.body, {
    onlyIf: { etagDoesNotMatch: "*" },
    sha256,
    customMetadata: { sha256 },
    ...(source.httpMetadata ? { httpMetadata: source.httpMetadata } : {}),
  });
  return written ?? (await bucket.head(key));
}

/** Streams an object through SHA-256 without buffering it. */
async function streamedSha256(object: R2ObjectBody): Promise<string> {
  const stream = new crypto.DigestStream("SHA-256");
  await object.body.pipeTo(stream);
  return hex(await stream.digest);
}

export function adminRoutes(): Hono<{ Variables: AdminVariables }> {
  const app = new Hono<{ Variables: AdminVariables }>();
  app.use("*", requireToken());
  // JSON requests are small; parts stream and carry their own checks.
  const smallJson = limitBody(() => 1024 * 1024);

  app.get("/models", async (c) => c.json({ models: await c.var.admin.registry.listModels() }));

  app.get("/models/:name/versions", async (c) => {
    const name = checkModelName(c.req.param("name"));
    await c.var.admin.registry.requireModel(name);
    const versions = await c.var.admin.registry.describeVersions(name);
    return c.json({ name, versions });
  });

  // Start (or skip) the upload of one artifact.
  app.post("/models/:name/uploads", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const { sha256, bytes, mediaType } = await body(c, startUploadSchema);
    const key = blobKey(name, sha256);
    const existing = await c.var.admin.bucket.head(key);
    if (existing) {
      checkExisting(existing, sha256, bytes);
      return c.json({ exists: true, key });
    }
    const id = crypto.randomUUID().replaceAll("-", "");
    const upload = await c.var.admin.bucket.createMultipartUpload(stagingKey(name, id), {
      httpMetadata: { contentType: mediaType },
    });
    const uploadId = `${id}.${upload.uploadId}`;
    return c.json({ exists: false, key, uploadId, partBytes: PART_BYTES }, 201);
  });

  // One part, streamed into R2. Needs Content-Length: R2 must know the size up front.
  app.put("/models/:name/uploads/:uploadId/parts/:part", async (c) => {
    const name = checkModelName(c.req.param("name"));
    shaParam(c);
    const partNumber = Number(c.req.param("part"));
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
      throw invalid(`part number must be an integer from 1 to ${MAX_PARTS}`);
    }
    const length = Number(c.req.header("content-length"));
    if (!Number.isInteger(length) || length <= 0) {
      throw lengthRequired("a part needs a Content-Length header");
    }
    if (length > PART_BYTES) {
      throw tooLarge(`a part is at most ${PART_BYTES} bytes`);
    }
    const { upload } = openUpload(c, name);
    try {
      const part = await upload.uploadPart(partNumber, c.req.raw.body!);
      return c.json({ partNumber: part.partNumber, etag: part.etag });
    } catch (error) {
      throw invalid(`upload part ${partNumber} was refused: ${(error as Error).message}`);
    }
  });

  app.post("/models/:name/uploads/:uploadId/complete", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const { sha256, parts } = await body(c, completeSchema);
    const key = blobKey(name, sha256);
    const bucket = c.var.admin.bucket;
    const staged = openUpload(c, name);
    try {
      await staged.upload.complete(parts);
    } catch (error) {
      throw invalid(`the upload could not be completed: ${(error as Error).message}`);
    }
    try {
      const object = await bucket.get(staged.key);
      if (!object) throw invalid("the completed upload is not in the bucket");
      const actual = await streamedSha256(object);
      if (actual !== sha256) {
        throw invalid(
          `the uploaded bytes have sha256 ${actual}, not ${sha256}; the object was deleted`,
        );
      }
      const stored = await placeBlob(bucket, staged.key, key, sha256);
      if (!stored)
        throw conflict(`${key} was deleted while the upload was stored; upload it again`);
      if (stored.size !== object.size) {
        throw conflict(
          `${key} already holds ${stored.size} bytes, not the ${object.size} uploaded; published bytes are never replaced`,
        );
      }
      return c.json({ key, bytes: stored.size, sha256 });
    } finally {
      // Only this upload's own object: the blob key is never deleted.
      await bucket.delete(staged.key);
    }
  });

  app.delete("/models/:name/uploads/:uploadId", async (c) => {
    const name = checkModelName(c.req.param("name"));
    shaParam(c);
    await openUpload(c, name)
      .upload.abort()
      .catch(() => undefined); // already gone: aborting is idempotent
    return c.body(null, 204);
  });

  // Commit a version whose artifacts are uploaded: the manifest, create-only.
  app.post("/models/:name/versions", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const { artifacts, ...fields } = await body(c, commitSchema);
    const checker = c.var.admin.checker;
    if (!checker) throw unavailable("this server cannot check versions, so it commits none");
    const manifest = await c.var.admin.registry.commitVersion(
      name,
      fields,
      artifacts,
      (candidate) => checker.check(candidate),
    );
    return c.json(manifest, 201);
  });

  // -- aliases and promotion ---------------------------------------------------

  app.get("/models/:name/aliases", async (c) => {
    const name = checkModelName(c.req.param("name"));
    await c.var.admin.registry.requireModel(name);
    const { document } = await c.var.admin.registry.aliases.read(name);
    return c.json(document);
  });

  // Answers 200 for applied, no-op and dry-run outcomes, 422 when a gate refused the change.
  app.post("/models/:name/promotions", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const request = await body(c, promotionSchema);
    const outcome = await c.var.admin.promoter.promote(name, {
      alias: request.alias,
      version: request.version,
      ...(request.canary !== undefined ? { canaryPercent: request.canary } : {}),
      ...(request.shadow !== undefined ? { shadowPercent: request.shadow } : {}),
      ...(request.reason !== undefined ? { reason: request.reason } : {}),
      ...(request.minAgreement !== undefined ? { minAgreement: request.minAgreement } : {}),
      force: request.force,
      dryRun: request.dryRun,
      actor: c.var.actor,
    });
    if (outcome.status === "gates-failed") {
      const failed = outcome.gates.filter((g) => !g.passed).map((g) => `${g.gate}: ${g.detail}`);
      throw refused(`gates failed; alias untouched: ${failed.join("; ")}`, { ...outcome });
    }
    return c.json(outcome);
  });

  app.post("/models/:name/rollbacks", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const request = await body(c, rollbackSchema);
    return c.json(
      await c.var.admin.promoter.rollback(name, {
        alias: request.alias,
        ...(request.reason !== undefined ? { reason: request.reason } : {}),
        dryRun: request.dryRun,
        actor: c.var.actor,
      }),
    );
  });

  app.get("/models/:name/history", async (c) => {
    const name = checkModelName(c.req.param("name"));
    const limitParam = c.req.query("limit");
    const limit = limitParam === undefined ? undefined : Number(limitParam);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
      throw invalid("limit must be a positive integer");
    }
    await c.var.admin.registry.requireModel(name);
    return c.json({
      model: name,
      records: await c.var.admin.registry.aliases.history(name, limit),
    });
  });

  app.get("/models/:name/shadow", async (c) => {
    const name = checkModelName(c.req.param("name"));
    await c.var.admin.registry.requireModel(name);
    return c.json({ model: name, reports: await c.var.admin.registry.shadowStats.report(name) });
  });

  app.onError((error, c) => errorResponse(c, error));
  return app;
}
