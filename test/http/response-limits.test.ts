/**
 * Issue 12, item 4: an answer has a size bound. A model whose output shape
 * follows its input *values* (ConstantOfShape fed from the input, the
 * `fixtures/value-shaped` model) turned a 90-byte request into a 134 MB JSON
 * response; now the answer is checked before it is encoded (int8: before it
 * is computed) and refused with 422, naming the limit.
 */
import kernelsWasm from "../../build/kernels.wasm";
import { beforeAll, describe, expect, it } from "vitest";
import { PinionError } from "../../core/errors";
import type { Tensor } from "../../core/protocol/datatypes";
import { nonFiniteText } from "../../core/protocol/response-json";
import { checkOutputSize } from "../../core/protocol/tensor-codec";
import type { InferenceRequest } from "../../core/protocol/types";
import { Int8Runtime } from "../../core/runtimes/int8/int8-runtime";
import { OrtRuntime } from "../../core/runtimes/ort/ort-runtime";
import { loadOrt } from "../../worker/ort-workerd";
import type { Runtime } from "../../core/runtimes/runtime";
import { Executor } from "../../core/serving/executor";
import { ModelCache } from "../../core/serving/model-cache";
import { ModelResolver } from "../../core/serving/resolver";
import { Timing } from "../../core/serving/timing";
import { postJson, publishFixture, registry } from "../worker/helpers";

const OFFSET = 0.12345670163631439; // the model's float32 0.1234567, as JSON writes it

beforeAll(async () => {
  await publishFixture("value-shaped", "value-shaped/value_shaped.onnx");
  await publishFixture("simple-int8", "seed-simple/simple_model.onnx", undefined, { int8: true });
});

const lengthRequest = (length: number) => ({
  inputs: [{ name: "length", shape: [1], datatype: "INT64", data: [length] }],
});

describe("the response size bound, over HTTP (wrangler.toml's defaults)", () => {
  it("answers a value-shaped output of ordinary size", async () => {
    const response = await postJson("/v2/models/value-shaped/infer", lengthRequest(5));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { outputs: { shape: number[]; data: number[] }[] };
    expect(body.outputs[0]!.shape).toEqual([5]);
    expect(body.outputs[0]!.data).toEqual(new Array(5).fill(OFFSET));
  });

  it("refuses more output elements than MAX_RESPONSE_ELEMENTS with 422", async () => {
    const response = await postJson("/v2/models/value-shaped/infer", lengthRequest(2_000_000));
    expect(response.status).toBe(422);
    expect(((await response.json()) as { error: string }).error).toBe(
      "the answer would have 2000000 output elements; this server sends at most 1048576 (MAX_RESPONSE_ELEMENTS): send fewer rows or ask for fewer outputs",
    );
  });

  it("refuses output data over MAX_RESPONSE_BYTES with 422, and answers the next request", async () => {
    // 1,000,000 elements (under the element bound) of 20 JSON bytes each: 20 MB > 8 MiB.
    const response = await postJson("/v2/models/value-shaped/infer", lengthRequest(1_000_000));
    expect(response.status).toBe(422);
    expect(((await response.json()) as { error: string }).error).toBe(
      "the answer's output data would be more than 8388608 bytes of JSON (MAX_RESPONSE_BYTES; 1000000 elements): send fewer rows or ask for fewer outputs",
    );
    const next = await postJson("/v2/models/value-shaped/infer", lengthRequest(2));
    expect(next.status).toBe(200);
  });
});

