/**
 * @module
 * `pinion history <model>`: the model's alias audit log, oldest first.
 */
import type { Command } from "commander";
import { printHistory } from "../print";
import {
  jsonOption,
  parseVersionArgument,
  persistOption,
  targetOption,
  withTarget,
} from "./options";

export function registerHistory(program: Command): void {
  program
    .command("history")
    .description("print a model's alias audit log, oldest first")
    .argument("<model>", "model name")
    // Same range as a version number; wrapped so commander's previous value is not passed on.
    .option("--limit <n>", "only the newest n records", (v) => parseVersionArgument(v))
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(jsonOption())
    .action(async (model: string, options) => {
      const records = await withTarget(options, (target) => target.history(model, options.limit));
      printHistory(model, records, options.json === true);
    });
}
