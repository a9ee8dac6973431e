/**
 * @module
 * The suite every Runtime passes. Each implementation's test file calls
 * `runtimeCases` with a way to build the runtime; the cases only use the
 * `Runtime` interface, on real models published to the emulated R2.
 */
import { describe, expect, it } from "vitest";
import { PinionError } from "../../../worker/errors";
import type { Tensor } from "../../../worker/protocol/datatypes";
import type { ArtifactRole, Manifest } from "../../../worker/registry/manifest";
import type { LoadedModel, Runtime } from "../../../worker/runtimes/runtime";
import { argmax, fixtureJson, publishFixture, registry } from "../helpers";

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

export function runtimeCases(label: string, makeRuntime: () => Runtime): void {
  describe(`${label}: shared Runtime cases`, () => {
    const prefix = `rt-${label}`;
    async function load(name: string, fixture: string): Promise<LoadedModel> {
      const manifest = await publishFixture(`${prefix}-${name}`, fixture);
      return makeRuntime().load(manifest, artifactsOf(manifest));
    }

    it("describes the model's inputs and outputs and the memory it holds", async () => {
      const model = await load("describe", "seed-simple/simple_model.onnx");
      expect(model.inputs).toEqual([{ name: "input", datatype: "FP32", shape: [-1, 10] }]);
      expect(model.outputs).toEqual([{ name: "output", datatype: "FP32", shape: [-1, 10] }]);
      expect(model.bytesHeld).toBeGreaterThanOrEqual(2218);
      await model.dispose();
    });

    it("runs the seed model's 100 PyTorch cases in one batch within 1e-5", async () => {
      const cases = await fixtureJson<SeedCases>("seed-simple/cases.json");
      const model = await load("seed", "seed-simple/simple_model.onnx");
      const [out] = await model.run([batch("input", cases.inputs)], ["output"]);
      expect(out!.shape).toEqual([100, 10]);
      expect(out!.datatype).toBe("FP32");
      const expected = cases.expected.flat();
      let worst = 0;
      out!.data.forEach((v, i) => (worst = Math.max(worst, Math.abs(Number(v) - expected[i]!))));
      expect(worst).toBeLessThan(1e-5);
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
      const manifest = await publishFixture(`${prefix}-truncated`, "seed-simple/simple_model.onnx");
      const whole = await artifactsOf(manifest)("onnx");
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