describe("the response size bound in the data plane", () => {
  const config = (maxResponseElements: number, maxResponseBytes = 1 << 20) => ({
    maxRequestBytes: 1 << 20,
    maxResponseElements,
    maxResponseBytes,
    modelCacheBytes: 64 << 20,
    versionListTtlMs: 0,
    aliasTtlMs: 0,
    shadowFlushMs: 0,
  });
  const executor = (runtimes: Runtime[], limits: ReturnType<typeof config>) =>
    new Executor(registry(), runtimes, new ModelCache(limits.modelCacheBytes), limits);
  const resolver = () =>
    new ModelResolver(registry(), {
      versionListTtlMs: 0,
      aliasTtlMs: 0,
      maxArtifactBytes: 64 << 20,
    });
  const rows = (count: number): InferenceRequest => ({
    inputs: [
      {
        name: "input",
        shape: [count, 10],
        datatype: "FP32",
        data: new Array(count * 10).fill(0.5),
      },
    ],
  });

  it("refuses an int8 answer over the element bound before running it", async () => {
    const plane = executor([new Int8Runtime(kernelsWasm)], config(100));
    const manifest = await resolver().manifest("simple-int8");
    expect(manifest.runtime).toBe("int8");
    const ok = await plane.run(manifest, rows(10), new Timing());
    expect(ok.response.outputs[0]!.shape).toEqual([10, 10]);
    const error = await plane.run(manifest, rows(11), new Timing()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PinionError);
    expect((error as PinionError).kind).toBe("result_too_large");
    expect((error as PinionError).message).toMatch(/110 output elements; .* at most 100 /);
  });

  it("bounds onnxruntime's answers by their JSON bytes", async () => {
    const plane = executor([new OrtRuntime(loadOrt)], config(1_000_000, 200));
    const manifest = await resolver().manifest("value-shaped");
    // "0.12345670163631439," is 20 bytes: 10 elements fit in 200, 11 do not.
    const ok = await plane.run(manifest, lengthRequest(10), new Timing());
    expect(ok.response.outputs[0]!.data).toHaveLength(10);
    const error = await plane
      .run(manifest, lengthRequest(11), new Timing())
      .catch((e: unknown) => e);
    expect((error as PinionError).kind).toBe("result_too_large");
    expect((error as PinionError).message).toMatch(/more than 200 bytes of JSON/);
  });
});

describe("checkOutputSize", () => {
  const tensor = (datatype: Tensor["datatype"], data: Tensor["data"]): Tensor => ({
    name: "y",
    datatype,
    shape: [data.length],
    data,
  });
  // The bound counts each element with its comma: the JSON array's text less one byte
  // (non-finite values written as strings, see core/protocol/response-json.ts).
  const exactly = (t: Tensor) =>
    JSON.stringify(
      Array.from(t.data as ArrayLike<number | bigint>, (v) =>
        Number.isFinite(Number(v)) ? Number(v) : nonFiniteText(Number(v)),
      ),
    ).length - 1;

  for (const t of [
    tensor("FP32", Float32Array.from([0.1, -1e-7, 3.4e38, NaN, -0, 1e-6 / 3])),
    tensor("FP64", Float64Array.from([Math.PI, -Number.MAX_VALUE, 5e-324, 1e21, 123456.5])),
    tensor("INT64", BigInt64Array.from([-(2n ** 63n), 2n ** 53n + 1n, 0n])),
    tensor("UINT8", Uint8Array.from([0, 255, 7])),
  ]) {
    it(`counts ${t.datatype} data exactly at the bound`, () => {
      const bytes = exactly(t);
      expect(() => checkOutputSize([t], { maxElements: 100, maxBytes: bytes })).not.toThrow();
      expect(() => checkOutputSize([t], { maxElements: 100, maxBytes: bytes - 1 })).toThrow(
        /MAX_RESPONSE_BYTES/,
      );
    });
  }

  it("counts BOOL as true and false", () => {
    const t = tensor("BOOL", Uint8Array.from([1, 0, 1]));
    // true,false,true, = 16 bytes
    expect(() => checkOutputSize([t], { maxElements: 3, maxBytes: 16 })).not.toThrow();
    expect(() => checkOutputSize([t], { maxElements: 3, maxBytes: 15 })).toThrow(
      /MAX_RESPONSE_BYTES/,
    );
    expect(() => checkOutputSize([t], { maxElements: 2, maxBytes: 100 })).toThrow(
      /MAX_RESPONSE_ELEMENTS/,
    );
  });
});
