/**
 * @module
 * The admin API's check of a version before its manifest is written, so a
 * version that cannot be served is never committed (and so never becomes a
 * model's default). On the uploaded objects, read back with their size bounded
 * before any byte is fetched and their sha256 verified:
 *
 * - the structural checks `pinion publish` runs (`registry/version-check.ts`);
 * - for an edge-placed version, a load in each runtime of this isolate that
 *   could serve it: onnxruntime-web for the ONNX model, the int8 plan loader
 *   (kernels included) for the plan. The artifact it is served from must fit
 *   the isolate's model budget (`MODEL_CACHE_BYTES`), as serving requires.
 *
 * An origin-placed version is too large to load here: its ONNX model's
 * structure is checked when it fits that budget, and streamed through the
 * structure check otherwise (initializer data skipped, see `onnx-skeleton.ts`);
 * onnxruntime-node loads it on the origin's first request.
 *
 * The checks (and onnx-proto under them) are imported on first use, so an
 * isolate that never commits never evaluates them.
 */
import { invalid, PinionError } from "../errors";
import { MAX_BACKGROUND_BYTES } from "../registry/background";
import { MAX_LABELS_BYTES } from "../registry/labels";
import { streamOnnxSkeleton } from "../registry/onnx-skeleton";
import type { ArtifactRole, Manifest } from "../registry/manifest";
import { placementOf } from "../registry/manifest";
import type { ModelRegistry } from "../registry/registry";
import { PLAN_HEADER_BYTES } from "../runtimes/int8/plan";
import type { Runtime, RuntimeName } from "../runtimes/runtime";

/** The most an int8 plan's metadata may take; real plans need a few hundred bytes per layer. */
const MAX_PLAN_METADATA_BYTES = 1024 * 1024;

const RUNTIME_LABEL: Record<string, string> = {
  ort: "onnxruntime-web",
  int8: "the int8 runtime",
};

/** Artifacts with a size bound of their own, below the model budget. */
const SMALL_ARTIFACT_BYTES: Partial<Record<ArtifactRole, number>> = {
  labels: MAX_LABELS_BYTES,
  background: MAX_BACKGROUND_BYTES,
};

const checks = () => import("../registry/version-check");

export class VersionChecker {
  /**
   * `runtimes` are the isolate's serving runtimes (loads are tried in them);
   * `maxBytes` is the most of one artifact it reads: what serving may load
   * (`MODEL_CACHE_BYTES`).
   */
  constructor(
    private readonly registry: ModelRegistry,
    private readonly runtimes: readonly Runtime[],
    readonly maxBytes: number,
  ) {}

  /** Refuses (invalid_argument) a candidate manifest whose artifacts would not serve. */
  async check(manifest: Manifest): Promise<void> {
    const {
      checkBackgroundArtifact,
      checkGoldenArtifact,
      checkInt8Plan,
      checkLabelsArtifact,
      checkOnnxArtifact,
    } = await checks();
    if (manifest.runtime === "int8" && !manifest.artifacts.int8) {
      throw invalid("runtime int8 needs an int8 artifact");
    }
    const edge = placementOf(manifest) === "edge";
    const served: ArtifactRole = manifest.runtime === "int8" ? "int8" : "onnx";
    const bytes: Partial<Record<ArtifactRole, Uint8Array>> = {};
    for (const role of ["onnx", "int8", "golden", "labels", "background"] as const) {
      const artifact = manifest.artifacts[role];
      if (!artifact) continue;
      const small = SMALL_ARTIFACT_BYTES[role];
      const limit = small === undefined ? this.maxBytes : Math.min(this.maxBytes, small);
      if (artifact.bytes <= limit) {
        bytes[role] = await this.registry.readArtifact(manifest, role, limit);
      } else if (role === "labels" || role === "background") {
        throw invalid(
          `${role} artifact is ${artifact.bytes} bytes; a ${role === "labels" ? "labels file" : "background set"} may have at most ${limit}`,
        );
      } else if (role === "golden" || (edge && role === served)) {
        throw invalid(
          `${role} artifact is ${artifact.bytes} bytes; an ${role === "golden" ? "" : "edge-placed version's "}${role} artifact may have at most ${this.maxBytes} (MODEL_CACHE_BYTES)${role === served ? "; publish it with --placement origin" : ""}`,
        );
      }
    }
    const declared = manifest;
    if (bytes.onnx) checkOnnxArtifact(bytes.onnx, declared);
    else await this.streamOnnx(manifest);
    if (bytes.int8) checkInt8Plan(bytes.int8, declared);
    else if (manifest.artifacts.int8) await this.planHead(manifest);
    if (bytes.golden) checkGoldenArtifact(bytes.golden, declared);
    if (bytes.labels) checkLabelsArtifact(bytes.labels, declared);
    if (bytes.background) checkBackgroundArtifact(bytes.background, declared);
    if (edge) await this.loads(manifest, bytes);
  }

