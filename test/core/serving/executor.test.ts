import { describe, expect, it } from "vitest";
import { PinionError } from "../../../core/errors";
import type { Manifest } from "../../../core/registry/manifest";
import type { ArtifactSource, LoadedModel, Runtime } from "../../../core/runtimes/runtime";
import { OrtRuntime } from "../../../core/runtimes/ort/ort-runtime";
import { DataPlane, type RequestBody } from "../../../core/serving/data-plane";
import { Executor } from "../../../core/serving/executor";
import { ModelCache } from "../../../core/serving/model-cache";
import { ModelResolver } from "../../../core/serving/resolver";
import { Trace } from "../../../core/serving/trace";
import { loadOrt } from "../../../worker/ort-workerd";
import { publishFixture, registry } from "../../worker/helpers";

/** The real ORT runtime, counting how often it is asked to load. */
class CountingRuntime implements Runtime {
  readonly name = "ort";
  readonly loads: string[] = [];
  private readonly inner = new OrtRuntime(loadOrt);
  load(manifest: Manifest, artifacts: ArtifactSource): Promise<LoadedModel> {
    this.loads.push(`${manifest.name}@${manifest.version}`);
    return this.inner.load(manifest, artifacts);
  }
}

function executor(budget: number) {
  const runtime = new CountingRuntime();
  const cache = new ModelCache(budget);
  const resolver = new ModelResolver(registry(), {
    versionListTtlMs: 0,
    aliasTtlMs: 0,
    maxArtifactBytes: budget,
  });
  const p = new Executor(registry(), [runtime], cache, { maxRequestBytes: 1 << 20 });
  return { runtime, cache, resolver, p };
}

async function failure(promise: Promise<unknown>): Promise<PinionError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PinionError);
  return error as PinionError;
}

describe("Executor", () => {
  it("shares one load between concurrent first requests", async () => {
    await publishFixture("dp-flight", "seed-simple/simple_model.onnx");
    const { p, runtime, cache, resolver } = executor(1 << 20);
    const manifest = await resolver.manifest("dp-flight");
    const models = await Promise.all(Array.from({ length: 10 }, () => p.load(manifest)));
    expect(new Set(models).size).toBe(1);
    expect(runtime.loads).toEqual(["dp-flight@1"]);
  });

  it("evicts least recently used models to stay within the byte budget", async () => {
    // simple: 2218 bytes, cnn: 16317 bytes; the ORT runtime holds twice the file.
    const simple = await publishFixture("dp-lru-a", "seed-simple/simple_model.onnx");
    const cnn = await publishFixture("dp-lru-b", "digits-cnn/digits_cnn.onnx");
    const other = await publishFixture("dp-lru-c", "seed-simple/simple_model.onnx");
    const { p, runtime, cache, resolver } = executor(2 * (2218 + 16317) + 100);
    await p.load(simple);
    await p.load(cnn);
    await p.load(simple); // now most recently used
    expect(cache.keys()).toEqual(["dp-lru-b@1/ort", "dp-lru-a@1/ort"]);
    await p.load(other);
    expect(cache.keys()).toEqual(["dp-lru-a@1/ort", "dp-lru-c@1/ort"]);
    expect(cache.bytesHeld).toBeLessThanOrEqual(cache.budgetBytes);
    await p.load(cnn);
    expect(runtime.loads).toEqual(["dp-lru-a@1", "dp-lru-b@1", "dp-lru-c@1", "dp-lru-b@1"]);
  });

  it("never disposes a model under a request that holds it", async () => {
    const a = await publishFixture("dp-lease-a", "seed-simple/simple_model.onnx");
    const b = await publishFixture("dp-lease-b", "seed-simple/simple_model.onnx");
    const { p, cache } = executor(2 * 2218 + 100); // room for one model
    const loadA = () =>
      new OrtRuntime(loadOrt).load(a, (role) => registry().readArtifact(a, role, 1 << 20));
    const lease = await cache.acquire("dp-lease-a@1/ort", loadA);
    await p.load(b); // evicts A from the cache while the lease holds it
    expect(cache.keys()).toEqual(["dp-lease-b@1/ort"]);
    const input = {
      name: "input",
      datatype: "FP32" as const,
      shape: [1, 10],
      data: new Float32Array(10),
    };
    const [out] = await lease.model.run([input], ["output"]);
    expect(out!.shape).toEqual([1, 10]);
    lease.release();
    // Released and evicted: now it is disposed, and its session refuses to run.
    await expect(lease.model.run([input], ["output"])).rejects.toThrow(/was unloaded/);
    // A new request simply loads it again.
    const again = await cache.acquire("dp-lease-a@1/ort", loadA);
    expect(again.model).not.toBe(lease.model);
    again.release();
  });

  it("refuses a model larger than the budget with a clear message, and does not cache failures", async () => {
    const mlp = await publishFixture("dp-big", "digits-mlp/digits_mlp.onnx");
    const { p, runtime, cache, resolver } = executor(50_000);
    const error = await failure(p.load(mlp));
    expect(error.kind).toBe("unavailable");
    expect(error.message).toMatch(/is 69602 bytes; this server's limit is 50000/);
    await failure(p.load(mlp));
    expect(runtime.loads).toEqual(["dp-big@1", "dp-big@1"]);
    expect(cache.keys()).toEqual([]);
  });
});

describe("DataPlane decode repeats (benchmarks only)", () => {
  const text = JSON.stringify({
    inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: new Array(10).fill(0.5) }],
  });
  const body = (): RequestBody => ({
    bytes: async () => new TextEncoder().encode(text),
    stream: () => null,
  });
  const call = (repeatDecode: string) => ({
    reference: { name: "dp-decode", key: "k" },
    body: body(),
    requestId: "r",
    repeatDecode,
  });

  it("reruns the decode ?repeat_decode=N times where benchRepeatMax allows, and reports it", async () => {
    await publishFixture("dp-decode", "seed-simple/simple_model.onnx");
    const { p, resolver } = executor(1 << 20);
    const plane = new DataPlane({
      resolver,
      executor: p,
      maxRequestBytes: 1 << 20,
      benchRepeatMax: 10,
    });
    const trace = new Trace();
    const answer = await plane.infer(call("7"), trace);
    expect(answer.kind).toBe("response");
    expect(trace.decodeRepeat).toBe(7);
    expect(trace.repeat).toBeUndefined();
    expect(trace.timing.entries().map(([phase]) => phase)).toEqual([
      "resolve",
      "decode",
      "load",
      "compute",
    ]);
    const error = await failure(plane.infer(call("11"), new Trace()));
    expect(error.kind).toBe("invalid_argument");
    expect(error.message).toMatch(/repeat_decode must be an integer from 1 to 10/);

    // Without benchRepeatMax (the default), the knob is ignored.
    const off = new DataPlane({ resolver, executor: p, maxRequestBytes: 1 << 20 });
    const plain = new Trace();
    await off.infer(call("7"), plain);
    expect(plain.decodeRepeat).toBeUndefined();
  });
});
