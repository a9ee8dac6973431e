/**
 * @module
 * The onnxruntime-web runtime: runs any ONNX graph ORT supports. Where ORT comes
 * from is injected (`loadOrt`), so the same runtime runs inside workerd (through
 * the workaround in `ort-workerd.ts`) and in Node.
 */
import type * as OrtNamespace from "onnxruntime-web";
import { awaitShared } from "../../await-shared";
import { invalid, unavailable } from "../../errors";
import type { Tensor, TensorSpec } from "../../protocol/datatypes";
import type { Manifest } from "../../registry/manifest";
import type { ArtifactSource, LoadedModel, Runtime, RuntimeName } from "../runtime";
import { fromOrtType, specsFromMetadata, toOrtType } from "./tensor-types";

export type Ort = typeof OrtNamespace;

/**
 * ORT keeps its own copy of the weights in the WASM heap, plus the graph and
 * arena buffers; twice the model file is a measured, conservative estimate.
 */
const MEMORY_PER_MODEL_BYTE = 2;

export class OrtRuntime implements Runtime {
  readonly name = "ort";

  constructor(private readonly loadOrt: () => Promise<Ort>) {}

  async load(manifest: Manifest, artifacts: ArtifactSource): Promise<LoadedModel> {
    const bytes = await artifacts("onnx");
    const ort = await this.loadOrt();
    const label = `${manifest.name}@${manifest.version}`;
    let session: OrtNamespace.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
      });
    } catch (cause) {
      throw unavailable(`onnxruntime-web could not load ${label}: ${messageOf(cause)}`, cause);
    }
    await checkSignature(session, manifest);
    return new OrtModel(ort, session, manifest, bytes.byteLength * MEMORY_PER_MODEL_BYTE);
  }
}

/**
 * Refuses (and releases) a session whose graph does not take and produce the
 * tensors the manifest names, in its order.
 */
export async function checkSignature(
  session: OrtNamespace.InferenceSession,
  manifest: Manifest,
): Promise<void> {
  const inputs = specsFromMetadata(session.inputMetadata, "input");
  const outputs = specsFromMetadata(session.outputMetadata, "output");
  const names = (specs: readonly TensorSpec[]) => specs.map((s) => s.name).join(",");
  if (names(inputs) !== names(manifest.inputs) || names(outputs) !== names(manifest.outputs)) {
    await session.release();
    throw unavailable(
      `the manifest of ${manifest.name}@${manifest.version} does not match its ONNX graph's inputs/outputs`,
    );
  }
}

/**
 * A loaded ONNX session. Shared with the origin server, whose onnxruntime-node
 * sessions have the same API (both come from onnxruntime-common).
 */
export class OrtModel implements LoadedModel {
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** ORT's WASM backend and onnxruntime-node's binding run one call at a time: queue here. */
  private queue: Promise<void> = Promise.resolve();
  private busy = false;
  private released = false;

  constructor(
    private readonly ort: Pick<Ort, "Tensor">,
    private readonly session: OrtNamespace.InferenceSession,
    manifest: Manifest,
    readonly bytesHeld: number,
    readonly runtime: RuntimeName = "ort",
  ) {
    this.inputs = manifest.inputs;
    this.outputs = manifest.outputs;
  }

  async run(inputs: readonly Tensor[], outputNames: readonly string[]): Promise<Tensor[]> {
    // The call in progress may belong to another request: wait as workerd allows.
    while (this.busy) await awaitShared(this.queue);
    this.busy = true;
    let done!: () => void;
    this.queue = new Promise<void>((resolve) => (done = resolve));
    try {
      return await this.runNow(inputs, outputNames);
    } finally {
      this.busy = false;
      done();
    }
  }

  private async runNow(
    inputs: readonly Tensor[],
    outputNames: readonly string[],
  ): Promise<Tensor[]> {
    if (this.released) throw unavailable("this model was unloaded; retry the request");
    const feeds: Record<string, OrtNamespace.Tensor> = {};
    for (const tensor of inputs) {
      feeds[tensor.name] = new this.ort.Tensor(
        toOrtType(tensor.datatype),
        tensor.data,
        tensor.shape,
      );
    }
    let results: OrtNamespace.InferenceSession.ReturnType;
    try {
      results = await this.session.run(feeds, [...outputNames]);
    } catch (cause) {
      // Inputs already match the declared signature; what ORT still rejects is a
      // shape the graph cannot take (e.g. a dynamic dim it cannot broadcast).
      throw invalid(`the model rejected the input: ${messageOf(cause)}`);
    }
    try {
      return outputNames.map((name) => {
        const value = results[name]!;
        return {
          name,
          datatype: fromOrtType(value.type, `output '${name}'`),
          shape: [...value.dims],
          data: value.data as Tensor["data"],
        };
      });
    } finally {
      for (const value of Object.values(results)) value.dispose();
    }
  }

  async dispose(): Promise<void> {
    this.released = true;
    await awaitShared(this.queue);
    await this.session.release();
  }
}

export function messageOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}
