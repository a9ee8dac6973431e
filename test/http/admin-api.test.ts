import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../http/app";
import { MAX_ARTIFACT_BYTES, PART_BYTES } from "../../core/registry/uploads";
import { sha256Hex } from "../../core/registry/digest";
import { blobKey } from "../../core/registry/layout";
import { ModelRegistry } from "../../core/registry/registry";
import { Promoter } from "../../core/serving/promoter";
import { edgeDataPlane } from "../../core/serving/data-plane";
import { OrtRuntime } from "../../core/runtimes/ort/ort-runtime";
import { loadOrt } from "../../worker/ort-workerd";
import kernelsWasm from "../../build/kernels.wasm";
import { compileInt8 } from "../../convert/int8-compiler";
import { buildModel, ElemType } from "../../convert/onnx";
import { Int8Kernels } from "../../core/runtimes/int8/kernels";
import { decodePlanHeader } from "../../core/runtimes/int8/plan";
import { api, fixtureBytes, fixtureJson, postJson } from "../worker/helpers";
import { ArtifactUploads } from "../../core/registry/uploads";
import { r2Uploads } from "../../worker/r2-uploads";

const TOKEN = env.PINION_ADMIN_TOKEN;
const auth = { authorization: `Bearer ${TOKEN}` };

function admin(path: string, init: RequestInit = {}, headers: Record<string, string> = auth) {
  return api(`/admin/${path}`, {
    ...init,
    headers: { ...headers, ...(init.headers as Record<string, string>) },
  });
}

function json(path: string, method: string, body: unknown) {
  return admin(path, {
    method,
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
}

/** Uploads bytes as the CLI does: start, parts, complete. */
async function upload(model: string, bytes: Uint8Array, sha256?: string) {
  const digest = sha256 ?? (await sha256Hex(bytes));
  const start = await json(`models/${model}/uploads`, "POST", {
    sha256: digest,
    bytes: bytes.byteLength,
    mediaType: "application/octet-stream",
  });
  const started = (await start.json()) as {
    exists: boolean;
    key: string;
    uploadId: string;
    partBytes: number;
  };
  if (started.exists) return { started, complete: undefined };
  const parts = [];
  for (let i = 0; i * started.partBytes < bytes.byteLength; i++) {
    const part = bytes.subarray(i * started.partBytes, (i + 1) * started.partBytes);
    const response = await admin(
      `models/${model}/uploads/${started.uploadId}/parts/${i + 1}?sha256=${digest}`,
      {
        method: "PUT",
        body: part,
      },
    );
    expect(response.status).toBe(200);
    parts.push(await response.json());
  }
  const complete = await json(`models/${model}/uploads/${started.uploadId}/complete`, "POST", {
    sha256: digest,
    parts,
  });
  return { started, complete };
}

describe("admin API authentication", () => {
  it("answers 401 without the token or with a wrong one", async () => {
    const attempts: Record<string, string>[] = [
      {},
      { authorization: "Bearer wrong" },
      { authorization: `Basic ${TOKEN}` },
    ];
    for (const headers of attempts) {
      const response = await admin("models", {}, headers);
      expect(response.status).toBe(401);
      expect(response.headers.get("www-authenticate")).toMatch(/^Bearer/);
      expect(((await response.json()) as { error: string }).error).toMatch(/admin token/);
    }
    expect((await admin("models")).status).toBe(200);
  });

  it("is disabled when no token is configured", async () => {
    const registry = new ModelRegistry(env.MODELS);
    const plane = edgeDataPlane(registry, [new OrtRuntime(loadOrt)], {
      maxRequestBytes: 1 << 20,
      modelCacheBytes: 1 << 20,
      versionListTtlMs: 0,
      aliasTtlMs: 0,
      shadowFlushMs: 0,
    });
    const app = createApp<object>({
      planeFor: () => plane,
      adminFor: () => ({
        tokens: [],
        uploads: new ArtifactUploads(r2Uploads(env.MODELS)),
        registry,
        promoter: new Promoter(registry, plane),
      }),
    });
    const response = await app.fetch(new Request("http://x/admin/models", { headers: auth }), {});
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: string }).error).toMatch(/admin API is disabled/);
  });
});

