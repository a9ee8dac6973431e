/**
 * @module
 * `pinion shadow-report <model>`: how shadow versions' answers differ from
 * the versions serving the alias, per alias revision.
 */
import type { Command } from "commander";
import { printShadowReports } from "../print";
import { jsonOption, persistOption, targetOption, withTarget } from "./options";

export function registerShadowReport(program: Command): void {
  program
    .command("shadow-report")
    .description("how shadow versions' answers differ from the versions serving the alias")
    .argument("<model>", "model name")
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(jsonOption())
    .action(async (model: string, options) => {
      const reports = await withTarget(options, (target) => target.shadowReport(model));
      printShadowReports(model, reports, options.json === true);
    });
}
