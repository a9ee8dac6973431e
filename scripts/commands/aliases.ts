/**
 * @module
 * `pinion aliases <model>`: the model's alias document.
 */
import type { Command } from "commander";
import { printAliases } from "../print";
import { jsonOption, persistOption, targetOption, withTarget } from "./options";

export function registerAliases(program: Command): void {
  program
    .command("aliases")
    .description("show a model's aliases")
    .argument("<model>", "model name")
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(jsonOption())
    .action(async (model: string, options) => {
      const document = await withTarget(options, (target) => target.aliases(model));
      printAliases(model, document, options.json === true);
    });
}
