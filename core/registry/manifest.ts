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
  /** A text plan's longest sequence (requests may send up to this many tokens). */
  maxSequence: z.number().int().positive().optional(),
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

/**
 * What structured pruning removed at publish (`pinion publish --prune`): per
 * hidden layer the units it had, kept and removed, how units were ranked, and
 * the golden-set score (points) before and after, when there was a golden set.
 */
export const pruningSchema = z.object({
  /** `golden-effect`: measured loss increase per unit on the golden set; `weight-norm` without one. */
  method: z.enum(["golden-effect", "weight-norm"]),
  /** Share of each hidden layer's units removed (rounded down per layer). */
  fraction: z.number().min(0).max(1),
  /** What was asked for: a fraction, or `auto` (the largest within `maxAccuracyDrop`). */
  requested: z.union([z.literal("auto"), z.number().min(0).max(1)]),
  maxAccuracyDrop: z.number().min(0).max(100).optional(),
  layers: z
    .array(
      z.object({
        name: z.string().max(256),
        units: z.number().int().positive(),
        kept: z.number().int().positive(),
        removed: z.number().int().nonnegative(),
      }),
    )
    .max(1024),
  parameters: z.object({
    before: z.number().int().nonnegative(),
    after: z.number().int().nonnegative(),
  }),
  accuracy: z
    .object({
      /** `accuracy` against the golden labels; `agreement` (R² with the unpruned outputs) without. */
      metric: z.enum(["accuracy", "agreement"]),
      cases: z.number().int().positive(),
      fp32: z.number(),
      pruned: z.number(),
      prunedInt8: z.number().optional(),
    })
    .optional(),
});
export type PruningRecord = z.infer<typeof pruningSchema>;

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
    /** Optional background set (reference inputs) for explanations (see background.ts). */
    background: artifactSchema.optional(),
  }),
  /** How the int8 plan was made and how close it is to fp32, when there is one. */
  quantization: quantizationSchema.optional(),
  /** What was pruned at publish, when the version was. */
  pruning: pruningSchema.optional(),
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
  /** What pruning removed, in a line (e.g. `fc1 128→96, fc2 64→48 (25.0%, golden-effect)`). */
  pruned?: string;
  /** The int8 plan's quantisation and accuracy report, when the version has one. */
  quantization?: Quantization;
}

/** A pruned version's layers in a line, for listings. */
export function describePruning(pruning: PruningRecord): string {
  const layers = pruning.layers.map((l) => `${l.name} ${l.units}→${l.kept}`).join(", ");
  return `${layers} (${(pruning.fraction * 100).toFixed(1)}%, ${pruning.method})`;
}

export const placementOf = (manifest: Manifest): Placement => manifest.placement ?? "edge";
