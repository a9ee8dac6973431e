/**
 * @module
 * The version manifest: everything needed to serve a version without opening
 * its artifacts. Validated with a schema on every read and write.
 */
import { z } from "zod";
import { DATATYPES } from "../protocol/datatypes";
import { MODEL_NAME_PATTERN, versionSchema } from "./names";

export const MANIFEST_SCHEMA_VERSION = 1;

export const tensorSpecSchema = z.object({
  name: z.string().min(1).max(256),
  datatype: z.enum(DATATYPES),
  shape: z.array(z.number().int().min(-1)).max(16),
});

export const artifactSchema = z.object({
  key: z.string().min(1),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "sha256 must be 64 lowercase hex digits"),
  mediaType: z.string().min(1),
});
export type Artifact = z.infer<typeof artifactSchema>;

/**
 * Which runtime should serve the version: `int8` when it carries an int8 plan
 * and its publisher allowed it, `ort` otherwise. Later runtimes extend this list.
 */
export const RUNTIME_HINTS = ["ort", "int8"] as const;
export type RuntimeHint = (typeof RUNTIME_HINTS)[number];

/**
 * Where a version is served: `edge` (in the worker) or `origin` (forwarded to
 * the companion GPU origin), decided at publish from its size or by the publisher.
 */
export const PLACEMENTS = ["edge", "origin"] as const;
export type Placement = (typeof PLACEMENTS)[number];

export const quantizationSchema = z.object({
  scheme: z.literal("int8-per-channel-symmetric-weights-dynamic-u8-activations"),
  layers: z.array(
    z.object({
      name: z.string(),
      k: z.number().int(),
      n: z.number().int(),
      activation: z.string(),
      sqnrDb: z.number(),
      absmaxSqnrDb: z.number(),
    }),
  ),
  /** Measured on the golden cases at publish, when they were given. */
  accuracy: z
    .object({
      cases: z.number().int(),
      cosine: z.number(),
      minCosine: z.number(),
      maxAbsError: z.number(),
      sqnrDb: z.number(),
      top1Agreement: z.number().optional(),
      fp32Accuracy: z.number().optional(),
      int8Accuracy: z.number().optional(),
    })
    .optional(),
});
export type Quantization = z.infer<typeof quantizationSchema>;

export const manifestSchema = z.object({
  schema: z.literal(MANIFEST_SCHEMA_VERSION),
  name: z.string().regex(MODEL_NAME_PATTERN),
  version: versionSchema,
  createdAt: z.iso.datetime(),
  /** OIP platform string, e.g. `onnx_onnxv1`. */
  platform: z.string().min(1),
  inputs: z.array(tensorSpecSchema).min(1),
  outputs: z.array(tensorSpecSchema).min(1),
  artifacts: z.object({
    /** The model as ONNX: what onnxruntime serves. */
    onnx: artifactSchema,
    /** Optional golden cases (inputs and expected outputs) for gates and warm-up. */
    golden: artifactSchema.optional(),
    /** Optional int8 plan (see core/runtimes/int8/plan.ts) for the int8 runtime. */
    int8: artifactSchema.optional(),
    /** Optional class labels, one per line, for the classification extension (see labels.ts). */
    labels: artifactSchema.optional(),
  }),
  /** How the int8 plan was made and how close it is to fp32, when there is one. */
  quantization: quantizationSchema.optional(),
  runtime: z.enum(RUNTIME_HINTS),
  /** Absent in manifests written before placement existed: those are edge versions. */
  placement: z.enum(PLACEMENTS).optional(),
  /** Free-form provenance, e.g. the file the version was published from. */
  source: z.string().max(1024).optional(),
});
export type Manifest = z.infer<typeof manifestSchema>;
export type ArtifactRole = keyof Manifest["artifacts"];

/** Summary of a model's models/… prefix as the registry lists it. */
export interface VersionSummary {
  version: number;
  createdAt: string;
  runtime: RuntimeHint;
  placement: Placement;
  bytes: number;
  sha256: string;
  source?: string;
  /** The int8 plan's quantisation and accuracy report, when the version has one. */
  quantization?: Quantization;
}

export const placementOf = (manifest: Manifest): Placement => manifest.placement ?? "edge";
