/**
 * @module
 * `pinion models`: list the target's models.
 */
import type { Command } from "commander";
import { printModels } from "../print";
import { jsonOption, persistOption, targetOption, withTarget } from "./options";

export function registerModels(program: Command): void {
  program
    .command("models")
    .description("list models")
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(jsonOption())
    .action(async (options) => {
      const models = await withTarget(options, (target) => target.listModels());
      printModels(models, options.json === true);
    });
}
