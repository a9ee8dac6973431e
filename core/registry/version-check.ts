/**
 * @module
 * What a version must pass before it is committed, shared by `pinion publish`
 * (on the files it is about to upload) and the admin API (on the uploaded
 * objects, before the manifest is written): the ONNX structure and the
 * declared signature matching the graph, the int8 plan's header and section
 * sizes against that signature, and the golden set against the model's shapes.
 * Pure functions on bytes: no Node built-ins, no I/O.
 */
import { invalid, PinionError } from "../errors";
import type { TensorSpec } from "../protocol/datatypes";
import { decodeGraphPlan, type GraphPlan } from "../runtimes/int8/graph-plan";
import { decodeTextPlan, type TextPlan } from "../runtimes/int8/text-plan";
import {
  decodePlanHeader,
  GRAPH_PLAN_VERSION,
  planFormatVersion,
  TEXT_PLAN_VERSION,
  type PlanMetadata,
} from "../runtimes/int8/plan";
import { checkGolden, parseStoredGolden } from "./golden";
import { checkBackground, parseStoredBackground } from "./background";
import { checkLabels, parseLabels } from "./labels";
import type { ArtifactRole } from "./manifest";
import { inspectOnnx, type OnnxSummary } from "./onnx-structure";

/** The parts of a version's fields its artifacts are checked against. */
export interface DeclaredSignature {
  inputs: readonly TensorSpec[];
  outputs: readonly TensorSpec[];
  runtime: string;
}

/** The bytes of the artifacts a check can see (an artifact too large to read is absent). */
export type ArtifactBytes = Partial<Record<ArtifactRole, Uint8Array>>;

const describe = (spec: TensorSpec) => `${spec.datatype} [${spec.shape.join(", ")}]`;

/**
 * What a check's failure on artifact `role` becomes: a refusal that names the
 * artifact. Anything but a domain error (a stack overflow on absurd nesting,
 * say) is the artifact's fault too, so it is refused rather than a 500.
 */
export function refusal(role: ArtifactRole, error: unknown): unknown {
  if (error instanceof PinionError && error.kind !== "invalid_argument") return error;
  const message = error instanceof Error ? error.message : String(error);
  return invalid(`${role} artifact: ${message.slice(0, 500)}`);
}

/** Runs `check`, turning what it refuses into a refusal that names the artifact. */
export function checking<T>(role: ArtifactRole, check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw refusal(role, error);
  }
}

/** The declared inputs or outputs must be the graph's, in its order, with its datatypes and shapes. */
function checkSpecs(
  kind: "input" | "output",
  declared: readonly TensorSpec[],
  graph: readonly TensorSpec[],
): void {
  if (declared.length !== graph.length) {
    throw invalid(
      `the version declares ${declared.length} ${kind}s; the graph has ${graph.length}`,
    );
  }
  graph.forEach((spec, i) => {
    const mine = declared[i]!;
    if (mine.name !== spec.name) {
      throw invalid(
        `${kind} ${i} is '${spec.name}' in the graph, not '${mine.name.slice(0, 256)}'`,
      );
    }
    const same =
      mine.datatype === spec.datatype &&
      mine.shape.length === spec.shape.length &&
      mine.shape.every((d, axis) => d === spec.shape[axis]);
    if (!same) {
      throw invalid(
        `${kind} '${spec.name}' is ${describe(spec)} in the graph, not ${describe(mine)}`,
      );
    }
  });
}

/** Checks an ONNX model's structure and that the version declares exactly its signature. */
export function checkOnnxArtifact(bytes: Uint8Array, declared: DeclaredSignature): OnnxSummary {
  return checking("onnx", () => {
    const summary = inspectOnnx(bytes);
    checkSpecs("input", declared.inputs, summary.inputs);
    checkSpecs("output", declared.outputs, summary.outputs);
    return summary;
  });
}

/** Elements per row (the product of the non-batch dims), or undefined when one is dynamic. */
function rowWidth(spec: TensorSpec): number | undefined {
  const dims = spec.shape.slice(1);
  return dims.some((d) => d < 0) ? undefined : dims.reduce((product, d) => product * d, 1);
}

/**
 * Checks an int8 plan's header, that its blobs lie inside the file with the
 * sizes their layers need (scales, bias), that its layers chain, and that it
 * takes and returns the version's single FP32 input and output. The packed
 * weights' size depends on the kernels' layout: loading the plan checks it.
 * `totalBytes` is the plan's size when only its head was read.
 */
