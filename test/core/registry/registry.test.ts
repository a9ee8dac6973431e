import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { PinionError } from "../../../core/errors";
import { blobKey, manifestKey, versionFromPrefix } from "../../../core/registry/layout";
import { MAX_VERSION, checkModelName, parseVersion } from "../../../core/registry/names";
import { sha256Hex } from "../../../core/registry/digest";
import { fixtureBytes, publishFixture, registry } from "../../worker/helpers";

async function kindOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof PinionError) return `${error.kind}: ${error.message}`;
    throw error;
  }
  return "resolved";
}

describe("model names and versions", () => {
  it("accepts the conservative charset only", () => {
    for (const good of ["simple", "digits-mlp", "a", "resnet50.v2_int8", "0model"]) {
      expect(checkModelName(good)).toBe(good);
    }
    for (const bad of [
      "",
      "..",
      "../etc",
      "a/b",
      "A",
      "-lead",
      ".hidden",
      "mödel",
      "ｍodel", // full-width look-alike
      "a\u0000b",
      "x".repeat(65),
    ]) {
      expect(() => checkModelName(bad), bad).toThrow(/invalid model name/);
    }
  });

  it("accepts positive integer versions only", () => {
    expect(parseVersion("1")).toBe(1);
    expect(parseVersion("42")).toBe(42);
    for (const bad of ["0", "01", "-1", "1.0", "latest", "1e3", "9999999999", ""]) {
      expect(() => parseVersion(bad), bad).toThrow(/invalid model version/);
    }
  });

  it("has one largest version, which every parser and the listing agree on", () => {
    expect(MAX_VERSION).toBe(999_999_999);
    expect(parseVersion(String(MAX_VERSION))).toBe(MAX_VERSION);
    expect(() => parseVersion(String(MAX_VERSION + 1))).toThrow(/invalid model version/);
    expect(versionFromPrefix(`models/m/versions/${MAX_VERSION}/`)).toBe(MAX_VERSION);
    expect(versionFromPrefix(`models/m/versions/${MAX_VERSION + 1}/`)).toBeUndefined();
  });
});