describe("publishing through the admin API", () => {
  it("uploads, commits and serves a version; the model then answers like PyTorch", async () => {
    const onnx = await fixtureBytes("seed-simple/simple_model.onnx");
    const { started, complete } = await upload("admin-simple", onnx);
    expect(started.exists).toBe(false);
    expect(complete!.status).toBe(200);
    const stored = (await complete!.json()) as { key: string; bytes: number; sha256: string };
    expect(stored).toEqual({
      key: blobKey("admin-simple", stored.sha256),
      bytes: onnx.byteLength,
      sha256: await sha256Hex(onnx),
    });

    const commit = await json("models/admin-simple/versions", "POST", {
      platform: "onnx_onnxv1",
      inputs: [{ name: "input", datatype: "FP32", shape: [-1, 10] }],
      outputs: [{ name: "output", datatype: "FP32", shape: [-1, 10] }],
      runtime: "ort",
      source: "simple_model.onnx",
      artifacts: { onnx: { ...stored, mediaType: "application/x-onnx" } },
    });
    expect(commit.status).toBe(201);
    expect(((await commit.json()) as { version: number }).version).toBe(1);

    const cases = await fixtureJson<{ inputs: number[][]; expected: number[][] }>(
      "seed-simple/cases.json",
    );
    const infer = await postJson("/v2/models/admin-simple/infer", {
      inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: cases.inputs[3] }],
    });
    const out = ((await infer.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data;
    out.forEach((v, i) => expect(Math.abs(v - cases.expected[3]![i]!)).toBeLessThan(1e-5));

    // The same bytes again: nothing to upload.
    expect((await upload("admin-simple", onnx)).started.exists).toBe(true);

    const listed = await (await admin("models/admin-simple/versions")).json();
    expect(listed).toMatchObject({
      name: "admin-simple",
      versions: [{ version: 1, bytes: onnx.byteLength, runtime: "ort" }],
    });
    expect(((await (await admin("models")).json()) as { models: string[] }).models).toContain(
      "admin-simple",
    );
  });

  it("assembles multi-part uploads and verifies the whole object's sha256", async () => {
    const bytes = new Uint8Array(PART_BYTES + 12345);
    for (let i = 0; i < bytes.length; i += 4096) bytes[i] = (i * 31) & 0xff;
    const { complete } = await upload("admin-big", bytes);
    expect(complete!.status).toBe(200);
    const object = await env.MODELS.head(blobKey("admin-big", await sha256Hex(bytes)));
    expect(object?.size).toBe(bytes.byteLength);
  });

  it("deletes an upload whose bytes do not match the claimed sha256", async () => {
    const bytes = new TextEncoder().encode("not what was promised");
    const claimed = "0".repeat(64);
    const { complete } = await upload("admin-liar", bytes, claimed);
    expect(complete!.status).toBe(400);
    expect(((await complete!.json()) as { error: string }).error).toMatch(
      /have sha256 [0-9a-f]{64}, not 0{64}; the object was deleted/,
    );
    expect(await env.MODELS.head(blobKey("admin-liar", claimed))).toBeNull();
  });

  it("refuses parts without a length, oversized parts and bad part numbers", async () => {
    const sha = "a".repeat(64);
    const stream = new ReadableStream({ start: (c) => (c.enqueue(new Uint8Array(4)), c.close()) });
    const noLength = await admin(`models/admin-x/uploads/u1/parts/1?sha256=${sha}`, {
      method: "PUT",
      body: stream,
    });
    expect(noLength.status).toBe(411);
    const badPart = await admin(`models/admin-x/uploads/u1/parts/0?sha256=${sha}`, {
      method: "PUT",
      body: "x",
    });
    expect(badPart.status).toBe(400);
    const badSha = await admin(`models/admin-x/uploads/u1/parts/1?sha256=xyz`, {
      method: "PUT",
      body: "x",
    });
    expect(badSha.status).toBe(400);
  });

  it("commits only uploaded artifacts, and concurrent commits get distinct versions", async () => {
    const fields = {
      platform: "onnx_onnxv1",
      inputs: [{ name: "input", datatype: "FP32", shape: [-1, 10] }],
      outputs: [{ name: "output", datatype: "FP32", shape: [-1, 10] }],
      runtime: "ort",
    };
    const ghost = "b".repeat(64);
    const missing = await json("models/admin-race/versions", "POST", {
      ...fields,
      artifacts: {
        onnx: {
          key: blobKey("admin-race", ghost),
          bytes: 10,
          sha256: ghost,
          mediaType: "application/x-onnx",
        },
      },
    });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: string }).error).toMatch(/has not been uploaded/);

    const onnx = await fixtureBytes("seed-simple/simple_model.onnx");
    const { complete } = await upload("admin-race", onnx);
    const stored = (await complete!.json()) as { key: string; bytes: number; sha256: string };
    const commits = await Promise.all(
      [1, 2, 3, 4].map(() =>
        json("models/admin-race/versions", "POST", {
          ...fields,
          artifacts: { onnx: { ...stored, mediaType: "application/x-onnx" } },
        }),
      ),
    );
    const versions = await Promise.all(
      commits.map(async (r) => ((await r.json()) as { version: number }).version),
    );
    expect(versions.sort()).toEqual([1, 2, 3, 4]);

    const again = await json("models/admin-race/versions", "POST", {
      ...fields,
      version: 2,
      artifacts: { onnx: { ...stored, mediaType: "application/x-onnx" } },
    });
    expect(again.status).toBe(409);
  });

  it("refuses version numbers it could not list, explicit or auto-numbered", async () => {
    const fields = {
      platform: "onnx_onnxv1",
      inputs: [{ name: "input", datatype: "FP32", shape: [-1, 10] }],
      outputs: [{ name: "output", datatype: "FP32", shape: [-1, 10] }],
      runtime: "ort",
    };
    const onnx = await fixtureBytes("seed-simple/simple_model.onnx");
    const { complete } = await upload("admin-max", onnx);
    const stored = (await complete!.json()) as { key: string; bytes: number; sha256: string };
    const commit = (version?: number) =>
      json("models/admin-max/versions", "POST", {
        ...fields,
        ...(version === undefined ? {} : { version }),
        artifacts: { onnx: { ...stored, mediaType: "application/x-onnx" } },
      });
    const tooBig = await commit(1_000_000_000);
    expect(tooBig.status).toBe(400);
    expect(((await tooBig.json()) as { error: string }).error).toMatch(/at most 999999999/);

    expect((await commit(999_999_999)).status).toBe(201);
    const next = await commit();
    expect(next.status).toBe(409);
    expect(((await next.json()) as { error: string }).error).toMatch(/999999999/);

    expect((await commit(5)).status).toBe(201);
    const listed = (await (await admin("models/admin-max/versions")).json()) as {
      versions: { version: number }[];
    };
    expect(listed.versions.map((v) => v.version)).toEqual([5, 999_999_999]);
    expect((await env.MODELS.list({ prefix: "models/admin-max/versions/" })).objects).toHaveLength(
      2,
    );
  });
});

