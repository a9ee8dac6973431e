/**
 * @module
 * The admin API the `pinion` CLI publishes through (`--target https://…`).
 * Bearer-token auth against the PINION_ADMIN_TOKEN / PINION_ADMIN_TOKENS
 * secrets, compared in constant time; the matching token's name is the actor
 * in the audit log. Without a configured token the whole API is disabled.
 *
 * Artifacts arrive as R2 multipart uploads, one part per request, streamed
 * straight into R2, so the worker never holds a whole model; the assembled
 * object's sha256 is then computed by streaming it back through a digest, and
 * an object that does not match is deleted. A version is committed last, by
 * writing its manifest create-only.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { z } from "zod";
import { echo, invalid, notFound } from "../errors";
import { ALIAS_NAME_PATTERN, DEFAULT_ALIAS } from "../registry/aliases";
import { blobKey } from "../registry/layout";
import {
  artifactSchema,
  quantizationSchema,
  PLACEMENTS,
  RUNTIME_HINTS,
  tensorSpecSchema,
} from "../registry/manifest";
import { checkModelName } from "../registry/names";
import type { ModelRegistry } from "../registry/registry";
import type { Promoter } from "../serving/promoter";
import { secretsEqual } from "./auth";
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

const SHA256 = /^[0-9a-f]{64}$/;

function requireToken(): MiddlewareHandler<{ Variables: AdminVariables }> {
  return async (c, next) => {
    const tokens = c.var.admin.tokens;
    if (tokens.length === 0) {
      return c.json(
        { error: "the admin API is disabled: set the PINION_ADMIN_TOKEN secret to enable it" },
        404,
      );
    }
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    let actor: string | undefined;
    if (match) {
      // Every token is compared, so timing tells nothing about which (if any) matched.
      const given = match[1]!.trim();
      const equal = await Promise.all(tokens.map((t) => secretsEqual(given, t.token)));
      actor = tokens.find((_, i) => equal[i])?.name;
    }
    if (actor === undefined) {
      return c.json({ error: "missing or wrong admin token (Authorization: Bearer …)" }, 401, {
        "WWW-Authenticate": 'Bearer realm="pinion-admin"',
      });
    }
    c.set("actor", actor);
    await next();
  };
}

const aliasField = z.string().regex(ALIAS_NAME_PATTERN, "invalid alias").default(DEFAULT_ALIAS);

const promotionSchema = z.object({
  alias: aliasField,
  version: z.number().int().positive(),
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
    .max(PART_BYTES * MAX_PARTS),
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
  version: z.number().int().positive().optional(),
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

/** Streams an object through SHA-256 without buffering it. */
async function streamedSha256(object: R2ObjectBody): Promise<string> {
  const stream = new crypto.DigestStream("SHA-256");
  await object.body.pipeTo(stream);
  const hash = new Uint8Array(await stream.digest);
  return Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function adminRoutes(): Hono<{ Variables: AdminVariables }> {
  const app = new Hono<{ Variables: AdminVariables }>();
  app.use("*", requireToken());
  // JSON requests are small; parts stream and carry their own checks.
  const smallJson = limitBody(() => 1024 * 1024);

  app.get("/models", async (c) => c.json({ models: await c.var.admin.registry.listModels() }));

  app.get("/models/:name/versions", async (c) => {
    const name = checkModelName(c.req.param("name"));
    const versions = await c.var.admin.registry.describeVersions(name);
    if (versions.length === 0) throw notFound(`model '${name}' not found`);
    return c.json({ name, versions });
  });

  // Start (or skip) the upload of one artifact.
  app.post("/models/:name/uploads", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const { sha256, bytes, mediaType } = await body(c, startUploadSchema);
    const key = blobKey(name, sha256);
    const existing = await c.var.admin.bucket.head(key);
    if (existing && existing.size === bytes) return c.json({ exists: true, key });
    const upload = await c.var.admin.bucket.createMultipartUpload(key, {
      httpMetadata: { contentType: mediaType },
    });
    return c.json({ exists: false, key, uploadId: upload.uploadId, partBytes: PART_BYTES }, 201);
  });

  // One part, streamed into R2. Needs Content-Length: R2 must know the size up front.
  app.put("/models/:name/uploads/:uploadId/parts/:part", async (c) => {
    const name = checkModelName(c.req.param("name"));
    const key = blobKey(name, shaParam(c));
    const partNumber = Number(c.req.param("part"));
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
      throw invalid(`part number must be an integer from 1 to ${MAX_PARTS}`);
    }
    const length = Number(c.req.header("content-length"));
    if (!Number.isInteger(length) || length <= 0) {
      return c.json({ error: "a part needs a Content-Length header" }, 411);
    }
    if (length > PART_BYTES) {
      return c.json({ error: `a part is at most ${PART_BYTES} bytes` }, 413);
    }
    const upload = c.var.admin.bucket.resumeMultipartUpload(key, c.req.param("uploadId"));
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
    const upload = bucket.resumeMultipartUpload(key, c.req.param("uploadId"));
    try {
      await upload.complete(parts);
    } catch (error) {
      throw invalid(`the upload could not be completed: ${(error as Error).message}`);
    }
    const object = await bucket.get(key);
    if (!object) throw invalid("the completed upload is not in the bucket");
    const actual = await streamedSha256(object);
    if (actual !== sha256) {
      await bucket.delete(key);
      throw invalid(
        `the uploaded bytes have sha256 ${actual}, not ${sha256}; the object was deleted`,
      );
    }
    return c.json({ key, bytes: object.size, sha256 });
  });

  app.delete("/models/:name/uploads/:uploadId", async (c) => {
    const name = checkModelName(c.req.param("name"));
    const key = blobKey(name, shaParam(c));
    await c.var.admin.bucket
      .resumeMultipartUpload(key, c.req.param("uploadId"))
      .abort()
      .catch(() => undefined); // already gone: aborting is idempotent
    return c.body(null, 204);
  });

  // Commit a version whose artifacts are uploaded: the manifest, create-only.
  app.post("/models/:name/versions", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const { artifacts, ...fields } = await body(c, commitSchema);
    const manifest = await c.var.admin.registry.commitVersion(name, fields, artifacts);
    return c.json(manifest, 201);
  });

  // -- aliases and promotion ---------------------------------------------------

  app.get("/models/:name/aliases", async (c) => {
    const name = checkModelName(c.req.param("name"));
    if ((await c.var.admin.registry.listVersions(name)).length === 0) {
      throw notFound(`model '${name}' not found`);
    }
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
      return c.json(
        { error: `gates failed; alias untouched: ${failed.join("; ")}`, ...outcome },
        422,
      );
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
    if ((await c.var.admin.registry.listVersions(name)).length === 0) {
      throw notFound(`model '${name}' not found`);
    }
    return c.json({
      model: name,
      records: await c.var.admin.registry.aliases.history(name, limit),
    });
  });

  app.get("/models/:name/shadow", async (c) => {
    const name = checkModelName(c.req.param("name"));
    if ((await c.var.admin.registry.listVersions(name)).length === 0) {
      throw notFound(`model '${name}' not found`);
    }
    return c.json({ model: name, reports: await c.var.admin.registry.shadowStats.report(name) });
  });

  app.onError((error, c) => errorResponse(c, error));
  return app;
}
