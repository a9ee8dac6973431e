/**
 * @module
 * The admin API's publishing routes, what `pinion publish --target https://…`
 * calls: list models and versions, upload artifacts (multipart, one part per
 * request, streamed into the store: the worker never holds a whole model; see
 * `core/registry/uploads.ts` for staging and verification), and commit a
 * version — its manifest written create-only, once `VersionChecker` has checked
 * (and, for edge versions, loaded) what it is made of.
 */
import { Hono } from "hono";
import { z } from "zod";
import { invalid, unavailable } from "../../core/errors";
import {
  artifactSchema,
  PLACEMENTS,
  pruningSchema,
  quantizationSchema,
  RUNTIME_HINTS,
  tensorSpecSchema,
} from "../../core/registry/manifest";
import { checkModelName, versionSchema } from "../../core/registry/names";
import { MAX_ARTIFACT_BYTES, MAX_PARTS, SHA256_PATTERN } from "../../core/registry/uploads";
import type { AdminVariables } from "./context";
import { jsonBody as body, smallJson } from "./json-body";

const startUploadSchema = z.object({
  sha256: z.string().regex(SHA256_PATTERN, "sha256 must be 64 lowercase hex digits"),
  bytes: z
    .number()
    .int()
    .positive()
    .max(MAX_ARTIFACT_BYTES, `an artifact is at most ${MAX_ARTIFACT_BYTES} bytes`),
  mediaType: z.string().min(1).max(200),
});

const completeSchema = z.object({
  sha256: z.string().regex(SHA256_PATTERN),
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
  pruning: pruningSchema.optional(),
  artifacts: z.object({
    onnx: artifactSchema,
    golden: artifactSchema.optional(),
    int8: artifactSchema.optional(),
    labels: artifactSchema.optional(),
    background: artifactSchema.optional(),
  }),
});

/** The `sha256` query parameter parts and aborts carry (the CLI's resume state names it). */
function checkShaParam(value: string | undefined): void {
  if (!SHA256_PATTERN.test(value ?? "")) {
    throw invalid("query parameter sha256 must be 64 lowercase hex digits");
  }
}

export function publishRoutes(): Hono<{ Variables: AdminVariables }> {
  const app = new Hono<{ Variables: AdminVariables }>();

  app.get("/models", async (c) => c.json({ models: await c.var.admin.registry.listModels() }));

  app.get("/models/:name/versions", async (c) => {
    const name = checkModelName(c.req.param("name"));
    await c.var.admin.registry.requireModel(name);
    const versions = await c.var.admin.registry.describeVersions(name);
    return c.json({ name, versions });
  });

  // Start (or skip, when its blob is stored) the upload of one artifact.
  app.post("/models/:name/uploads", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const started = await c.var.admin.uploads.start(name, await body(c, startUploadSchema));
    return started.exists ? c.json(started) : c.json(started, 201);
  });

  // One part, streamed into the store. Needs Content-Length: R2 must know the size up front.
  app.put("/models/:name/uploads/:uploadId/parts/:part", async (c) => {
    const name = checkModelName(c.req.param("name"));
    checkShaParam(c.req.query("sha256"));
    const length = c.req.header("content-length");
    const part = await c.var.admin.uploads.putPart(
      name,
      c.req.param("uploadId"),
      Number(c.req.param("part")),
      c.req.raw.body,
      length === undefined ? undefined : Number(length),
    );
    return c.json(part);
  });

  app.post("/models/:name/uploads/:uploadId/complete", smallJson, async (c) => {
    const name = checkModelName(c.req.param("name"));
    const { sha256, parts } = await body(c, completeSchema);
    return c.json(await c.var.admin.uploads.complete(name, c.req.param("uploadId"), sha256, parts));
  });

  app.delete("/models/:name/uploads/:uploadId", async (c) => {
    const name = checkModelName(c.req.param("name"));
    checkShaParam(c.req.query("sha256"));
    await c.var.admin.uploads.abort(name, c.req.param("uploadId"));
    return c.body(null, 204);
  });

  // Commit a version whose artifacts are uploaded: checked, then its manifest, create-only.
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

  return app;
}
