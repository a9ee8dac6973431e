/**
 * @module
 * The `pinion` CLI: the program and its commands (one module each under
 * `commands/`, their output in `print.ts`). Errors print as one line;
 * `--verbose` adds the stack trace. Exit codes are listed in `exit-codes.ts`.
 */
import { Command, CommanderError } from "commander";
import { registerAliases } from "./commands/aliases";
import { registerExplain } from "./commands/explain";
import { registerHistory } from "./commands/history";
import { registerModels } from "./commands/models";
import { registerPromote } from "./commands/promote";
import { registerPublish } from "./commands/publish";
import { registerRollback } from "./commands/rollback";
import { registerRollout } from "./commands/rollout";
import { registerShadowReport } from "./commands/shadow-report";
import { registerStats } from "./commands/stats";
import { registerVersions } from "./commands/versions";
import { EXIT, exitCodeOfError } from "./exit-codes";
import { printError } from "./print";
import pkg from "../package.json";

const program = new Command("pinion")
  .description("Publish models to Pinion and manage their versions")
  .version(pkg.version)
  .option("--verbose", "print stack traces with errors")
  .showHelpAfterError()
  .exitOverride();

// Registration order is the order `pinion --help` lists them in.
registerPublish(program);
registerModels(program);
registerVersions(program);
registerPromote(program);
registerRollback(program);
registerAliases(program);
registerHistory(program);
registerShadowReport(program);
registerExplain(program);
registerStats(program);
registerRollout(program);

try {
  await program.parseAsync();
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and --version exit 0; commander already printed any usage error.
    process.exitCode = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else {
    printError(error, program.opts().verbose || process.argv.includes("--verbose"));
    process.exitCode = exitCodeOfError(error);
  }
}
