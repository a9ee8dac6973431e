import { describe, expect, it } from "vitest";
import { loadOrt } from "../../worker/ort-workerd";
import { fixtureBytes } from "./helpers";

describe("onnxruntime-web in workerd", () => {
  it("initialises once for concurrent callers and restores WebAssembly.instantiate", async () => {
    const original = WebAssembly.instantiate;
    const [a, b] = await Promise.all([loadOrt(), loadOrt()]);
    expect(a).toBe(b);
    expect(await loadOrt()).toBe(a);
    expect(WebAssembly.instantiate).toBe(original);
  });

  it("cannot compile WebAssembly from bytes here, which is why the workaround exists", async () => {
    const emptyModule = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    await expect(WebAssembly.instantiate(emptyModule)).rejects.toThrow(/disallowed/i);
  });

  it("creates a session from bytes and runs it single-threaded", async () => {
    const ort = await loadOrt();
    expect(ort.env.wasm.numThreads).toBe(1);
    const session = await ort.InferenceSession.create(
      await fixtureBytes("seed-simple/simple_model.onnx"),
    );
    const cases = JSON.parse(
      new TextDecoder().decode(await fixtureBytes("seed-simple/cases.json")),
    ) as { inputs: number[][]; expected: number[][] };
    const feeds = {
      input: new ort.Tensor("float32", Float32Array.from(cases.inputs[0]!), [1, 10]),
    };
    const { output } = await session.run(feeds);
    const got = Array.from(output!.data as Float32Array);
    got.forEach((v, i) => expect(v).toBeCloseTo(cases.expected[0]![i]!, 5));
    await session.release();
  });
});
