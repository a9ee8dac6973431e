/**
 * @module
 * `pinion stats <model> [--since 15m]`: the live metrics per version (and the
 * aliases that served it): requests, errors, latency percentiles, runtimes,
 * cold loads, shadow agreement. Without `--since`, running totals.
 */
import type { Command } from "commander";
import { printStats } from "../print";
import { jsonOption, persistOption, targetOption, withTarget } from "./options";

export function registerStats(program: Command): void {
  program
    .command("stats")
    .description("live serving metrics per version (needs --target <worker URL>)")
    .argument("<model>", "model name")
    .option("--since <when>", "only the last while (15m, 2h, 1d) or since a time (ISO 8601)")
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(jsonOption())
    .action(async (model: string, options) => {
      const report = await withTarget(options, (target) => target.metrics(model, options.since));
      printStats(report, options.json === true);
    });
}
