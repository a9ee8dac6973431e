/**
 * @module
 * `pinion explain <model> <input.json>`: explains one prediction — which input
 * elements moved the output, by how much — and prints the top ones. Against
 * `--target local` it runs the edge's own data plane over local R2 (the int8
 * kernels and onnxruntime-web, as `wrangler dev` would); against a worker URL
 * it calls `POST /v2/models/{model}/explain`.
 */
import { type Command, InvalidArgumentError, Option } from "commander";
import { readFile } from "node:fs/promises";
import { invalid, PinionError } from "../../core/errors";
import type { InferenceRequest, InferenceResponse, ModelMetadata } from "../../core/protocol/types";
import { flatten, shapeOf } from "../../core/registry/golden";
import { ModelRegistry } from "../../core/registry/registry";
import { Int8Runtime } from "../../core/runtimes/int8/int8-runtime";
import { OrtRuntime } from "../../core/runtimes/ort/ort-runtime";
import { parseServingConfig } from "../../core/serving/config";
import { edgeDataPlane } from "../../core/serving/data-plane";
import { EXPLAIN_METHODS } from "../../core/serving/explainer";
import { Trace } from "../../core/serving/trace";
import { kindOfStatus } from "../../http/errors";
import { openLocalR2 } from "../../origin/stores/local-r2";
import { kernelsPath } from "../lib/kernels-node";
import { printExplanation } from "../print";
import { jsonOption, parseVersionArgument, persistOption, targetOption } from "./options";

/** Input files larger than this are refused before being read. */
const MAX_INPUT_FILE_BYTES = 16 * 1024 * 1024;

const nonNegativeInteger = (value: string): number => {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError("a non-negative integer");
  return n;
};

/** Where the explanation is computed: a local data plane, or a worker over HTTP. */
interface Explainer {
  metadata(): Promise<ModelMetadata>;
  explain(request: InferenceRequest): Promise<InferenceResponse>;
  close(): Promise<void>;
}

async function localExplainer(
  persistTo: string,
  name: string,
  version: number | undefined,
): Promise<Explainer> {
  const r2 = await openLocalR2(persistTo);
  const registry = new ModelRegistry(r2.store);
  const kernels = await WebAssembly.compile(new Uint8Array(await readFile(kernelsPath())));
  const plane = edgeDataPlane(
    registry,
    [new Int8Runtime(kernels), new OrtRuntime(async () => (await import("../lib/onnx-graph")).ort)],
    parseServingConfig({ ALIAS_TTL_MS: "0", VERSION_LIST_TTL_MS: "0", ...process.env }),
  );
  const reference = { name, ...(version !== undefined ? { version: String(version) } : {}) };
  return {
    metadata: () => plane.metadata(reference, new Trace()),
    explain: (request) => {
      const bytes = new TextEncoder().encode(JSON.stringify(request));
      return plane.explain(
        {
          reference: { ...reference, key: "cli" },
          body: { length: bytes.length, bytes: async () => bytes, stream: () => null },
          requestId: "cli",
        },
        new Trace(),
      );
    },
    close: () => r2.dispose(),
  };
}

function remoteExplainer(base: URL, name: string, version: number | undefined): Explainer {
  const path = new URL(
    `v2/models/${encodeURIComponent(name)}${version !== undefined ? `/versions/${version}` : ""}`,
    base.href.endsWith("/") ? base : new URL(`${base.href}/`),
  );
  const call = async <T>(url: URL, init?: RequestInit): Promise<T> => {
    const response = await fetch(url, init);
    const text = await response.text();
    if (!response.ok) {
      let message = text.slice(0, 500);
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? message;
      } catch {
        // not JSON: the text itself says what went wrong
      }
      throw new PinionError(kindOfStatus(response.status), `${url.host}: ${message}`);
    }
    return JSON.parse(text) as T;
  };
  return {
    metadata: () => call<ModelMetadata>(path),
    explain: (request) =>
      call<InferenceResponse>(new URL(`${path.href}/explain`), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(request),
      }),
    close: async () => undefined,
  };
}

/**
 * The request the input file makes: an OIP inference request as it is, or
 * one instance (nested or flat numbers) as the model's single input.
 */
