/**
 * The same kernels `.wasm` that Node compiles from bytes, imported as a
 * module inside workerd (the only way workerd allows), giving the same answers.
 */
import { describe, expect, it } from "vitest";
import kernelsWasm from "../../../build/kernels.wasm";
import { Int8Kernels } from "../../../core/runtimes/int8/kernels";
import { fixtureJson } from "../../worker/helpers";

interface JsonTensor {
  dims: number[];
  data: number[];
}
const tensor = (c: string, file: string) =>
  fixtureJson<JsonTensor>(`onnx-conformance/${c}/test_data_set_0/${file}.json`);

describe("int8 kernels inside workerd", () => {
  it("instantiates from the imported module and passes MatMulInteger conformance", async () => {
    const kernels = await Int8Kernels.instantiate(kernelsWasm);
    const c = "test_matmulinteger";
    const [a, b, azp, bzp, y] = await Promise.all(
      ["input_0", "input_1", "input_2", "input_3", "output_0"].map((f) => tensor(c, f)),
    );
    const got = kernels.matMulInteger(
      Uint8Array.from(a!.data),
      Uint8Array.from(b!.data),
      a!.dims[0]!,
      a!.dims[1]!,
      b!.dims[1]!,
      azp!.data[0],
      bzp!.data[0],
    );
    expect(Array.from(got)).toEqual(y!.data);
  });

  it("passes DynamicQuantizeLinear conformance", async () => {
    const kernels = await Int8Kernels.instantiate(kernelsWasm);
    for (const c of [
      "test_dynamicquantizelinear",
      "test_dynamicquantizelinear_max_adjusted",
      "test_dynamicquantizelinear_min_adjusted",
    ]) {
      const [x, y, scale, zp] = await Promise.all(
        ["input_0", "output_0", "output_1", "output_2"].map((f) => tensor(c, f)),
      );
      const got = kernels.dynamicQuantizeLinear(Float32Array.from(x!.data));
      expect(Array.from(got.y), c).toEqual(y!.data);
      expect(got.scale, c).toBe(scale!.data[0]);
      expect(got.zeroPoint, c).toBe(zp!.data[0]);
    }
  });
});
