/**
 * @module
 * The `pinion` CLI: thin commands over the conversion, publishing and registry
 * libraries. Errors print as one line and exit non-zero; `--verbose` adds the
 * stack trace.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { SingleBar, Presets } from "cli-progress";
import { ACTIVATIONS, type Activation } from "../convert/linear-stack";
import { PinionError } from "../worker/errors";
import type { Manifest, VersionSummary } from "../worker/registry/manifest";
import { DEFAULT_PERSIST_TO } from "./lib/local-r2";
import { prepareVersion } from "./lib/prepare";
import { openTarget, type Target } from "./lib/targets";
import type { UploadProgress } from "./lib/upload";
import pkg from "../package.json";

const program = new Command("pinion")
  .description("Publish models to Pinion and manage their versions")
  .version(pkg.version)
  .option("--verbose", "print stack traces with errors")
  .showHelpAfterError();

const targetOption = () =>
  new Option("--target <local|url>", "where to publish: local R2 (wrangler dev) or a worker URL")
    .default("local")
    .env("PINION_TARGET");
const persistOption = () =>
  new Option("--persist-to <dir>", "local R2 state directory, as given to wrangler dev").default(
    DEFAULT_PERSIST_TO,
  );

async function withTarget<T>(
  options: { target: string; persistTo: string },
  work: (t: Target) => Promise<T>,
) {
  const target = await openTarget(options.target, {
    persistTo: options.persistTo,
    token: process.env.PINION_ADMIN_TOKEN,
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
  .addOption(targetOption())
  .addOption(persistOption())
  .option("--json", "print the manifest as JSON")
  .action(async (model: string, file: string, options) => {
    const prepared = await prepareVersion(file, {
      activation: options.activation,
      golden: options.golden,
      quantize: options.quantize,
    });
    if (prepared.int8NotCompiled) {
      console.error(
        `pinion: no int8 plan: ${prepared.int8NotCompiled}; this version runs on onnxruntime`,
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
    if (versions.length === 0)
      throw new PinionError("not_found", `model '${model}' has no versions`);
    const rows = versions.map((v) => [
      String(v.version),
      String(v.bytes),
      v.sha256.slice(0, 12),
      v.runtime,
      v.createdAt,
      v.source ?? "",
    ]);
    const header = ["VERSION", "BYTES", "SHA256", "RUNTIME", "CREATED", "SOURCE"];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const row of [header, ...rows])
      console.log(
        row
          .map((cell, i) => cell.padEnd(widths[i]!))
          .join("  ")
          .trimEnd(),
      );
  });

try {
  await program.parseAsync();
} catch (error) {
  const verbose = program.opts().verbose || process.argv.includes("--verbose");
  const message = error instanceof Error ? error.message : String(error);
  console.error(`pinion: ${message}`);
  if (verbose && error instanceof Error && !(error instanceof PinionError && !error.stack)) {
    console.error(error.stack);
  }
  process.exitCode = 1;
}
