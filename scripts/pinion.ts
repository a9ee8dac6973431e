/**
 * @module
 * The `pinion` CLI: thin commands over the conversion, publishing, registry
 * and promotion libraries. Errors print as one line; `--verbose` adds the
 * stack trace. Exit codes (for CI scripts): 0 done (or nothing to do),
 * 1 unexpected error, 2 usage or invalid request, 3 a gate refused the
 * promotion, 4 conflict (concurrent changes kept winning), 5 authentication,
 * 6 model, version or alias not found.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { userInfo } from "node:os";
import { SingleBar, Presets } from "cli-progress";
import { ACTIVATIONS, type Activation } from "../convert/linear-stack";
import { notFound, PinionError } from "../core/errors";
import { DEFAULT_ALIAS, describeEntry } from "../core/registry/aliases";
import type { Manifest, VersionSummary } from "../core/registry/manifest";
import { MAX_VERSION, VERSION_PATTERN } from "../core/registry/names";
import type { AuditRecord, GateResult } from "../core/registry/promotion";
import type { PromotionOutcome } from "../core/serving/promoter";
import { DEFAULT_PERSIST_TO } from "../origin/stores/local-r2";
import { prepareVersion } from "./lib/prepare";
import { openTarget, type Target } from "./lib/targets";
import type { UploadProgress } from "./lib/upload";
import pkg from "../package.json";

export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  gatesFailed: 3,
  conflict: 4,
  auth: 5,
  notFound: 6,
} as const;

const EXIT_OF_KIND: Partial<Record<PinionError["kind"], number>> = {
  invalid_argument: EXIT.usage,
  payload_too_large: EXIT.usage,
  conflict: EXIT.conflict,
  unauthenticated: EXIT.auth,
  not_found: EXIT.notFound,
};

const program = new Command("pinion")
  .description("Publish models to Pinion and manage their versions")
  .version(pkg.version)
  .option("--verbose", "print stack traces with errors")
  .showHelpAfterError()
  .exitOverride();

const targetOption = () =>
  new Option("--target <local|url>", "where to publish: local R2 (wrangler dev) or a worker URL")
    .default("local")
    .env("PINION_TARGET");
const persistOption = () =>
  new Option("--persist-to <dir>", "local R2 state directory, as given to wrangler dev").default(
    DEFAULT_PERSIST_TO,
  );

async function withTarget<T>(
  options: { target: string; persistTo: string; actor?: string },
  work: (t: Target) => Promise<T>,
) {
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

function progressBar(): UploadProgress | undefined {
  if (!process.stderr.isTTY) return undefined;
  const bars = new Map<string, SingleBar>();
  return ({ sha256, sent, total }) => {
    let bar = bars.get(sha256);
    if (!bar) {
      bar = new SingleBar(
        {
          format: `uploading ${sha256.slice(0, 12)} [{bar}] {percentage}% {value}/{total} bytes`,
          stream: process.stderr,
        },
        Presets.shades_classic,
      );
      bar.start(total, 0);
      bars.set(sha256, bar);
    }
    bar.update(sent);
    if (sent >= total) bar.stop();
  };
}

function printQuantization(manifest: Manifest): void {
  const q = manifest.quantization;
  if (!q || !manifest.artifacts.int8) return;
  console.log(`  int8:    plan ${manifest.artifacts.int8.bytes} bytes; served by the int8 runtime`);
  for (const l of q.layers) {
    console.log(
      `    ${l.name} ${l.k}→${l.n} ${l.activation}: weight SQNR ${l.sqnrDb.toFixed(1)} dB (absmax ${l.absmaxSqnrDb.toFixed(1)} dB)`,
    );
  }
  const a = q.accuracy;
  if (!a) return;
  const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
  console.log(`    accuracy on ${a.cases} golden cases vs fp32:`);
  console.log(
    `      cosine ${a.cosine.toFixed(6)} (worst case ${a.minCosine.toFixed(6)}), max abs error ${a.maxAbsError.toExponential(2)}, SQNR ${a.sqnrDb.toFixed(1)} dB`,
  );
  if (a.top1Agreement !== undefined) console.log(`      top-1 agreement ${pct(a.top1Agreement)}`);
  if (a.int8Accuracy !== undefined) {
    console.log(`      accuracy: int8 ${pct(a.int8Accuracy)}, fp32 ${pct(a.fp32Accuracy!)}`);
  }
}

const positiveBytes = (value: string): number => {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new InvalidArgumentError("a positive number of bytes");
  return n;
};

const parseActivation = (value: string): Activation => {
  if (!(ACTIVATIONS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`choose one of ${ACTIVATIONS.join(", ")}`);
  }
  return value as Activation;
};

program
  .command("publish")
  .description("publish a .pth state_dict (of Linear layers) or an .onnx file as a new version")
  .argument("<model>", "model name (a-z, 0-9, '.', '_', '-')")
  .argument("<file>", "a .pth or .onnx file")
  .option(
    "--activation <name>",
    `activation between Linear layers of a .pth (${ACTIVATIONS.join(", ")}; default relu)`,
    parseActivation,
  )
  .option("--golden <file>", "JSON cases (inputs and expected outputs) stored with the version")
  .addOption(
    new Option(
      "--quantize <scheme>",
      "also compile an int8 plan and serve it on the int8 runtime",
    ).choices(["int8"]),
  )
  .addOption(
    new Option(
      "--placement <where>",
      "edge (in the worker), origin (the GPU origin) or auto: the origin when the model exceeds the edge budget",
    )
      .choices(["auto", "edge", "origin"])
      .default("auto"),
  )
  .addOption(
    new Option("--edge-budget <bytes>", "largest model served at the edge with --placement auto")
      .env("PINION_EDGE_BUDGET_BYTES")
      .argParser(positiveBytes),
  )
  .addOption(
    new Option(
      "--max-inflated <bytes>",
      "most bytes a .pth's compressed zip entries may inflate to (default 268435456)",
    )
      .env("PINION_MAX_INFLATED_BYTES")
      .argParser(positiveBytes),
  )
  .option("--allow-non-finite", "publish weights that hold NaN or ±Infinity (refused otherwise)")
  .addOption(targetOption())
  .addOption(persistOption())
  .option("--json", "print the manifest as JSON")
  .action(async (model: string, file: string, options) => {
    const prepared = await prepareVersion(file, {
      activation: options.activation,
      golden: options.golden,
      quantize: options.quantize,
      placement: options.placement,
      ...(options.edgeBudget !== undefined ? { edgeBudgetBytes: options.edgeBudget } : {}),
      ...(options.maxInflated !== undefined ? { maxInflatedBytes: options.maxInflated } : {}),
      allowNonFinite: options.allowNonFinite === true,
    });
    if (prepared.int8NotCompiled) {
      console.error(
        `pinion: no int8 plan: ${prepared.int8NotCompiled}; this version runs on onnxruntime`,
      );
    }
    for (const { output, cause } of prepared.valueShaped) {
      // A warning, not a refusal: detectors, top-k and the like have such outputs legitimately.
      console.error(
        `pinion: warning: the shape of output '${output}' follows the input's values (${cause}): ` +
          "a small request can ask for an answer of any size; the server refuses answers over " +
          "MAX_RESPONSE_ELEMENTS / MAX_RESPONSE_BYTES (422)",
      );
    }
    const manifest = await withTarget(options, (target) =>
      target.publish(model, prepared, progressBar()),
    );
    if (options.json) return console.log(JSON.stringify(manifest, null, 2));
    const onnx = manifest.artifacts.onnx;
    if (prepared.origin.kind === "pth") {
      console.log(
        `converted ${file}: ${prepared.origin.layers.join(", ")} (${prepared.origin.activation} between layers)`,
      );
    }
    console.log(
      `published ${manifest.name}@${manifest.version} (${onnx.bytes} bytes, sha256 ${onnx.sha256.slice(0, 12)})`,
    );
    console.log(
      `  inputs:  ${manifest.inputs.map((s) => `${s.name} ${s.datatype} [${s.shape.join(", ")}]`).join("; ")}`,
    );
    console.log(
      `  outputs: ${manifest.outputs.map((s) => `${s.name} ${s.datatype} [${s.shape.join(", ")}]`).join("; ")}`,
    );
    if (manifest.artifacts.golden)
      console.log(`  golden:  ${manifest.artifacts.golden.bytes} bytes`);
    if (manifest.placement === "origin") {
      console.log("  placement: origin (the edge forwards its requests to the GPU origin)");
    }
    printQuantization(manifest);
  });

program
  .command("models")
  .description("list models")
  .addOption(targetOption())
  .addOption(persistOption())
  .option("--json", "print JSON")
  .action(async (options) => {
    const models = await withTarget(options, (target) => target.listModels());
    if (options.json) return console.log(JSON.stringify(models));
    if (models.length === 0) return console.log("no models");
    for (const name of models) console.log(name);
  });

program
  .command("versions")
  .description("list a model's versions")
  .argument("<model>", "model name")
  .addOption(targetOption())
  .addOption(persistOption())
  .option("--json", "print JSON")
  .action(async (model: string, options) => {
    const versions: VersionSummary[] = await withTarget(options, (target) =>
      target.describeVersions(model),
    );
    if (options.json) return console.log(JSON.stringify(versions, null, 2));
    if (versions.length === 0) throw notFound(`model '${model}' has no versions`);
    const rows = versions.map((v) => [
      String(v.version),
      String(v.bytes),
      v.sha256.slice(0, 12),
      v.runtime,
      v.placement,
      v.createdAt,
      v.source ?? "",
    ]);
    const header = ["VERSION", "BYTES", "SHA256", "RUNTIME", "PLACEMENT", "CREATED", "SOURCE"];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const row of [header, ...rows])
      console.log(
        row
          .map((cell, i) => cell.padEnd(widths[i]!))
          .join("  ")
          .trimEnd(),
      );
  });

// -- aliases and promotion ----------------------------------------------------------

const aliasOption = () =>
  new Option("--alias <alias>", "the alias to change").default(DEFAULT_ALIAS);
const actorOption = () =>
  new Option(
    "--actor <name>",
    "who the audit log records for local R2 (a worker records its token's name)",
  ).env("PINION_ACTOR");

const parsePercent = (flag: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${flag} takes a number (percent)`);
  return n;
};

const parseVersionArgument = (value: string) => {
  if (!VERSION_PATTERN.test(value)) {
    throw new InvalidArgumentError(`versions are integers from 1 to ${MAX_VERSION}`);
  }
  return Number(value);
};

function printGates(gates: readonly GateResult[]): void {
  for (const g of gates) {
    const verdict = g.skipped ? "skipped" : g.passed ? "passed" : "FAILED";
    console.log(`  gate ${g.gate}: ${verdict} — ${g.detail}`);
  }
}

function printOutcome(outcome: PromotionOutcome): void {
  const { change } = outcome;
  const what =
    change.action === "rollback" ? `rollback (undoing revision ${change.undoes})` : "promote";
  console.log(
    `${change.model} alias ${change.alias}: ${describeEntry(change.from)} → ${describeEntry(change.to)}  [${what}, at revision ${change.baseRevision}]`,
  );
  printGates(outcome.gates);
  switch (outcome.status) {
    case "applied":
      console.log(
        `applied: revision ${outcome.record!.revision} by ${outcome.record!.actor}${outcome.forced ? " (forced)" : ""}`,
      );
      break;
    case "noop":
      console.log("nothing to do: the alias is already in that state");
      break;
    case "dry-run":
      console.log("dry run: nothing written");
      break;
    case "gates-failed":
      console.log("refused: a gate failed; the alias is untouched (--force to override)");
  }
}

function finish(outcome: PromotionOutcome, json: boolean): void {
  if (json) console.log(JSON.stringify(outcome, null, 2));
  else printOutcome(outcome);
  if (outcome.status === "gates-failed") process.exitCode = EXIT.gatesFailed;
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) {
    console.log(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
  }
}

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
  .option("--json", "print the outcome as JSON")
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
    finish(outcome, options.json === true);
  });

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
  .option("--json", "print the outcome as JSON")
  .action(async (model: string, options) => {
    const outcome = await withTarget(options, (target) =>
      target.rollback(model, {
        alias: options.alias,
        ...(options.reason !== undefined ? { reason: options.reason } : {}),
        dryRun: options.dryRun === true,
      }),
    );
    finish(outcome, options.json === true);
  });

program
  .command("aliases")
  .description("show a model's aliases")
  .argument("<model>", "model name")
  .addOption(targetOption())
  .addOption(persistOption())
  .option("--json", "print JSON")
  .action(async (model: string, options) => {
    const document = await withTarget(options, (target) => target.aliases(model));
    if (options.json) return console.log(JSON.stringify(document, null, 2));
    const names = Object.keys(document.aliases).sort();
    if (names.length === 0) {
      return console.log(`${model} has no aliases; requests without a version get the latest`);
    }
    console.log(`${model} aliases at revision ${document.revision}:`);
    table(
      ["ALIAS", "SERVES"],
      names.map((name) => [name, describeEntry(document.aliases[name])]),
    );
  });

program
  .command("history")
  .description("print a model's alias audit log, oldest first")
  .argument("<model>", "model name")
  .option("--limit <n>", "only the newest n records", (v) => parseVersionArgument(v))
  .addOption(targetOption())
  .addOption(persistOption())
  .option("--json", "print JSON")
  .action(async (model: string, options) => {
    const records: AuditRecord[] = await withTarget(options, (target) =>
      target.history(model, options.limit),
    );
    if (options.json) return console.log(JSON.stringify(records, null, 2));
    if (records.length === 0) return console.log(`${model} has no alias changes yet`);
    table(
      ["REV", "WHEN", "WHO", "ACTION", "ALIAS", "FROM", "TO", "GATES", "REASON"],
      records.map((r) => [
        String(r.revision),
        r.at,
        r.actor,
        r.action + (r.undoes !== undefined ? ` #${r.undoes}` : ""),
        r.alias,
        describeEntry(r.from),
        describeEntry(r.to),
        (r.forced ? "FORCED " : "") +
          (r.gates
            .map((g) => `${g.gate}:${g.skipped ? "skip" : g.passed ? "ok" : "fail"}`)
            .join(",") || "-"),
        r.reason ?? "",
      ]),
    );
  });

program
  .command("shadow-report")
  .description("how shadow versions' answers differ from the versions serving the alias")
  .argument("<model>", "model name")
  .addOption(targetOption())
  .addOption(persistOption())
  .option("--json", "print JSON")
  .action(async (model: string, options) => {
    const reports = await withTarget(options, (target) => target.shadowReport(model));
    if (options.json) return console.log(JSON.stringify(reports, null, 2));
    if (reports.length === 0) return console.log(`${model} has no shadow samples yet`);
    table(
      [
        "ALIAS",
        "REV",
        "SHADOW",
        "VS",
        "SAMPLES",
        "ERRORS",
        "MAX|DIFF|",
        "MEAN|DIFF|",
        "TOP-1 DISAGREE",
      ],
      reports.map((r) => [
        r.alias,
        String(r.revision),
        String(r.candidate),
        r.primaries.join(","),
        String(r.samples),
        String(r.errors),
        r.maxAbsDiff.toExponential(2),
        r.meanAbsDiff.toExponential(2),
        r.top1Rows > 0 ? `${(r.top1Disagreement * 100).toFixed(2)}% of ${r.top1Rows}` : "-",
      ]),
    );
  });

try {
  await program.parseAsync();
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and --version exit 0; commander already printed any usage error.
    process.exitCode = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else {
    const verbose = program.opts().verbose || process.argv.includes("--verbose");
    const message = error instanceof Error ? error.message : String(error);
    console.error(`pinion: ${message}`);
    if (verbose && error instanceof Error && !(error instanceof PinionError && !error.stack)) {
      console.error(error.stack);
    }
    process.exitCode =
      error instanceof PinionError ? (EXIT_OF_KIND[error.kind] ?? EXIT.error) : EXIT.error;
  }
}