describe("uploads never write where verified bytes may live", () => {
  const fields = {
    platform: "onnx_onnxv1",
    inputs: [{ name: "input", datatype: "FP32", shape: [-1, 10] }],
    outputs: [{ name: "output", datatype: "FP32", shape: [-1, 10] }],
    runtime: "ort",
  };
  const firstCase = async () => {
    const cases = await fixtureJson<{ inputs: number[][] }>("seed-simple/cases.json");
    return { inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: cases.inputs[0] }] };
  };

  /** Publishes the seed model as version 1 of `model` and returns its answer and blob. */
  async function publishSeed(model: string) {
    const onnx = await fixtureBytes("seed-simple/simple_model.onnx");
    const { complete } = await upload(model, onnx);
    const stored = (await complete!.json()) as { key: string; bytes: number; sha256: string };
    const commit = await json(`models/${model}/versions`, "POST", {
      ...fields,
      artifacts: { onnx: { ...stored, mediaType: "application/x-onnx" } },
    });
    expect(commit.status).toBe(201);
    const before = await postJson(`/v2/models/${model}/versions/1/infer`, await firstCase());
    expect(before.status).toBe(200);
    return { onnx, stored, answer: await before.json() };
  }

  it("refuses an upload naming a published blob's sha256 with another size; the version stays intact", async () => {
    const { onnx, stored, answer } = await publishSeed("admin-attack");
    // The attack: the blob's digest with another size, which used to open an upload
    // onto the blob's own key, overwrite it on complete, fail the check and delete it.
    const forged = new Uint8Array(onnx.byteLength + 100).fill(7);
    const start = await json("models/admin-attack/uploads", "POST", {
      sha256: stored.sha256,
      bytes: forged.byteLength,
      mediaType: "application/octet-stream",
    });
    expect(start.status).toBe(409);
    expect(((await start.json()) as { error: string }).error).toMatch(
      new RegExp(`already holds ${onnx.byteLength} bytes with sha256 ${stored.sha256}`),
    );

    const object = await env.MODELS.get(stored.key);
    expect(object?.size).toBe(onnx.byteLength);
    expect(await sha256Hex(new Uint8Array(await object!.arrayBuffer()))).toBe(stored.sha256);
    const after = await postJson("/v2/models/admin-attack/versions/1/infer", await firstCase());
    expect(after.status).toBe(200);
    expect(await after.json()).toEqual(answer);
  });

  it("refuses at the start an artifact too large to be placed at its blob key", async () => {
    const start = await json("models/admin-huge/uploads", "POST", {
      sha256: "c".repeat(64),
      bytes: MAX_ARTIFACT_BYTES + 1,
      mediaType: "application/octet-stream",
    });
    expect(start.status).toBe(400);
    expect(((await start.json()) as { error: string }).error).toBe(
      `bytes: an artifact is at most ${MAX_ARTIFACT_BYTES} bytes`,
    );
  });

  it("a forged upload started before the blob existed cannot replace or delete it", async () => {
    // Start the forgery first, so the start-time check sees no blob; publish the real bytes;
    // then finish the forgery: its complete must neither overwrite nor delete them.
    const onnx = await fixtureBytes("seed-simple/simple_model.onnx");
    const sha256 = await sha256Hex(onnx);
    const forged = new Uint8Array(onnx.byteLength + 100).fill(9);
    const start = await json("models/admin-race-forge/uploads", "POST", {
      sha256,
      bytes: forged.byteLength,
      mediaType: "application/octet-stream",
    });
    expect(start.status).toBe(201);
    const started = (await start.json()) as { uploadId: string };
    const part = await admin(
      `models/admin-race-forge/uploads/${started.uploadId}/parts/1?sha256=${sha256}`,
      { method: "PUT", body: forged },
    );
    expect(part.status).toBe(200);

    const { answer, stored } = await publishSeed("admin-race-forge");
    const complete = await json(
      `models/admin-race-forge/uploads/${started.uploadId}/complete`,
      "POST",
      {
        sha256,
        parts: [await part.json()],
      },
    );
    expect(complete.status).toBe(400);
    expect(((await complete.json()) as { error: string }).error).toMatch(
      new RegExp(`not ${sha256}; the object was deleted`),
    );

    const object = await env.MODELS.head(stored.key);
    expect(object?.size).toBe(onnx.byteLength);
    const after = await postJson("/v2/models/admin-race-forge/versions/1/infer", await firstCase());
    expect(after.status).toBe(200);
    expect(await after.json()).toEqual(answer);
    // Nothing of the forgery is left behind anywhere in the bucket.
    const listed = await env.MODELS.list({ prefix: "uploads/" });
    expect(listed.objects.filter((o) => o.key.includes("admin-race-forge"))).toEqual([]);
  });

  it("concurrent uploads of the same bytes all succeed and store them once", async () => {
    const bytes = new TextEncoder().encode("the same artifact, uploaded twice at once");
    const sha256 = await sha256Hex(bytes);
    const starts = await Promise.all(
      [1, 2, 3].map(() =>
        json("models/admin-twice/uploads", "POST", {
          sha256,
          bytes: bytes.byteLength,
          mediaType: "application/octet-stream",
        }),
      ),
    );
    const uploads = await Promise.all(
      starts.map(async (s) => {
        expect(s.status).toBe(201);
        const { uploadId } = (await s.json()) as { uploadId: string };
        const part = await admin(
          `models/admin-twice/uploads/${uploadId}/parts/1?sha256=${sha256}`,
          { method: "PUT", body: bytes },
        );
        return { uploadId, part: await part.json() };
      }),
    );
    const completes = await Promise.all(
      uploads.map(({ uploadId, part }) =>
        json(`models/admin-twice/uploads/${uploadId}/complete`, "POST", { sha256, parts: [part] }),
      ),
    );
    for (const c of completes) {
      expect(c.status).toBe(200);
      expect(await c.json()).toEqual({
        key: blobKey("admin-twice", sha256),
        bytes: bytes.byteLength,
        sha256,
      });
    }
    const object = await env.MODELS.get(blobKey("admin-twice", sha256));
    expect(object?.customMetadata).toEqual({ sha256 });
    expect(await object?.text()).toBe("the same artifact, uploaded twice at once");
    const staged = await env.MODELS.list({ prefix: "uploads/admin-twice/" });
    expect(staged.objects).toEqual([]);
  });
});