  /** Loads the version in each runtime here that has its artifact, then lets it go. */
  private async loads(
    manifest: Manifest,
    bytes: Partial<Record<ArtifactRole, Uint8Array>>,
  ): Promise<void> {
    const attempts: [RuntimeName, ArtifactRole][] = [
      ["int8", "int8"],
      ["ort", "onnx"],
    ];
    for (const [name, role] of attempts) {
      const runtime: Runtime | undefined = this.runtimes.find((r) => r.name === name);
      if (!runtime || !bytes[role]) continue;
      let model;
      try {
        model = await runtime.load(manifest, async (wanted) => {
          const artifact = bytes[wanted];
          if (!artifact) throw invalid(`${wanted} artifact was not read`);
          return artifact;
        });
      } catch (error) {
        // The runtimes say what is wrong with a model as domain errors; anything
        // else (the runtime itself failing to start) is not the version's fault.
        if (!(error instanceof PinionError)) throw error;
        throw invalid(
          `${role} artifact does not load in ${RUNTIME_LABEL[name]}: ${error.message.slice(0, 500)}`,
        );
      }
      await model.dispose();
    }
  }

  /** The structure of an ONNX model too large to hold, streamed past its weights. */
  private async streamOnnx(manifest: Manifest): Promise<void> {
    const { checkOnnxArtifact, refusal } = await checks();
    const { object } = await this.registry.openArtifact(manifest, "onnx", Number.MAX_SAFE_INTEGER);
    let skeleton: Uint8Array;
    try {
      skeleton = await streamOnnxSkeleton(object.body, object.size, this.maxBytes);
    } catch (error) {
      // Refusals get the artifact's name, as the in-memory check's do.
      throw refusal("onnx", error);
    }
    checkOnnxArtifact(skeleton, manifest);
  }

  /** The header of an int8 plan too large to hold (an origin-placed version's). */
  private async planHead(manifest: Manifest): Promise<void> {
    const { checkInt8Plan } = await checks();
    const { artifact, object } = await this.registry.openArtifact(
      manifest,
      "int8",
      Number.MAX_SAFE_INTEGER,
    );
    const reader = object.body.getReader();
    const head = new Uint8Array(PLAN_HEADER_BYTES + MAX_PLAN_METADATA_BYTES);
    let have = 0;
    let need = PLAN_HEADER_BYTES;
    try {
      while (have < need) {
        const { value, done } = await reader.read();
        if (done) break;
        const take = Math.min(value.byteLength, head.byteLength - have);
        head.set(value.subarray(0, take), have);
        have += take;
        if (need === PLAN_HEADER_BYTES && have >= need) {
          // The metadata's length, capped: a plan claiming more is refused as truncated.
          const length = new DataView(head.buffer).getUint32(12, true);
          need += Math.min(length, MAX_PLAN_METADATA_BYTES);
        }
      }
    } finally {
      await reader.cancel().catch(() => undefined);
    }
    checkInt8Plan(head.subarray(0, have), manifest, artifact.bytes);
  }
}
