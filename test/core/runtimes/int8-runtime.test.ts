import { describe, expect, it } from "vitest";
import kernelsWasm from "../../../build/kernels.wasm";
import type { Tensor } from "../../../core/protocol/datatypes";
import { Int8Runtime } from "../../../core/runtimes/int8/int8-runtime";
import { fixtureJson, publishFixture, registry } from "../../worker/helpers";
import { runtimeCases } from "./runtime.case";

// Activations are quantised per row, so the batch of 100 gets the same answers
// as 100 single requests (checked at ≥ 0.999 in the HTTP tests too).
runtimeCases("int8", () => new Int8Runtime(kernelsWasm), {
  int8: true,
  seed: { minCosine: 0.999 },
});

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

describe("int8: batch-independent answers", () => {
  it.each([
    ["simple", "seed-simple/simple_model.onnx", "seed-simple/cases.json", "input", "output"],
    ["digits", "digits-mlp/digits_mlp.onnx", "digits-mlp/testset.json", "input", "logits"],
  ])(
    "%s: each row alone and inside a batch of 100 gives the same bits",
    async (name, model, cases, inputName, outputName) => {
      const manifest = await publishFixture(`rt-int8-rows-${name}`, model, undefined, {
        int8: true,
      });
      const loaded = await new Int8Runtime(kernelsWasm).load(manifest, (role) =>
        registry().readArtifact(manifest, role, 64 << 20),
      );
      const rows = (await fixtureJson<{ inputs: number[][] }>(cases)).inputs.slice(0, 100);
      expect(rows).toHaveLength(100);
      const tensor = (batch: number[][]): Tensor => ({
        name: inputName,
        datatype: "FP32",
        shape: [batch.length, batch[0]!.length],
        data: Float32Array.from(batch.flat()),
      });
      const [all] = await loaded.run([tensor(rows)], [outputName]);
      const batch = all!.data as Float32Array;
      const width = batch.length / rows.length;
      for (const [i, row] of rows.entries()) {
        const [alone] = await loaded.run([tensor([row])], [outputName]);
        expect(bits(batch.subarray(i * width, (i + 1) * width)), `row ${i}`).toEqual(
          bits(alone!.data as Float32Array),
        );
      }
      await loaded.dispose();
    },
  );
});
