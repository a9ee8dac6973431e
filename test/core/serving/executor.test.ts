import { describe, expect, it } from "vitest";
import { PinionError } from "../../../core/errors";
import type { Manifest } from "../../../core/registry/manifest";
import type { ArtifactSource, LoadedModel, Runtime } from "../../../core/runtimes/runtime";
import { OrtRuntime } from "../../../core/runtimes/ort/ort-runtime";
import { Executor } from "../../../core/serving/executor";
import { ModelCache } from "../../../core/serving/model-cache";
import { ModelResolver } from "../../../core/serving/resolver";
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