export function checkInt8Plan(
  bytes: Uint8Array,
  declared: DeclaredSignature,
  totalBytes = bytes.byteLength,
): PlanMetadata | GraphPlan | TextPlan {
  return checking("int8", () => {
    const version = planFormatVersion(bytes);
    if (version === TEXT_PLAN_VERSION)
      return checkTextPlan(decodeTextPlan(bytes, totalBytes), declared);
    const graph = version === GRAPH_PLAN_VERSION;
    const plan = graph ? decodeGraphPlan(bytes, totalBytes) : decodePlanHeader(bytes, totalBytes);
    const [input, output] = [declared.inputs[0], declared.outputs[0]];
    if (declared.inputs.length !== 1 || declared.outputs.length !== 1 || !input || !output) {
      throw invalid("an int8 plan serves models with one input and one output");
    }
    if (input.datatype !== "FP32" || output.datatype !== "FP32") {
      throw invalid("an int8 plan takes and returns FP32 tensors");
    }
    if (plan.input.name !== input.name || plan.output.name !== output.name) {
      throw invalid(
        `the plan maps '${plan.input.name.slice(0, 256)}' to '${plan.output.name.slice(0, 256)}'; the version declares '${input.name}' to '${output.name}'`,
      );
    }
    if ("steps" in plan) {
      // A graph plan's buffers were checked against its steps; its ends must be the version's shapes.
      const same = (a: number[], b: number[]) =>
        a.length === b.length && a.every((d, i) => d === b[i]);
      if (!same(plan.input.shape, input.shape) || !same(plan.output.shape, output.shape)) {
        throw invalid(
          `the plan takes [${plan.input.shape.join(", ")}] to [${plan.output.shape.join(", ")}]; the version declares [${input.shape.join(", ")}] to [${output.shape.join(", ")}]`,
        );
      }
      return plan;
    }
    plan.layers.forEach((layer, i) => {
      const next = plan.layers[i + 1];
      if (next && next.k !== layer.n) {
        throw invalid(
          `layer ${i} returns ${layer.n} values per row but layer ${i + 1} takes ${next.k}`,
        );
      }
    });
    const [first, last] = [plan.layers[0]!, plan.layers.at(-1)!];
    const inWidth = rowWidth(input);
    if (inWidth !== undefined && inWidth !== first.k) {
      throw invalid(
        `layer ${first.name} takes ${first.k} values per row; '${input.name}' has ${inWidth}`,
      );
    }
    const outWidth = rowWidth(output);
    if (outWidth !== undefined && outWidth !== last.n) {
      throw invalid(
        `layer ${last.name} returns ${last.n} values per row; '${output.name}' has ${outWidth}`,
      );
    }
    return plan;
  });
}

/** A text plan's inputs and output must be the version's, name for name and shape for shape. */
function checkTextPlan(plan: TextPlan, declared: DeclaredSignature): TextPlan {
  const same = (a: readonly number[], b: readonly number[]) =>
    a.length === b.length && a.every((d, i) => d === b[i]);
  const output = declared.outputs[0];
  if (declared.outputs.length !== 1 || !output) {
    throw invalid("an int8 plan serves models with one output");
  }
  if (declared.inputs.length !== plan.inputs.length) {
    throw invalid(
      `the plan takes ${plan.inputs.length} inputs; the version declares ${declared.inputs.length}`,
    );
  }
  plan.inputs.forEach((input, i) => {
    const spec = declared.inputs[i]!;
    if (
      spec.name !== input.name ||
      spec.datatype !== input.datatype ||
      !same(spec.shape, input.shape)
    ) {
      throw invalid(
        `the plan's input ${i} is '${input.name.slice(0, 256)}' ${input.datatype} [${input.shape.join(", ")}]; the version declares '${spec.name}' ${spec.datatype} [${spec.shape.join(", ")}]`,
      );
    }
  });
  if (
    output.datatype !== "FP32" ||
    output.name !== plan.output.name ||
    !same(output.shape, plan.output.shape)
  ) {
    throw invalid(
      `the plan returns '${plan.output.name.slice(0, 256)}' FP32 [${plan.output.shape.join(", ")}]; the version declares '${output.name}' ${output.datatype} [${output.shape.join(", ")}]`,
    );
  }
  return plan;
}

/** Checks a stored golden set against the version's signature. */
export function checkGoldenArtifact(bytes: Uint8Array, declared: DeclaredSignature): void {
  checking("golden", () =>
    checkGolden(parseStoredGolden(bytes), [...declared.inputs], [...declared.outputs]),
  );
}

/** Checks a labels file: well formed, and as many labels as an output has classes. */
export function checkLabelsArtifact(bytes: Uint8Array, declared: DeclaredSignature): string[] {
  return checking("labels", () => {
    const labels = parseLabels(bytes);
    checkLabels(labels, declared.outputs);
    return labels;
  });
}

/** Checks a stored background set against the version's input. */
export function checkBackgroundArtifact(bytes: Uint8Array, declared: DeclaredSignature): void {
  checking("background", () => checkBackground(parseStoredBackground(bytes), declared.inputs));
}

/**
 * Every structural check a version's artifacts must pass, on the bytes given.
 * A version that declares the int8 runtime must carry a plan.
 */
export function checkVersionArtifacts(declared: DeclaredSignature, bytes: ArtifactBytes): void {
  if (declared.runtime === "int8" && !bytes.int8) {
    throw invalid("runtime int8 needs an int8 artifact");
  }
  if (bytes.onnx) checkOnnxArtifact(bytes.onnx, declared);
  if (bytes.int8) checkInt8Plan(bytes.int8, declared);
  if (bytes.golden) checkGoldenArtifact(bytes.golden, declared);
  if (bytes.labels) checkLabelsArtifact(bytes.labels, declared);
  if (bytes.background) checkBackgroundArtifact(bytes.background, declared);
}
