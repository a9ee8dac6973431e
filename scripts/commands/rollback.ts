/**
 * @module
 * `pinion rollback <model>`: undo the alias's latest change; repeating it
 * walks further back through the alias's history.
 */
import type { Command } from "commander";
import { exitCodeOfOutcome } from "../exit-codes";
import { printOutcome } from "../print";
import {
  actorOption,
  aliasOption,
  jsonOption,
  persistOption,
  targetOption,
  withTarget,
} from "./options";

export function registerRollback(program: Command): void {
  program
    .command("rollback")
    .description("undo the alias's latest change (repeat to walk further back through its history)")
    .argument("<model>", "model name")
    .addOption(aliasOption())
    .option("--reason <text>", "why, for the audit log")
    .option("--dry-run", "print the plan; change nothing")
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(actorOption())
    .addOption(jsonOption("print the outcome as JSON"))
    .action(async (model: string, options) => {
      const outcome = await withTarget(options, (target) =>
        target.rollback(model, {
          alias: options.alias,
          ...(options.reason !== undefined ? { reason: options.reason } : {}),
          dryRun: options.dryRun === true,
        }),
      );
      printOutcome(outcome, options.json === true);
      process.exitCode = exitCodeOfOutcome(outcome);
    });
}
