/**
 * @module
 * `pinion rollout <model> <version>`: a progressive rollout of a version on an
 * alias, stepped and judged by the worker (it goes on after the CLI exits);
 * `pinion rollout status|pause|resume|abort <model>`.
 */
import { type Command, InvalidArgumentError } from "commander";
import { parseDuration } from "../../core/serving/metrics";
import { printRollout } from "../print";
import type { RolloutAction } from "../lib/targets";
import {
  aliasOption,
  jsonOption,
  parseVersionArgument,
  persistOption,
  targetOption,
  withTarget,
  type TargetFlags,
} from "./options";

const duration = (flag: string) => (value: string) => {
  const ms = parseDuration(value);
  if (ms === undefined) throw new InvalidArgumentError(`${flag} takes a duration: 30s, 5m, 1h`);
  return ms;
};

/** `0.5%` or `0.005` as a fraction. */
const fraction = (flag: string) => (value: string) => {
  const percent = value.endsWith("%");
  const n = Number(percent ? value.slice(0, -1) : value);
  if (!Number.isFinite(n) || n < 0 || (percent ? n > 100 : n > 1)) {
    throw new InvalidArgumentError(`${flag} takes a percentage (0.5%) or a fraction (0.005)`);
  }
  return percent ? n / 100 : n;
};

const positive = (flag: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError(`${flag} takes a positive number`);
  return n;
};

const steps = (value: string) => {
  const list = value.split(",").map((s) => Number(s.trim()));
  if (list.some((n) => !Number.isFinite(n) || n <= 0 || n > 100)) {
    throw new InvalidArgumentError("--steps takes percentages, e.g. 1,5,25,50,100");
  }
  return list;
};

export function registerRollout(program: Command): void {
  const rollout = program
    .command("rollout")
    .description(
      "roll a version out on an alias step by step, judged on live metrics, rolled back on a breach (needs --target <worker URL>)",
    )
    .argument("<model>", "model name")
    .argument("<version>", "the candidate version", parseVersionArgument)
    .addOption(aliasOption())
    .option("--steps <percents>", "canary steps, ending at 100", steps)
    .option(
      "--interval <duration>",
      "how long each step runs before it is judged (default 5m)",
      duration("--interval"),
    )
    .option(
      "--max-error-rate <rate>",
      "highest share of failed candidate requests (default 0.5%)",
      fraction("--max-error-rate"),
    )
    .option("--max-p99-ms <ms>", "highest candidate p99 latency", positive("--max-p99-ms"))
    .option(
      "--max-latency-ratio <ratio>",
      "highest candidate p99 / baseline p99 (default 1.5)",
      positive("--max-latency-ratio"),
    )
    .option(
      "--min-agreement <rate>",
      "lowest top-1 agreement: gate and shadow check (default 99%)",
      fraction("--min-agreement"),
    )
    .option(
      "--min-requests <n>",
      "candidate requests a step needs before it is judged (default 200)",
      positive("--min-requests"),
    )
    .option(
      "--shadow-first <duration>",
      "mirror all traffic to the candidate this long before the first step",
      duration("--shadow-first"),
    )
    .option("--reason <text>", "why, for the audit log")
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(jsonOption("print the rollout's state as JSON"))
    .action(async (model: string, version: number, o) => {
      const state = await withTarget(o, (target) =>
        target.startRollout(model, {
          alias: o.alias,
          version,
          ...(o.steps !== undefined ? { steps: o.steps } : {}),
          ...(o.interval !== undefined ? { intervalMs: o.interval } : {}),
          ...(o.maxErrorRate !== undefined ? { maxErrorRate: o.maxErrorRate } : {}),
          ...(o.maxP99Ms !== undefined ? { maxP99Ms: o.maxP99Ms } : {}),
          ...(o.maxLatencyRatio !== undefined ? { maxLatencyRatio: o.maxLatencyRatio } : {}),
          ...(o.minAgreement !== undefined ? { minAgreement: o.minAgreement } : {}),
          ...(o.minRequests !== undefined ? { minRequests: Math.round(o.minRequests) } : {}),
          ...(o.shadowFirst !== undefined ? { shadowFirstMs: o.shadowFirst } : {}),
          ...(o.reason !== undefined ? { reason: o.reason } : {}),
        }),
      );
      printRollout(model, state, o.json === true);
    });

  // The subcommands take `rollout`'s own --target, --json … (given before or after them).
  rollout
    .command("status")
    .description("the model's rollout: where it is, its last check, how it ended")
    .argument("<model>", "model name")
    .action(async (model: string, _o, command: Command) => {
      const o = command.optsWithGlobals();
      printRollout(
        model,
        await withTarget(o as TargetFlags, (t) => t.rollout(model)),
        o.json === true,
      );
    });

  for (const [action, description] of [
    ["pause", "stop stepping (the alias stays as it is)"],
    ["resume", "go on stepping, with a fresh window"],
    ["abort", "stop and put the alias back as it was before the rollout"],
  ] as [RolloutAction, string][]) {
    rollout
      .command(action)
      .description(description)
      .argument("<model>", "model name")
      .action(async (model: string, _o, command: Command) => {
        const o = command.optsWithGlobals();
        printRollout(
          model,
          await withTarget(o as TargetFlags, (t) => t.controlRollout(model, action)),
          o.json === true,
        );
      });
  }
}
