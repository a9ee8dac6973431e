/**
 * @module
 * The origin's runtime: onnxruntime-node on the execution providers chosen at
 * startup. A version's ONNX artifact is streamed to a temporary file with its
 * sha256 checked on the way (see `artifact-file.ts`), the session is created
 * from that file, and the file is deleted; the loaded session is the same
 * `OrtModel` the edge uses, reporting itself as `origin`.
 */
import { rm } from "node:fs/promises";
import ort, { type InferenceSession } from "onnxruntime-node";
import { unavailable } from "../core/errors";
import type { Manifest } from "../core/registry/manifest";
import type { ModelRegistry } from "../core/registry/registry";
import { OrtModel, checkSignature, messageOf } from "../core/runtimes/ort/ort-runtime";
import type { LoadedModel, Runtime } from "../core/runtimes/runtime";
import { downloadArtifact, withoutPath } from "./artifact-file";

/**
 * Memory a loaded session keeps per byte of its ONNX file: the weights, plus
 * graph and arena buffers. A conservative estimate for the CPU provider; on a
 * GPU most of it is device memory, which the same budget then stands for.
 */
export const MEMORY_PER_MODEL_BYTE = 2;

export interface OrtNodeRuntimeOptions {
  registry: ModelRegistry;
  /** Execution providers, in order of preference (see `providers.ts`). */
  providers: readonly string[];
  /** Where artifacts are streamed to before onnxruntime loads them. */
  tmpDir: string;
  /** The model cache budget: a version that could never fit is refused before download. */
  budgetBytes: number;
  /** Called after every load attempt, with its duration and the model or the error. */
  onLoad?: (event: LoadEvent) => void;
}

export interface LoadEvent {
  manifest: Manifest;
  seconds: number;
  model?: LoadedModel;
  error?: unknown;
}

export class OrtNodeRuntime implements Runtime {
  readonly name = "origin";

  constructor(private readonly options: OrtNodeRuntimeOptions) {}

  /** The data plane's artifact source would hold the bytes in memory; this runtime streams instead. */
  async load(manifest: Manifest): Promise<LoadedModel> {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const model = await this.loadFromFile(manifest);
      this.options.onLoad?.({ manifest, seconds: seconds(), model });
      return model;
    } catch (error) {
      this.options.onLoad?.({ manifest, seconds: seconds(), error });
      throw error;
    }
  }

  private async loadFromFile(manifest: Manifest): Promise<OrtModel> {
    const { registry, tmpDir, budgetBytes, providers } = this.options;
    const file = await downloadArtifact(
      registry,
      manifest,
      "onnx",
      tmpDir,
      Math.floor(budgetBytes / MEMORY_PER_MODEL_BYTE),
    );
    let session: InferenceSession;
    try {
      session = await ort.InferenceSession.create(file.path, {
        executionProviders: [...providers],
        graphOptimizationLevel: "all",
      });
    } catch (cause) {
      throw unavailable(
        `onnxruntime-node could not load ${manifest.name}@${manifest.version}: ${withoutPath(messageOf(cause), file.path)}`,
        cause,
      );
    } finally {
      // The session holds what it needs; the file is not read again.
      await rm(file.path, { force: true });
    }
    await checkSignature(session, manifest);
    return new OrtModel(ort, session, manifest, file.bytes * MEMORY_PER_MODEL_BYTE, "origin");
  }
}
