import { describe, expect, it } from "vitest";
import { PinionError } from "../../../core/errors";
import { ModelResolver } from "../../../core/serving/resolver";
import { publishFixture, registry } from "../../worker/helpers";

function resolver(ttl = 0, now?: () => number) {
  return new ModelResolver(
    registry(),
    { versionListTtlMs: ttl, aliasTtlMs: ttl, maxArtifactBytes: 1 << 20 },
    now,
  );
}

async function failure(promise: Promise<unknown>): Promise<PinionError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PinionError);
  return error as PinionError;
}

describe("ModelResolver", () => {
  it("resolves the highest version by default and pins explicit ones", async () => {
    await publishFixture("dp-versions", "seed-simple/simple_model.onnx", 1);
    await publishFixture("dp-versions", "seed-simple/simple_model.onnx", 3);
    const p = resolver();
    expect((await p.manifest("dp-versions")).version).toBe(3);
    expect((await p.manifest("dp-versions", "1")).version).toBe(1);
    expect((await failure(p.manifest("dp-versions", "2"))).message).toBe(
      "model 'dp-versions' has no version 2",
    );
    expect((await failure(p.manifest("dp-nothing", "2"))).message).toBe(
      "model 'dp-nothing' not found",
    );
    expect((await failure(p.manifest("dp-nothing"))).kind).toBe("not_found");
  });

  it("re-lists versions only after the TTL, so a new version shows within it", async () => {
    let clock = 0;
    const p = resolver(5000, () => clock);
    await publishFixture("dp-ttl", "seed-simple/simple_model.onnx", 1);
    expect((await p.manifest("dp-ttl")).version).toBe(1);
    await publishFixture("dp-ttl", "seed-simple/simple_model.onnx", 2);
    clock = 4999;
    expect((await p.manifest("dp-ttl")).version).toBe(1);
    clock = 5000;
    expect((await p.manifest("dp-ttl")).version).toBe(2);
  });

  it("reports the registry as reachable", async () => {
    const p = resolver();
    expect(await p.registryReachable()).toBe(true);
  });
});
