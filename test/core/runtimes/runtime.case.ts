/**
 * @module
 * The suite every Runtime passes. Each implementation's test file calls
 * `runtimeCases` with a way to build the runtime; the cases only use the
 * `Runtime` interface, on real models published to the emulated R2.
 */
import { describe, expect, it } from "vitest";
import { PinionError } from "../../../core/errors";
import type { Tensor } from "../../../core/protocol/datatypes";
import type { ArtifactRole, Manifest } from "../../../core/registry/manifest";
import type { LoadedModel, Runtime } from "../../../core/runtimes/runtime";
import { argmax, fixtureJson, publishFixture, registry } from "../../worker/helpers";

interface SeedCases {
  inputs: number[][];
  expected: number[][];
}
interface TestSet {
  inputs: number[][];
  labels: number[];
  logits: number[][];
}

const artifactsOf = (manifest: Manifest) => (role: ArtifactRole) =>
  registry().readArtifact(manifest, role, 64 << 20);

function batch(name: string, rows: number[][]): Tensor {
  return {
    name,
    datatype: "FP32",
    shape: [rows.length, rows[0]!.length],
    data: Float32Array.from(rows.flat()),
  };
}

export interface RuntimeCaseOptions {
  /** Publish the fixtures with int8 plans. */
  int8?: boolean;
  /**
   * How close the seed model's batch of 100 must come to PyTorch: exact runtimes
   * within 1e-5 absolute; quantised ones by cosine similarity per case.
   */
  seed: { maxAbsError: number } | { minCosine: number };
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    aa += a[i]! ** 2;
    bb += b[i]! ** 2;
  }
  return dot / Math.sqrt(aa * bb);
}

export function runtimeCases(
  label: string,
  makeRuntime: () => Runtime,
  options: RuntimeCaseOptions,
): void {
  describe(`${label}: shared Runtime cases`, () => {
    const prefix = `rt-${label}`;
    async function load(name: string, fixture: string): Promise<LoadedModel> {
      const manifest = await publishFixture(`${prefix}-${name}`, fixture, undefined, {
        int8: options.int8,
      });
      return makeRuntime().load(manifest, artifactsOf(manifest));
    }

    it("describes the model's inputs and outputs and the memory it holds", async () => {
      const model = await load("describe", "seed-simple/simple_model.onnx");
      expect(model.inputs).toEqual([{ name: "input", datatype: "FP32", shape: [-1, 10] }]);
      expect(model.outputs).toEqual([{ name: "output", datatype: "FP32", shape: [-1, 10] }]);
      expect(model.bytesHeld).toBeGreaterThanOrEqual(2218);
      await model.dispose();
    });

    it("runs the seed model's 100 PyTorch cases in one batch", async () => {
      const cases = await fixtureJson<SeedCases>("seed-simple/cases.json");
      const model = await load("seed", "seed-simple/simple_model.onnx");
      const [out] = await model.run([batch("input", cases.inputs)], ["output"]);
      expect(out!.shape).toEqual([100, 10]);
      expect(out!.datatype).toBe("FP32");
      const data = out!.data as Float32Array;
      if ("maxAbsError" in options.seed) {
        const expected = cases.expected.flat();
        let worst = 0;
        data.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - expected[i]!))));
        expect(worst).toBeLessThan(options.seed.maxAbsError);
      } else {
        const worst = Math.min(
          ...cases.expected.map((row, i) => cosine(row, data.subarray(i * 10, i * 10 + 10))),
        );
        expect(worst).toBeGreaterThanOrEqual(options.seed.minCosine);
      }
      await model.dispose();
    });

    it("classifies the digits test set as PyTorch does (350/360)", async () => {
      const set = await fixtureJson<TestSet>("digits-mlp/testset.json");
      const model = await load("digits", "digits-mlp/digits_mlp.onnx");
      const [out] = await model.run([batch("input", set.inputs)], ["logits"]);
      const logits = out!.data as Float32Array;
      let correct = 0;
      set.labels.forEach((label, i) => {
        if (argmax(logits.subarray(i * 10, i * 10 + 10)) === label) correct++;
      });
      expect(correct).toBe(350);
      await model.dispose();
    });

    it("gives concurrent runs the same answers as sequential ones", async () => {
      const cases = await fixtureJson<SeedCases>("seed-simple/cases.json");
      const model = await load("concurrent", "seed-simple/simple_model.onnx");
      const rows = cases.inputs.slice(0, 20);
      const sequential: number[][] = [];
      for (const row of rows) {
        const [out] = await model.run([batch("input", [row])], ["output"]);
        sequential.push(Array.from(out!.data as Float32Array));
      }
      const concurrent = await Promise.all(
        rows.map((row) => model.run([batch("input", [row])], ["output"])),
      );
      expect(concurrent.map(([out]) => Array.from(out!.data as Float32Array))).toEqual(sequential);
      await model.dispose();
    });

    it("refuses a truncated model as unavailable", async () => {
      const manifest = await publishFixture(
        `${prefix}-truncated`,
        "seed-simple/simple_model.onnx",
        undefined,
        {
          int8: options.int8,
        },
      );
      const whole = await artifactsOf(manifest)(options.int8 ? "int8" : "onnx");
      const error = await makeRuntime()
        .load(manifest, async () => whole.slice(0, whole.length >> 1))
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(error).toBeInstanceOf(PinionError);
      expect((error as PinionError).kind).toBe("unavailable");
    });
  });
}
