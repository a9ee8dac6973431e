/**
 * @module
 * What several commands share: the option builders (where to work, which
 * alias, who acts, `--json`), the version-number argument parser, and
 * `withTarget`, which opens the target those options name and always closes it.
 */
import { InvalidArgumentError, Option } from "commander";
import { userInfo } from "node:os";
import { DEFAULT_ALIAS } from "../../core/registry/aliases";
import { MAX_VERSION, VERSION_PATTERN } from "../../core/registry/names";
import { DEFAULT_PERSIST_TO } from "../../origin/stores/local-r2";
import { openTarget, type Target } from "../lib/targets";

// Builders, not shared instances: commander binds an Option to the command it is added to.
export const targetOption = () =>
  new Option("--target <local|url>", "where to publish: local R2 (wrangler dev) or a worker URL")
    .default("local")
    .env("PINION_TARGET");
export const persistOption = () =>
  new Option("--persist-to <dir>", "local R2 state directory, as given to wrangler dev").default(
    DEFAULT_PERSIST_TO,
  );
export const aliasOption = () =>
  new Option("--alias <alias>", "the alias to change").default(DEFAULT_ALIAS);
export const actorOption = () =>
  new Option(
    "--actor <name>",
    "who the audit log records for local R2 (a worker records its token's name)",
  ).env("PINION_ACTOR");
export const jsonOption = (description = "print JSON") => new Option("--json", description);

export const parseVersionArgument = (value: string) => {
  if (!VERSION_PATTERN.test(value)) {
    throw new InvalidArgumentError(`versions are integers from 1 to ${MAX_VERSION}`);
  }
  return Number(value);
};

/** The options `targetOption`, `persistOption` and `actorOption` leave on a command. */
export interface TargetFlags {
  target: string;
  persistTo: string;
  actor?: string;
}

export async function withTarget<T>(options: TargetFlags, work: (t: Target) => Promise<T>) {
  const target = await openTarget(options.target, {
    persistTo: options.persistTo,
    token: process.env.PINION_ADMIN_TOKEN,
    actor: options.actor ?? `local:${userInfo().username}`,
  });
  try {
    return await work(target);
  } finally {
    await target.close();
  }
}
