/**
 * @module
 * `pinion publish <model> <file>`: convert a `.pth` (or check an `.onnx`),
 * optionally compile an int8 plan, and publish the result as a new version.
 */
import { type Command, InvalidArgumentError, Option } from "commander";
import { ACTIVATIONS, type Activation } from "../../convert/linear-stack";
import { prepareVersion } from "../lib/prepare";
import { printNoInt8Plan, printValueShaped, printPublished, progressBar } from "../print";
import { jsonOption, persistOption, targetOption, withTarget } from "./options";

const positiveBytes = (value: string): number => {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new InvalidArgumentError("a positive number of bytes");
  return n;
};

const positiveInteger = (value: string): number => {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError("a positive integer");
  return n;
};

const parseActivation = (value: string): Activation => {
  if (!(ACTIVATIONS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`choose one of ${ACTIVATIONS.join(", ")}`);
  }
  return value as Activation;
};

const parsePrune = (value: string): number | "auto" => {
  if (value === "auto") return value;
  const fraction = Number(value);
  if (!(fraction > 0 && fraction < 1)) {
    throw new InvalidArgumentError("a fraction between 0 and 1 (e.g. 0.25), or auto");
  }
  return fraction;
};

const parsePoints = (value: string): number => {
  const points = Number(value);
  if (value.trim() === "" || !(points >= 0 && points <= 100)) {
    throw new InvalidArgumentError("percentage points between 0 and 100");
  }
  return points;
};

export function registerPublish(program: Command): void {
  program
    .command("publish")
    .description("publish a .pth state_dict (of Linear layers) or an .onnx file as a new version")
    .argument("<model>", "model name (a-z, 0-9, '.', '_', '-')")
    .argument("<file>", "a .pth or .onnx file")
    .option(
      "--activation <name>",
      `activation between Linear layers of a .pth (${ACTIVATIONS.join(", ")}; default relu)`,
      parseActivation,
    )
    .option("--golden <file>", "JSON cases (inputs and expected outputs) stored with the version")
    .option(
      "--labels <file>",
      "class labels, one per line, for the classification extension (as many as the output has classes)",
    )
    .option(
      "--background <file>",
      "JSON reference input rows (an array, or {rows}) that explanations compare inputs with",
    )
    .addOption(
      new Option(
        "--quantize <scheme>",
        "also compile an int8 plan and serve it on the int8 runtime",
      ).choices(["int8"]),
    )
    .addOption(
      new Option(
        "--placement <where>",
        "edge (in the worker), origin (the GPU origin) or auto: the origin when the model exceeds the edge budget",
      )
        .choices(["auto", "edge", "origin"])
        .default("auto"),
    )
    .addOption(
      new Option("--edge-budget <bytes>", "largest model served at the edge with --placement auto")
        .env("PINION_EDGE_BUDGET_BYTES")
        .argParser(positiveBytes),
    )
    .addOption(
      new Option(
        "--max-inflated <bytes>",
        "most bytes a .pth's compressed zip entries may inflate to (default 268435456)",
      )
        .env("PINION_MAX_INFLATED_BYTES")
        .argParser(positiveBytes),
    )
    .addOption(
      new Option(
        "--max-sequence <tokens>",
        "with --quantize int8, the longest sequence a text model's int8 plan takes when its sequence axis is dynamic (default 128)",
      ).argParser(positiveInteger),
    )
    .option(
      "--prune <fraction|auto>",
      "remove that share of each hidden layer's units (dense layers), or auto: the most within --max-accuracy-drop on the --golden set",
      parsePrune,
    )
    .option(
      "--max-accuracy-drop <points>",
      "golden-set accuracy (or agreement) points --prune may lose (default 0.5)",
      parsePoints,
    )
    .option("--allow-non-finite", "publish weights that hold NaN or ±Infinity (refused otherwise)")
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(jsonOption("print the manifest as JSON"))
    .action(async (model: string, file: string, options) => {
      const prepared = await prepareVersion(file, {
        activation: options.activation,
        golden: options.golden,
        labels: options.labels,
        background: options.background,
        quantize: options.quantize,
        placement: options.placement,
        ...(options.edgeBudget !== undefined ? { edgeBudgetBytes: options.edgeBudget } : {}),
        ...(options.maxInflated !== undefined ? { maxInflatedBytes: options.maxInflated } : {}),
        allowNonFinite: options.allowNonFinite === true,
        ...(options.maxSequence !== undefined ? { maxSequence: options.maxSequence } : {}),
        ...(options.prune !== undefined ? { prune: options.prune } : {}),
        ...(options.maxAccuracyDrop !== undefined
          ? { maxAccuracyDrop: options.maxAccuracyDrop }
          : {}),
      });
      if (prepared.int8NotCompiled) printNoInt8Plan(prepared.int8NotCompiled);
      for (const { output, cause } of prepared.valueShaped) printValueShaped(output, cause);
      const manifest = await withTarget(options, (target) =>
        target.publish(model, prepared, progressBar()),
      );
      printPublished(file, prepared, manifest, options.json === true);
    });
}
