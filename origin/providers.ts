/**
 * @module
 * Which onnxruntime execution providers the origin runs models on. The
 * configured list (`PINION_ORIGIN_PROVIDERS`, e.g. `cuda,cpu`) is tried once at
 * startup, each provider on a one-weight model: those that load and run are
 * kept, in the configured order, and CPU is added last when not configured, so
 * a node that CUDA cannot run (or a host without CUDA) still runs on the CPU.
 */
import ort from "onnxruntime-node";
import { linearStackToOnnx } from "../convert/linear-stack";
import { invalid, unavailable } from "../core/errors";
import { messageOf } from "../core/runtimes/ort/ort-runtime";

export interface ProviderChoice {
  /** As configured. */
  requested: string[];
  /** What sessions are created with, in order of preference; always includes `cpu`. */
  active: string[];
  /** Configured providers that did not work here, and why. */
  failed: { provider: string; reason: string }[];
}

/** y = x, as a [batch, 1] → [batch, 1] Gemm. */
function probeModel(): Uint8Array {
  return linearStackToOnnx([
    {
      name: "probe",
      inFeatures: 1,
      outFeatures: 1,
      weightKey: "probe.weight",
      weight: new Float32Array([1]),
    },
  ]);
}

async function probe(provider: string): Promise<void> {
  const session = await ort.InferenceSession.create(probeModel(), {
    executionProviders: [provider],
  });
  try {
    const out = await session.run({ input: new ort.Tensor("float32", [2], [1, 1]) });
    if (out.output?.data[0] !== 2) throw new Error("the probe model computed a wrong result");
  } finally {
    await session.release();
  }
}

export async function chooseProviders(requested: readonly string[]): Promise<ProviderChoice> {
  const known = ort.listSupportedBackends().map((b) => b.name);
  for (const provider of requested) {
    if (!known.includes(provider)) {
      throw invalid(
        `unknown execution provider '${provider}' in PINION_ORIGIN_PROVIDERS; this onnxruntime-node knows ${known.join(", ")}`,
      );
    }
  }
  const active: string[] = [];
  const failed: ProviderChoice["failed"] = [];
  const candidates = requested.includes("cpu") ? requested : [...requested, "cpu"];
  for (const provider of candidates) {
    try {
      await probe(provider);
      active.push(provider);
    } catch (error) {
      if (provider === "cpu") {
        throw unavailable(`onnxruntime-node cannot run a model on the CPU: ${messageOf(error)}`);
      }
      failed.push({ provider, reason: messageOf(error) });
    }
  }
  return { requested: [...requested], active, failed };
}
