/**
 * @module
 * `pinion promote <model> <version>`: point an alias at a version once its
 * gates pass, or canary or shadow it behind the version serving now.
 */
import { type Command, InvalidArgumentError } from "commander";
import { exitCodeOfOutcome } from "../exit-codes";
import { printOutcome } from "../print";
import {
  actorOption,
  aliasOption,
  jsonOption,
  parseVersionArgument,
  persistOption,
  targetOption,
  withTarget,
} from "./options";

const parsePercent = (flag: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${flag} takes a number (percent)`);
  return n;
};

export function registerPromote(program: Command): void {
  program
    .command("promote")
    .description(
      "point an alias at a version (after its gates pass), or canary or shadow it behind the current one",
    )
    .argument("<model>", "model name")
    .argument("<version>", "the version to promote", parseVersionArgument)
    .addOption(aliasOption())
    .option(
      "--canary <percent>",
      "send this share of the alias's traffic to the version",
      parsePercent("--canary"),
    )
    .option(
      "--shadow <percent>",
      "mirror this share of the alias's traffic to the version, answering from the current one",
      parsePercent("--shadow"),
    )
    .option(
      "--min-agreement <fraction>",
      "gate: top-1 agreement with the current version on the golden inputs, 0–1",
      parsePercent("--min-agreement"),
    )
    .option("--reason <text>", "why, for the audit log")
    .option("--force", "apply even if a gate fails (recorded as forced)")
    .option("--dry-run", "print the plan and gate results; change nothing")
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(actorOption())
    .addOption(jsonOption("print the outcome as JSON"))
    .action(async (model: string, version: number, options) => {
      const outcome = await withTarget(options, (target) =>
        target.promote(model, {
          alias: options.alias,
          version,
          ...(options.canary !== undefined ? { canaryPercent: options.canary } : {}),
          ...(options.shadow !== undefined ? { shadowPercent: options.shadow } : {}),
          ...(options.minAgreement !== undefined ? { minAgreement: options.minAgreement } : {}),
          ...(options.reason !== undefined ? { reason: options.reason } : {}),
          force: options.force === true,
          dryRun: options.dryRun === true,
        }),
      );
      printOutcome(outcome, options.json === true);
      process.exitCode = exitCodeOfOutcome(outcome);
    });
}