function requestOf(file: unknown, metadata: ModelMetadata): InferenceRequest {
  if (file !== null && typeof file === "object" && !Array.isArray(file)) {
    return file as InferenceRequest;
  }
  if (!Array.isArray(file)) {
    throw invalid('the input file must hold an inference request ({"inputs": …}) or an array');
  }
  if (metadata.inputs.length !== 1) {
    throw invalid(
      `${metadata.name} takes ${metadata.inputs.length} inputs: give a full inference request`,
    );
  }
  const spec = metadata.inputs[0]!;
  const data = flatten(file);
  if (!data.every((v) => typeof v === "number")) throw invalid("the input array must hold numbers");
  const declared = spec.shape.slice(1);
  const fixed = declared.every((d) => d > 0) && declared.reduce((a, d) => a * d, 1) === data.length;
  // Declared row shape when the values fill it; the array's own nesting otherwise.
  const row = fixed ? declared : shapeOf(file)[0] === 1 ? shapeOf(file).slice(1) : shapeOf(file);
  return { inputs: [{ name: spec.name, datatype: spec.datatype, shape: [1, ...row], data }] };
}

export function registerExplain(program: Command): void {
  program
    .command("explain")
    .description("explain one prediction: the input elements that moved it most")
    .argument("<model>", "model name")
    .argument("<input>", "JSON file: one instance (array) or an inference request")
    .addOption(
      new Option("--method <method>", "how to attribute")
        .choices([...EXPLAIN_METHODS])
        .default("shap"),
    )
    .option("--version <n>", "explain this version (default: the latest)", parseVersionArgument)
    .option(
      "--samples <n>",
      "coalitions (shap) or path steps (integrated_gradients)",
      nonNegativeInteger,
    )
    .option("--index <i>", "output index to explain (default: the top one)", nonNegativeInteger)
    .option("--seed <n>", "seed of the coalition sampler (default 0)", nonNegativeInteger)
    .option(
      "--baseline <kind>",
      "background, golden, zeros, or a number (default: stored background, golden mean, zeros)",
    )
    .option("--window <size>", "occlusion window: n or RxC (default 2x2)")
    .option("--stride <size>", "occlusion stride: n or RxC (default 1)")
    .option("--top <n>", "features to print (default 10)", nonNegativeInteger, 10)
    .addOption(targetOption())
    .addOption(persistOption())
    .addOption(jsonOption("print the explain response as JSON"))
    .action(async (model: string, input: string, options) => {
      const text = await readFile(input).catch(() => {
        throw invalid(`cannot read input file ${input}`);
      });
      if (text.byteLength > MAX_INPUT_FILE_BYTES) {
        throw invalid(
          `input file ${input} is ${text.byteLength} bytes; at most ${MAX_INPUT_FILE_BYTES}`,
        );
      }
      let file: unknown;
      try {
        file = JSON.parse(new TextDecoder().decode(text));
      } catch (error) {
        throw invalid(`input file ${input} is not JSON: ${(error as Error).message.slice(0, 200)}`);
      }
      const explainer =
        options.target === "local"
          ? await localExplainer(options.persistTo, model, options.version)
          : remoteExplainer(new URL(options.target), model, options.version);
      try {
        const request = requestOf(file, await explainer.metadata());
        const baseline = options.baseline as string | undefined;
        request.parameters = {
          ...request.parameters,
          method: options.method,
          ...(options.samples !== undefined ? { samples: options.samples } : {}),
          ...(options.index !== undefined ? { target: options.index } : {}),
          ...(options.seed !== undefined ? { seed: options.seed } : {}),
          ...(baseline !== undefined
            ? {
                baseline:
                  Number.isFinite(Number(baseline)) && baseline.trim() !== ""
                    ? Number(baseline)
                    : baseline,
              }
            : {}),
          ...(options.window !== undefined ? { window: options.window } : {}),
          ...(options.stride !== undefined ? { stride: options.stride } : {}),
        };
        const response = await explainer.explain(request);
        printExplanation(response, request.inputs[0]!.shape, options.top, options.json === true);
      } finally {
        await explainer.close();
      }
    });
}
