/**
 * @module
 * Golden cases: inputs with the outputs the model must reproduce, stored with a
 * version for promotion gates and warm-up. Accepts the shapes PyTorch users
 * export (`{input_name, output_name, inputs, expected}`, or `logits` instead of
 * `expected` for classifiers, with optional `labels`) and stores one canonical form.
 */
import { z } from "zod";
import { invalid } from "../core/errors";
import type { TensorSpec } from "../core/protocol/datatypes";
import { checkGoldenRows, GOLDEN_FORMAT, type Golden } from "../core/registry/golden";

export { GOLDEN_FORMAT, type Golden };

const nested: z.ZodType<unknown> = z.lazy(() => z.union([z.number(), z.array(nested)]));

const goldenFileSchema = z
  .object({
    input_name: z.string().optional(),
    output_name: z.string().optional(),
    inputs: z.array(nested).min(1, "needs at least one case"),
    expected: z.array(nested).optional(),
    logits: z.array(nested).optional(),
    labels: z.array(z.number().int()).optional(),
    tolerance: z.number().positive().optional(),
  })
  .refine((g) => g.expected || g.logits, "needs `expected` (or `logits`) outputs");

const DEFAULT_TOLERANCE = 1e-4;

/** Parses and checks a golden file against the model's signature. */
export function parseGolden(text: string, inputs: TensorSpec[], outputs: TensorSpec[]): Golden {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw invalid(`the golden file is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = goldenFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw invalid(`the golden file ${issue.path.join(".") || "object"}: ${issue.message}`);
  }
  const file = parsed.data;
  const input = file.input_name ? inputs.find((s) => s.name === file.input_name) : inputs[0];
  if (!input || (inputs.length !== 1 && !file.input_name)) {
    throw invalid(
      `the golden file's input_name must be one of: ${inputs.map((s) => s.name).join(", ")}`,
    );
  }
  if (inputs.length !== 1) throw invalid("golden files are supported for single-input models only");
  const output = file.output_name ? outputs.find((s) => s.name === file.output_name) : outputs[0];
  if (!output) {
    throw invalid(
      `the golden file's output_name must be one of: ${outputs.map((s) => s.name).join(", ")}`,
    );
  }
  const expected = (file.expected ?? file.logits)!;
  if (expected.length !== file.inputs.length) {
    throw invalid(
      `the golden file has ${file.inputs.length} inputs but ${expected.length} expected outputs`,
    );
  }
  if (file.labels && file.labels.length !== file.inputs.length) {
    throw invalid(
      `the golden file has ${file.inputs.length} inputs but ${file.labels.length} labels`,
    );
  }
  checkGoldenRows(file.inputs, input, "input");
  checkGoldenRows(expected, output, "output");
  return {
    format: GOLDEN_FORMAT,
    inputName: input.name,
    outputName: output.name,
    inputs: file.inputs,
    expected,
    ...(file.labels ? { labels: file.labels } : {}),
    tolerance: file.tolerance ?? DEFAULT_TOLERANCE,
  };
}
