/**
 * @module
 * The stored form of a version's golden cases (the `golden` artifact): inputs
 * with the outputs the model must reproduce, used by promotion gates. Written
 * by `convert/golden.ts` at publish, read back here by the worker and the CLI.
 */
import { z } from "zod";
import { internal, invalid } from "../errors";
import type { TensorSpec } from "../protocol/datatypes";

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
    throw internal(`the golden set is corrupt: ${(error as Error).message}`, error);
  }
}

/**
 * Reads a stored golden set a publisher sends (the admin API's commit): not
 * JSON or not the stored format is the caller's mistake, said as such.
 */
export function parseStoredGolden(bytes: Uint8Array): Golden {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw invalid(`not valid JSON (${(error as Error).message.slice(0, 200)})`);
  }
  const parsed = goldenSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw invalid(`${issue.path.join(".") || "object"}: ${issue.message.slice(0, 200)}`);
  }
  return parsed.data;
}

const INTEGER_RANGES: Partial<Record<string, [number, number]>> = {
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  INT32: [-2147483648, 2147483647],
  INT16: [-32768, 32767],
  INT8: [-128, 127],
  UINT8: [0, 255],
  BOOL: [0, 1],
};

/**
 * Checks golden rows (one per case) against a tensor's spec without its batch
 * axis: the shape, and that no row is ragged (gates flatten rows to feed them).
 */
export function checkGoldenRows(rows: readonly unknown[], spec: TensorSpec, what: string): void {
  const want = spec.shape.slice(1);
  for (const [i, row] of rows.entries()) {
    const got = shapeOf(row);
    const fits = got.length === want.length && want.every((d, axis) => d === -1 || d === got[axis]);
    if (!fits) {
      throw invalid(
        `golden ${what} ${i} has shape [${got.join(", ")}]; '${spec.name}' takes [${want.join(", ")}] per case`,
      );
    }
    const elements = got.reduce((product, d) => product * d, 1);
    const values = flatten(row);
    if (values.length !== elements) {
      throw invalid(`golden ${what} ${i} is ragged: its rows differ in length`);
    }
    // Integer inputs (token ids, masks) must be integers the datatype holds.
    const range = INTEGER_RANGES[spec.datatype];
    if (range && values.some((v) => !Number.isInteger(v) || v < range[0] || v > range[1])) {
      throw invalid(
        `golden ${what} ${i} holds values that are not ${spec.datatype} integers ('${spec.name}' is ${spec.datatype})`,
      );
    }
  }
}

/** Checks a golden set against the signature of the version it belongs to. */
export function checkGolden(golden: Golden, inputs: TensorSpec[], outputs: TensorSpec[]): void {
  if (inputs.length !== 1) throw invalid("golden sets are supported for single-input models only");
  const input = inputs.find((s) => s.name === golden.inputName);
  if (!input) {
    throw invalid(`inputName '${golden.inputName.slice(0, 256)}' is not an input of the model`);
  }
  const output = outputs.find((s) => s.name === golden.outputName);
  if (!output) {
    throw invalid(`outputName '${golden.outputName.slice(0, 256)}' is not an output of the model`);
  }
  if (golden.expected.length !== golden.inputs.length) {
    throw invalid(
      `the golden set has ${golden.inputs.length} inputs but ${golden.expected.length} expected outputs`,
    );
  }
  if (golden.labels && golden.labels.length !== golden.inputs.length) {
    throw invalid(
      `the golden set has ${golden.inputs.length} inputs but ${golden.labels.length} labels`,
    );
  }
  checkGoldenRows(golden.inputs, input, "input");
  checkGoldenRows(golden.expected, output, "output");
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
