/**
 * The commit-time check on artifacts larger than the isolate may hold: an
 * origin-placed ONNX model is streamed through the structure check past its
 * weights, an origin-placed int8 plan is checked by its header, and an
 * edge-placed version whose served artifact is over the budget is refused.
 * Real R2 emulation, real onnxruntime-web and int8 kernels, a small budget.
 */
import { describe, expect, it } from "vitest";
import kernelsWasm from "../../../build/kernels.wasm";
import { compileInt8 } from "../../../convert/int8-compiler";
import { buildModel, ElemType } from "../../../convert/onnx";
import { PinionError } from "../../../core/errors";
import type { Manifest } from "../../../core/registry/manifest";
import { streamOnnxSkeleton } from "../../../core/registry/onnx-skeleton";
import { inspectOnnx } from "../../../core/registry/onnx-structure";
import { Int8Kernels } from "../../../core/runtimes/int8/kernels";
import { Int8Runtime } from "../../../core/runtimes/int8/int8-runtime";
import { OrtRuntime } from "../../../core/runtimes/ort/ort-runtime";
import { loadOrt } from "../../../worker/ort-workerd";
import { VersionChecker } from "../../../core/serving/version-checker";
import { fixtureBytes, registry } from "../../worker/helpers";

/** A checker whose isolate may read `budget` bytes of one artifact. */
function checker(budget: number): VersionChecker {
  const runtimes = [new Int8Runtime(kernelsWasm), new OrtRuntime(loadOrt)];
  return new VersionChecker(registry(), runtimes, budget);
}

/** A candidate manifest over stored artifacts, signature from the ONNX graph. */
async function candidate(
  name: string,
  onnx: Uint8Array,
  options: { placement: "edge" | "origin"; int8?: Uint8Array; signatureOf?: Uint8Array },
): Promise<Manifest> {
  const { inputs, outputs } = inspectOnnx(options.signatureOf ?? onnx);
  const store = registry();
  return {
    schema: 1,
    name,
    version: 1,
    createdAt: new Date().toISOString(),
    platform: "onnx_onnxv1",
    inputs,
    outputs,
    runtime: options.int8 ? "int8" : "ort",
    placement: options.placement,
    artifacts: {
      onnx: await store.storeArtifact(name, onnx, "application/x-onnx"),
      ...(options.int8
        ? { int8: await store.storeArtifact(name, options.int8, "application/x-pinion-int8-plan") }
        : {}),
    },
  };
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PinionError);
  expect((error as PinionError).kind).toBe("invalid_argument");
  return (error as PinionError).message;
}

function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

/** A graph whose one node reads a tensor nothing defines, made large by one initializer. */
function brokenLargeGraph(op = "Add", reads = ["input", "ghost"]): Uint8Array {
  return buildModel(
    [{ op, inputs: reads, outputs: ["output"] }],
    [{ name: "input", type: ElemType.FLOAT, dims: ["batch", 4] }],
    [{ name: "output", type: ElemType.FLOAT, dims: ["batch", 4] }],
    13,
    [{ name: "unused", type: ElemType.FLOAT, dims: [4096], data: new Float32Array(4096) }],
  );
}

describe("the ONNX skeleton", () => {
  it("keeps the structure and drops the weights, in any chunking", async () => {
    const onnx = await fixtureBytes("digits-cnn/digits_cnn.onnx");
    const full = inspectOnnx(onnx);
    for (const size of [1, 7, 4096]) {
      const skeleton = await streamOnnxSkeleton(chunked(onnx, size), onnx.byteLength, 1 << 20);
      expect(skeleton.byteLength).toBeLessThan(onnx.byteLength / 4);
      const summary = inspectOnnx(skeleton);
      expect(summary.inputs).toEqual(full.inputs);
      expect(summary.outputs).toEqual(full.outputs);
      expect(summary.operators).toEqual(full.operators);
      expect(summary.opsets).toEqual(full.opsets);
      expect([...summary.initializers.keys()]).toEqual([...full.initializers.keys()]);
      for (const [name, init] of summary.initializers) {
        expect(init.dims).toEqual(full.initializers.get(name)!.dims);
        expect(init.raw.byteLength).toBe(0);
      }
    }
  });

  it("refuses truncated bytes and a structure over its budget", async () => {
    const onnx = await fixtureBytes("digits-cnn/digits_cnn.onnx");
    await expect(
      streamOnnxSkeleton(chunked(onnx.subarray(0, 5000), 100), onnx.byteLength, 1 << 20),
    ).rejects.toThrow(/not a valid ONNX model/);
    await expect(streamOnnxSkeleton(chunked(onnx, 100), onnx.byteLength, 200)).rejects.toThrow(
      /structure .* is over 200 bytes/,
    );
  });
});

describe("VersionChecker on artifacts over the isolate's budget", () => {
  it("streams an origin-placed model through the structure check", async () => {
    const onnx = await fixtureBytes("digits-cnn/digits_cnn.onnx");
    const small = checker(4096);
    expect(onnx.byteLength).toBeGreaterThan(small.maxBytes);
    await small.check(await candidate("vc-origin", onnx, { placement: "origin" }));

    const broken = brokenLargeGraph();
    expect(broken.byteLength).toBeGreaterThan(small.maxBytes);
    expect(
      await refusal(
        small.check(
          await candidate("vc-origin", broken, {
            placement: "origin",
            signatureOf: brokenLargeGraph("Relu", ["input"]),
          }),
        ),
      ),
    ).toMatch(/^onnx artifact: node 0 \(Add\) reads 'ghost'/);

    const garbage = crypto.getRandomValues(new Uint8Array(8192));
    expect(
      await refusal(
        small.check(
          await candidate("vc-origin", garbage, { placement: "origin", signatureOf: onnx }),
        ),
      ),
    ).toMatch(/^onnx artifact: not a valid ONNX model/);
  });

  it("refuses an edge-placed version whose model is over the budget", async () => {
    const onnx = await fixtureBytes("digits-cnn/digits_cnn.onnx");
    const manifest = await candidate("vc-edge", onnx, { placement: "edge" });
    expect(await refusal(checker(4096).check(manifest))).toMatch(
      /onnx artifact is 16317 bytes; an edge-placed version's onnx artifact may have at most 4096 \(MODEL_CACHE_BYTES\); publish it with --placement origin/,
    );
    await checker(1 << 20).check(manifest);
  });

  it("checks an origin-placed int8 plan by its header", async () => {
    const onnx = await fixtureBytes("digits-mlp/digits_mlp.onnx");
    const compiled = compileInt8(onnx, await Int8Kernels.instantiate(kernelsWasm));
    if (!compiled.ok) throw new Error(compiled.reason);
    const small = checker(8192);
    expect(compiled.plan.byteLength).toBeGreaterThan(small.maxBytes);
    await small.check(
      await candidate("vc-plan", onnx, { placement: "origin", int8: compiled.plan }),
    );

    const fake = crypto.getRandomValues(new Uint8Array(compiled.plan.byteLength));
    expect(
      await refusal(
        small.check(await candidate("vc-plan", onnx, { placement: "origin", int8: fake })),
      ),
    ).toMatch(/^int8 artifact: not an int8 plan \(bad magic\)/);
  });
});
