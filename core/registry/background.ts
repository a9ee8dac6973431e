/**
 * @module
 * The background set of a version (the `background` artifact): reference
 * input rows that explanations compare an input with — KernelSHAP averages
 * the model over them, occlusion and integrated gradients use their mean. What
 * `pinion publish --background file.json` stores. Pure functions on bytes.
 */
import { z } from "zod";
import { internal, invalid } from "../errors";
import type { TensorSpec } from "../protocol/datatypes";
import { flatten, shapeOf } from "./golden";

export const BACKGROUND_FORMAT = "pinion.background/1";
export const BACKGROUND_MEDIA_TYPE = "application/json";
/**
 * Most rows a background set may hold: KernelSHAP evaluates every coalition
 * on every row, so each row multiplies the work (see MAX_EXPLAIN_EVALUATIONS).
 */
export const MAX_BACKGROUND_ROWS = 256;
/** Largest background artifact, in bytes (256 rows of a 784-pixel image fit easily). */
export const MAX_BACKGROUND_BYTES = 4 * 1024 * 1024;

const nested: z.ZodType<unknown> = z.lazy(() => z.union([z.number(), z.array(nested)]));
const rowsSchema = z
  .array(nested)
  .min(1, "needs at least one row")
  .max(MAX_BACKGROUND_ROWS, `holds at most ${MAX_BACKGROUND_ROWS} rows`);

export const backgroundSchema = z.object({
  format: z.literal(BACKGROUND_FORMAT),
  inputName: z.string(),
  /** One row per reference input, each shaped like the model input without its batch axis. */
  rows: rowsSchema,
});
export type Background = z.infer<typeof backgroundSchema>;

/** What a publisher may write: an array of rows, or `{input_name?, rows | inputs}`. */
const backgroundFileSchema = z.union([
  rowsSchema,
  z.object({ input_name: z.string().optional(), rows: rowsSchema }),
  z.object({ input_name: z.string().optional(), inputs: rowsSchema }),
]);

function parseJson(bytes: Uint8Array, what: string): unknown {
  if (bytes.byteLength > MAX_BACKGROUND_BYTES) {
    throw invalid(`${what} is ${bytes.byteLength} bytes; at most ${MAX_BACKGROUND_BYTES}`);
  }
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw invalid(`${what} is not valid JSON (${(error as Error).message.slice(0, 200)})`);
  }
}

const firstIssue = (error: z.ZodError) => {
  const issue = error.issues[0]!;
  return `${issue.path.join(".") || "object"}: ${issue.message.slice(0, 200)}`;
};

/**
 * Reads a publisher's background file (`--background`) into the stored form,
 * checked against the model's single input.
 */
export function parseBackgroundFile(bytes: Uint8Array, inputs: readonly TensorSpec[]): Background {
  const parsed = backgroundFileSchema.safeParse(parseJson(bytes, "the background file"));
  if (!parsed.success) throw invalid(`the background file ${firstIssue(parsed.error)}`);
  const file = parsed.data;
  const rows = Array.isArray(file) ? file : "rows" in file ? file.rows : file.inputs;
  const named = Array.isArray(file) ? undefined : file.input_name;
  if (inputs.length !== 1)
    throw invalid("background sets are supported for single-input models only");
  const background: Background = {
    format: BACKGROUND_FORMAT,
    inputName: named ?? inputs[0]!.name,
    rows,
  };
  checkBackground(background, inputs);
  return background;
}

export function encodeBackground(background: Background): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(background));
}

/** Reads a stored background set a publisher sends (the admin API's commit): refusals are 400s. */
export function parseStoredBackground(bytes: Uint8Array): Background {
  const parsed = backgroundSchema.safeParse(parseJson(bytes, "the background artifact"));
  if (!parsed.success) throw invalid(firstIssue(parsed.error));
  return parsed.data;
}

/** Reads a committed version's background set; a corrupt one is the server's fault. */
export function decodeBackground(bytes: Uint8Array): Background {
  try {
    return parseStoredBackground(bytes);
  } catch (error) {
    throw internal(`the background set is corrupt: ${(error as Error).message}`, error);
  }
}

/** Checks a background set against the version's inputs: one input, its row shape, finite values. */
export function checkBackground(background: Background, inputs: readonly TensorSpec[]): void {
  if (inputs.length !== 1)
    throw invalid("background sets are supported for single-input models only");
  const input = inputs[0]!;
  if (background.inputName !== input.name) {
    throw invalid(
      `the background set is for input '${background.inputName.slice(0, 256)}'; the model takes '${input.name}'`,
    );
  }
  if (input.datatype !== "FP32") {
    throw invalid(`background sets need an FP32 input; '${input.name}' is ${input.datatype}`);
  }
  const want = input.shape.slice(1);
  for (const [i, row] of background.rows.entries()) {
    const got = shapeOf(row);
    const fits = got.length === want.length && want.every((d, axis) => d === -1 || d === got[axis]);
    if (!fits) {
      throw invalid(
        `background row ${i} has shape [${got.join(", ")}]; '${input.name}' takes [${want.join(", ")}] per row`,
      );
    }
    const values = flatten(row);
    if (values.length !== got.reduce((product, d) => product * d, 1)) {
      throw invalid(`background row ${i} is ragged: its rows differ in length`);
    }
    if (!values.every((v) => Number.isFinite(v))) {
      throw invalid(`background row ${i} holds a value that is not a finite number`);
    }
  }
}

/** The rows as one row-major block: `count × features` FP32 values. */
export function backgroundRows(background: Background): { rows: Float32Array; count: number } {
  const flat = background.rows.map((row) => flatten(row));
  const features = flat[0]!.length;
  const rows = new Float32Array(flat.length * features);
  flat.forEach((row, i) => rows.set(row, i * features));
  return { rows, count: flat.length };
}