describe("checking a version at commit", () => {
  const simpleFields = {
    platform: "onnx_onnxv1",
    inputs: [{ name: "input", datatype: "FP32", shape: [-1, 10] }],
    outputs: [{ name: "output", datatype: "FP32", shape: [-1, 10] }],
    runtime: "ort",
  };
  type Stored = { key: string; bytes: number; sha256: string };

  async function stored(model: string, bytes: Uint8Array, mediaType: string) {
    const { started, complete } = await upload(model, bytes);
    const info = complete
      ? ((await complete.json()) as Stored)
      : { key: started.key, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) };
    return { ...info, mediaType };
  }

  async function commit(model: string, body: Record<string, unknown>) {
    const response = await json(`models/${model}/versions`, "POST", body);
    return { status: response.status, body: (await response.json()) as { error?: string } };
  }

  async function versionsOf(model: string): Promise<number[]> {
    const listed = (await (await admin(`models/${model}/versions`)).json()) as {
      versions: { version: number }[];
    };
    return listed.versions.map((v) => v.version);
  }

  /** The model's default (no alias: the latest version) still answers, from `version`. */
  async function expectDefaultServes(model: string, version: string) {
    const infer = await postJson(`/v2/models/${model}/infer`, {
      inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: new Array(10).fill(0.5) }],
    });
    expect(infer.status).toBe(200);
    expect(((await infer.json()) as { model_version: string }).model_version).toBe(version);
  }

  /** A model with one good version and no alias: its latest version is its default. */
  async function seeded(model: string) {
    const onnx = await stored(
      model,
      await fixtureBytes("seed-simple/simple_model.onnx"),
      "application/x-onnx",
    );
    expect((await commit(model, { ...simpleFields, artifacts: { onnx } })).status).toBe(201);
    await expectDefaultServes(model, "1");
    return onnx;
  }

  const hello = new TextEncoder().encode("hello");
  const random = () => crypto.getRandomValues(new Uint8Array(4096));

  it("refuses bytes that are not ONNX; the default version keeps answering", async () => {
    const model = "check-onnx";
    await seeded(model);
    for (const bytes of [hello, random()]) {
      const onnx = await stored(model, bytes, "application/x-onnx");
      const refused = await commit(model, { ...simpleFields, artifacts: { onnx } });
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatch(/onnx artifact: not a valid ONNX model/);
      // An origin-placed version is not loaded at the edge, but its structure is checked.
      const origin = await commit(model, {
        ...simpleFields,
        placement: "origin",
        artifacts: { onnx },
      });
      expect(origin.status).toBe(400);
      expect(origin.body.error).toMatch(/onnx artifact: not a valid ONNX model/);
    }
    expect(await versionsOf(model)).toEqual([1]);
    await expectDefaultServes(model, "1");
  });

  it("refuses a graph onnxruntime cannot load, and a signature the graph does not have", async () => {
    const model = "check-load";
    const good = await seeded(model);
    // Structurally sound (known operator set, every input defined) but no such operator.
    const unknownOp = buildModel(
      [{ op: "NoSuchOperator", inputs: ["input"], outputs: ["output"] }],
      [{ name: "input", type: ElemType.FLOAT, dims: ["batch", 10] }],
      [{ name: "output", type: ElemType.FLOAT, dims: ["batch", 10] }],
    );
    const onnx = await stored(model, unknownOp, "application/x-onnx");
    const refused = await commit(model, { ...simpleFields, artifacts: { onnx } });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatch(/onnx artifact does not load in onnxruntime-web/);

    const wrong = [
      { inputs: [{ name: "x", datatype: "FP32", shape: [-1, 10] }], what: /input 0 is 'input'/ },
      {
        inputs: [{ name: "input", datatype: "INT64", shape: [-1, 10] }],
        what: /input 'input' is FP32 \[-1, 10\] in the graph, not INT64 \[-1, 10\]/,
      },
      {
        outputs: [{ name: "output", datatype: "FP32", shape: [-1, 11] }],
        what: /output 'output' is FP32 \[-1, 10\] in the graph, not FP32 \[-1, 11\]/,
      },
      {
        outputs: [...simpleFields.outputs, { name: "extra", datatype: "FP32", shape: [1] }],
        what: /declares 2 outputs; the graph has 1/,
      },
    ];
    for (const { what, ...declared } of wrong) {
      const mismatch = await commit(model, {
        ...simpleFields,
        ...declared,
        artifacts: { onnx: good },
      });
      expect(mismatch.status).toBe(400);
      expect(mismatch.body.error).toMatch(what);
    }
    expect(await versionsOf(model)).toEqual([1]);
    await expectDefaultServes(model, "1");
  });

  it("refuses an int8 plan that is not one, or whose sections do not fit", async () => {
    const model = "check-int8";
    const onnxBytes = await fixtureBytes("seed-simple/simple_model.onnx");
    const onnx = await seeded(model);
    const kernels = await Int8Kernels.instantiate(kernelsWasm);
    const compiled = compileInt8(onnxBytes, kernels);
    if (!compiled.ok) throw new Error(compiled.reason);

    // A real plan whose first layer claims one more input than it has weights for.
    const meta = decodePlanHeader(compiled.plan);
    const header = new TextDecoder().decode(
      compiled.plan.subarray(16, 16 + JSON.stringify(meta).length + 64),
    );
    const tampered = compiled.plan.slice();
    const edited = header.replace('"k":10', '"k":11');
    expect(edited).not.toBe(header);
    tampered.set(new TextEncoder().encode(edited), 16);

    const cases: [Uint8Array, RegExp][] = [
      [hello, /int8 artifact: not an int8 plan \(bad magic\)/],
      [random(), /int8 artifact: not an int8 plan \(bad magic\)/],
      [tampered, /int8 artifact: .*layer .* (takes 11|packed weights for 11×20)/],
    ];
    for (const [bytes, what] of cases) {
      const int8 = await stored(model, bytes, "application/x-pinion-int8-plan");
      const refused = await commit(model, {
        ...simpleFields,
        runtime: "int8",
        artifacts: { onnx, int8 },
      });
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatch(what);
    }
    // The real plan commits and serves on int8.
    const int8 = await stored(model, compiled.plan, "application/x-pinion-int8-plan");
    const ok = await commit(model, { ...simpleFields, runtime: "int8", artifacts: { onnx, int8 } });
    expect(ok.status).toBe(201);
    await expectDefaultServes(model, "2");
  });

  it("records what pruning removed, lists it, and refuses a malformed pruning record", async () => {
    const model = "check-pruning";
    const onnx = await stored(
      model,
      await fixtureBytes("seed-simple/simple_model.onnx"),
      "application/x-onnx",
    );
    const pruning = {
      method: "weight-norm",
      fraction: 0.25,
      requested: 0.25,
      layers: [{ name: "/layer1/Gemm", units: 20, kept: 15, removed: 5 }],
      parameters: { before: 430, after: 325 },
    };
    const bad = await commit(model, {
      ...simpleFields,
      pruning: { ...pruning, fraction: 2 },
      artifacts: { onnx },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/^pruning\.fraction: /);
    const ok = await commit(model, { ...simpleFields, pruning, artifacts: { onnx } });
    expect(ok.status).toBe(201);
    expect((ok.body as { pruning?: unknown }).pruning).toEqual(pruning);
    const listed = (await (await admin(`models/${model}/versions`)).json()) as {
      versions: { pruned?: string }[];
    };
    expect(listed.versions[0]!.pruned).toBe("/layer1/Gemm 20→15 (25.0%, weight-norm)");
  });

  it("refuses a golden set that is not JSON or does not fit the model's shapes", async () => {
    const model = "check-golden";
    const onnx = await seeded(model);
    const golden = (inputs: unknown[], expected: unknown[], extra: object = {}) =>
      new TextEncoder().encode(
        JSON.stringify({
          format: "pinion.golden/1",
          inputName: "input",
          outputName: "output",
          inputs,
          expected,
          tolerance: 1e-4,
          ...extra,
        }),
      );
    const row = new Array(10).fill(0.25);
    const cases: [Uint8Array, RegExp][] = [
      [hello, /golden artifact: not valid JSON/],
      [random(), /golden artifact: not valid JSON/],
      [new TextEncoder().encode('{"inputs": []}'), /golden artifact: format/],
      [
        golden([row.slice(1)], [row]),
        /golden input 0 has shape \[9\]; 'input' takes \[10\] per case/,
      ],
      [golden([row], [row, row]), /1 inputs but 2 expected outputs/],
      [golden([row], [row], { outputName: "logits" }), /outputName 'logits' is not an output/],
    ];
    for (const [bytes, what] of cases) {
      const goldenArtifact = await stored(model, bytes, "application/json");
      const refused = await commit(model, {
        ...simpleFields,
        artifacts: { onnx, golden: goldenArtifact },
      });
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatch(what);
    }
    expect(await versionsOf(model)).toEqual([1]);
    await expectDefaultServes(model, "1");
  });
});
