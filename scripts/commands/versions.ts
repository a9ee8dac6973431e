/**
 * @module
 * `pinion versions <model>`: list a model's versions; a model with none is
 * not found (exit 6), except under `--json`, which prints the empty list.
 */
import type { Command } from "commander";
import { notFound } from "../../core/errors";
import { printVersions } from "../print";
import { jsonOption, persistOption, targetOption, withTarget } from "./options";

export function registerVersions(program: Command): void {
  program
    .command("versions")
    .description("list a model's versions")
    .argument("<model>", "model name")
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(jsonOption())
    .action(async (model: string, options) => {
      const versions = await withTarget(options, (target) => target.describeVersions(model));
      const json = options.json === true;
      if (!json && versions.length === 0) throw notFound(`model '${model}' has no versions`);
      printVersions(versions, json);
    });
}
