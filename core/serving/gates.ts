/**
 * @module
 * Promotion gates, run through the same data plane that serves requests, on
 * the runtime the candidate will be served on:
 *
 *   golden     the candidate reproduces its golden set (stored at publish)
 *              within the stored tolerance — for an int8 version, within the
 *              error its accuracy report measured against fp32 on those cases
 *              at publish (the kernels are deterministic) plus that tolerance;
 *   agreement  for classifiers, the candidate's top-1 class agrees with the
 *              current target's on the golden inputs at least `minAgreement`
 *              of the time (only when a threshold is given).
 *
 * A gate that cannot run (no golden set, an artifact failing its sha256, a
 * model that does not load) fails with the reason; it never throws.
 */
import { invalid, PinionError } from "../errors";
import type { InferenceRequest } from "../protocol/types";
import { decodeGolden, flatten, shapeOf, type Golden } from "../registry/golden";
import type { Manifest } from "../registry/manifest";
import type { GateResult } from "../registry/promotion";
import type { DataPlane } from "./data-plane";

export interface GateOptions {
  /** Top-1 agreement with the current target required, 0–1; no agreement gate when undefined. */
  minAgreement?: number;
}

const label = (m: Manifest) => `${m.name}@${m.version}`;
const message = (error: unknown) =>
  error instanceof PinionError ? error.message : `unexpected error: ${String(error)}`;

/**
 * Runs every golden case as its own batch-1 request, as callers send them and
 * as the accuracy report measured at publish (int8 quantises activations per
 * row, so a batch would give the same answers).
 */
async function outputsFor(plane: DataPlane, manifest: Manifest, golden: Golden) {
  const spec = manifest.inputs.find((s) => s.name === golden.inputName);
  if (!spec) {
    throw invalid(`${label(manifest)} has no input '${golden.inputName}'`);
  }
  const values: number[] = [];
  let shape: number[] = [];
  let runtime = "";
  for (const input of golden.inputs) {
    const request: InferenceRequest = {
      inputs: [
        {
          name: golden.inputName,
          shape: [1, ...shapeOf(input)],
          datatype: spec.datatype,
          data: flatten(input),
        },
      ],
      outputs: [{ name: golden.outputName }],
    };
    const { response, runtime: ran } = await plane.answer(manifest, request);
    const output = response.outputs[0]!;
    for (const v of output.data as number[]) values.push(v);
    shape = [golden.inputs.length, ...output.shape.slice(1)];
    runtime = ran;
  }
  return { values, shape, runtime };
}

/** The top-1 class of each row of a [rows, classes] output. */
export function argmaxRows(values: readonly number[], rows: number): number[] {
  const width = values.length / rows;
  const result: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let i = 1; i < width; i++)
      if (values[r * width + i]! > values[r * width + best]!) best = i;
    result.push(best);
  }
  return result;
}

export async function runGates(
  plane: DataPlane,
  candidate: Manifest,
  current: Manifest | undefined,
  options: GateOptions = {},
): Promise<GateResult[]> {
  let golden: Golden;
  try {
    if (!candidate.artifacts.golden) {
      throw invalid(
        `${label(candidate)} has no golden set; publish it with --golden, or promote with --force`,
      );
    }
    golden = decodeGolden(await plane.readArtifact(candidate, "golden"));
  } catch (error) {
    const detail = message(error);
    return [
      { gate: "golden", passed: false, detail },
      ...(options.minAgreement === undefined
        ? []
        : [{ gate: "agreement", passed: false, detail: `needs the golden inputs: ${detail}` }]),
    ];
  }

  const results: GateResult[] = [];
  let candidateOutputs: Awaited<ReturnType<typeof outputsFor>> | undefined;
  try {
    candidateOutputs = await outputsFor(plane, candidate, golden);
    const expected = flatten(golden.expected);
    const got = candidateOutputs.values;
    let maxAbs = got.length === expected.length ? 0 : Infinity;
    for (let i = 0; i < got.length && maxAbs !== Infinity; i++) {
      const diff = Math.abs(got[i]! - expected[i]!);
      maxAbs = Number.isNaN(diff) ? Infinity : Math.max(maxAbs, diff);
    }
    // int8 is deterministic: it must stay within the error its report measured
    // against fp32 at publish, plus the golden tolerance fp32 itself is held to.
    const measuredAtPublish = candidate.quantization?.accuracy?.maxAbsError;
    const tolerance =
      candidateOutputs.runtime === "int8" && measuredAtPublish !== undefined
        ? measuredAtPublish + golden.tolerance
        : golden.tolerance;
    results.push({
      gate: "golden",
      passed: maxAbs <= tolerance,
      detail: `${golden.inputs.length} golden cases on ${candidateOutputs.runtime}: max abs error ${maxAbs.toPrecision(3)} (tolerance ${tolerance.toPrecision(3)})`,
      measured: maxAbs,
      threshold: tolerance,
    });
  } catch (error) {
    results.push({ gate: "golden", passed: false, detail: message(error) });
  }

  if (options.minAgreement !== undefined) {
    const threshold = options.minAgreement;
    if (!current) {
      results.push({
        gate: "agreement",
        passed: true,
        skipped: true,
        detail: "the alias has no current version to agree with",
      });
    } else if (!candidateOutputs) {
      results.push({ gate: "agreement", passed: false, detail: "the candidate did not run" });
    } else {
      try {
        const rows = golden.inputs.length;
        const shape = candidateOutputs.shape;
        if (shape.length !== 2 || shape[1]! < 2) {
          throw invalid(
            `--min-agreement needs a classifier output [batch, classes]; '${golden.outputName}' is [${shape.join(", ")}]`,
          );
        }
        const theirs = await outputsFor(plane, current, golden);
        const a = argmaxRows(candidateOutputs.values, rows);
        const b = argmaxRows(theirs.values, rows);
        const agreement = a.filter((cls, i) => cls === b[i]).length / rows;
        results.push({
          gate: "agreement",
          passed: agreement >= threshold,
          detail: `top-1 agreement with ${label(current)} (${theirs.runtime}) on ${rows} golden inputs: ${(agreement * 100).toFixed(2)}% (at least ${(threshold * 100).toFixed(2)}%)`,
          measured: agreement,
          threshold,
        });
      } catch (error) {
        results.push({ gate: "agreement", passed: false, detail: message(error) });
      }
    }
  }
  return results;
}

export const gatesPassed = (gates: readonly GateResult[]) => gates.every((g) => g.passed);
