/**
 * @module
 * The stored form of a version's golden cases (the `golden` artifact): inputs
 * with the outputs the model must reproduce, used by promotion gates. Written
 * by `convert/golden.ts` at publish, read back here by the worker and the CLI.
 */
import { z } from "zod";
import { PinionError } from "../errors";

export const GOLDEN_FORMAT = "pinion.golden/1";

const nested: z.ZodType<unknown> = z.lazy(() => z.union([z.number(), z.array(nested)]));

export const goldenSchema = z.object({
  format: z.literal(GOLDEN_FORMAT),
  inputName: z.string(),
  outputName: z.string(),
  /** One row per case, each shaped like the model input without its batch axis. */
  inputs: z.array(nested).min(1),
  expected: z.array(nested).min(1),
  labels: z.array(z.number().int()).optional(),
  /** Largest absolute difference a runtime may show on any output value. */
  tolerance: z.number().positive(),
});
export type Golden = z.infer<typeof goldenSchema>;

export function decodeGolden(bytes: Uint8Array): Golden {
  try {
    return goldenSchema.parse(JSON.parse(new TextDecoder().decode(bytes)));
  } catch (error) {
    throw new PinionError("internal", `the golden set is corrupt: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** The shape of a nested array, following first elements. */
export function shapeOf(value: unknown): number[] {
  const shape: number[] = [];
  let level = value;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  return shape;
}

/** Flattens nested arrays of numbers in row-major order. */
export function flatten(value: unknown, out: number[] = []): number[] {
  if (Array.isArray(value)) for (const item of value) flatten(item, out);
  else out.push(value as number);
  return out;
}