describe("ModelRegistry on R2", () => {
  it("never writes a version number it cannot list", async () => {
    // A legal 999999999 used to make the next auto-numbered publish write an invisible
    // 1000000000, after which every publish failed to claim a number.
    expect(
      await kindOf(publishFixture("reg-max", "seed-simple/simple_model.onnx", MAX_VERSION + 1)),
    ).toMatch(/^invalid_argument: .*version.* at most 999999999/);
    expect(
      (await publishFixture("reg-max", "seed-simple/simple_model.onnx", MAX_VERSION)).version,
    ).toBe(MAX_VERSION);
    expect(await kindOf(publishFixture("reg-max", "seed-simple/simple_model.onnx"))).toMatch(
      /^conflict: .*reg-max.* 999999999/,
    );
    expect((await publishFixture("reg-max", "seed-simple/simple_model.onnx", 2)).version).toBe(2);
    expect(await registry().listVersions("reg-max")).toEqual([2, MAX_VERSION]);
    const written = await env.MODELS.list({ prefix: "models/reg-max/versions/" });
    expect(written.objects.map((o) => o.key)).toEqual([
      manifestKey("reg-max", 2),
      manifestKey("reg-max", MAX_VERSION),
    ]);
  });

  it("publishes immutable versions with artifacts addressed by sha256", async () => {
    const manifest = await publishFixture("reg-simple", "seed-simple/simple_model.onnx");
    expect(manifest.version).toBe(1);
    const bytes = await fixtureBytes("seed-simple/simple_model.onnx");
    const digest = await sha256Hex(bytes);
    expect(manifest.artifacts.onnx).toEqual({
      key: blobKey("reg-simple", digest),
      bytes: bytes.byteLength,
      sha256: digest,
      mediaType: "application/x-onnx",
    });
    expect(manifest.inputs).toEqual([{ name: "input", datatype: "FP32", shape: [-1, 10] }]);
    const stored = await env.MODELS.get(manifestKey("reg-simple", 1));
    expect(JSON.parse(await stored!.text())).toEqual(manifest);

    // Without a version number the next free one is taken.
    const second = await publishFixture("reg-simple", "seed-simple/simple_model.onnx");
    expect(second.version).toBe(2);
    expect(await registry().listVersions("reg-simple")).toEqual([1, 2]);
  });

  it("refuses a second write of the same version and leaves the first intact", async () => {
    const first = await publishFixture("reg-immutable", "seed-simple/simple_model.onnx", 7);
    const before = await env.MODELS.get(manifestKey("reg-immutable", 7));
    const beforeText = await before!.text();
    expect(await kindOf(publishFixture("reg-immutable", "digits-mlp/digits_mlp.onnx", 7))).toMatch(
      /^conflict: reg-immutable@7 already exists and versions are immutable/,
    );
    const after = await env.MODELS.get(manifestKey("reg-immutable", 7));
    expect(await after!.text()).toBe(beforeText);
    expect(await registry().getManifest("reg-immutable", 7)).toEqual(first);
  });

  it("gives concurrent publishers distinct versions", async () => {
    const published = await Promise.all(
      [1, 2, 3].map(() => publishFixture("reg-race", "seed-simple/simple_model.onnx")),
    );
    expect(published.map((m) => m.version).sort()).toEqual([1, 2, 3]);
  });

  it("lists versions numerically and reports unknown ones as not found", async () => {
    for (const v of [2, 10, 1])
      await publishFixture("reg-order", "seed-simple/simple_model.onnx", v);
    expect(await registry().listVersions("reg-order")).toEqual([1, 2, 10]);
    expect(await registry().listVersions("reg-none")).toEqual([]);
    expect(await kindOf(registry().getManifest("reg-order", 3))).toBe(
      "not_found: model 'reg-order' has no version 3",
    );
  });

  it("verifies sha256 when reading an artifact and refuses a tampered one", async () => {
    const manifest = await publishFixture("reg-tamper", "seed-simple/simple_model.onnx");
    const good = await registry().readArtifact(manifest, "onnx", 1 << 20);
    expect(good.byteLength).toBe(manifest.artifacts.onnx.bytes);

    const tampered = new Uint8Array(good);
    tampered[tampered.length - 1]! ^= 0xff;
    await env.MODELS.put(manifest.artifacts.onnx.key, tampered);
    expect(await kindOf(registry().readArtifact(manifest, "onnx", 1 << 20))).toMatch(
      /^unavailable: onnx artifact of reg-tamper@1 failed its sha256 check/,
    );
    await env.MODELS.put(manifest.artifacts.onnx.key, tampered.slice(1));
    expect(await kindOf(registry().readArtifact(manifest, "onnx", 1 << 20))).toMatch(
      /is 2217 bytes, the manifest says 2218/,
    );
    await env.MODELS.delete(manifest.artifacts.onnx.key);
    expect(await kindOf(registry().readArtifact(manifest, "onnx", 1 << 20))).toMatch(/missing/);
  });

  it("refuses artifacts larger than the caller's budget before fetching them", async () => {
    const manifest = await publishFixture("reg-budget", "digits-mlp/digits_mlp.onnx");
    expect(await kindOf(registry().readArtifact(manifest, "onnx", 1000))).toMatch(
      /^unavailable: onnx artifact of reg-budget@1 is 69602 bytes; this server's limit is 1000/,
    );
  });

  it("refuses manifests that fail the schema or describe another version", async () => {
    await env.MODELS.put(manifestKey("reg-broken", 1), "{not json");
    expect(await kindOf(registry().getManifest("reg-broken", 1))).toMatch(/not valid JSON/);
    const real = await publishFixture("reg-moved", "seed-simple/simple_model.onnx");
    await env.MODELS.put(manifestKey("reg-moved", 5), JSON.stringify(real));
    expect(await kindOf(registry().getManifest("reg-moved", 5))).toMatch(/describes reg-moved@1/);
    await env.MODELS.put(
      manifestKey("reg-moved", 6),
      JSON.stringify({ ...real, version: 6, inputs: [] }),
    );
    expect(await kindOf(registry().getManifest("reg-moved", 6))).toMatch(
      /^unavailable: manifest of reg-moved@6 is invalid/,
    );
  });

  it("never turns an invalid name into a key", async () => {
    expect(await kindOf(registry().listVersions("../x"))).toMatch(/^invalid_argument/);
    expect(await kindOf(publishFixture("a/b", "seed-simple/simple_model.onnx"))).toMatch(
      /^invalid_argument: invalid model name/,
    );
    const listed = await env.MODELS.list({ prefix: "models/a" });
    expect(listed.objects.filter((o) => o.key.startsWith("models/a/"))).toEqual([]);
  });
});
