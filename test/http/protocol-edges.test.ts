/**
 * The protocol's edges, inside workerd with the R2 emulation and real
 * fixtures: Triton's model configuration and model repository extensions, the
 * statistics path, compressed request bodies, `/v2/` and the extension list.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { SUPPORTED_EXTENSIONS } from "../../core/protocol/extensions";
import { api as plainApi, fixtureJson, publishFixture } from "../worker/helpers";
import {
  expectConformant,
  validatedApi as api,
  validatedPostJson as postJson,
} from "../worker/openapi";

interface Cases {
  inputs: number[][];
  expected: number[][];
}
let cases: Cases;

const CI = { authorization: "Bearer ci-token", "content-type": "application/json" };

beforeAll(async () => {
  cases = await fixtureJson<Cases>("seed-simple/cases.json");
  await publishFixture("pe-cnn", "digits-cnn/digits_cnn.onnx");
  await publishFixture("pe-fixed", "onnx-conformance/test_matmul_2d/model.onnx");
  await publishFixture("pe-integer", "onnx-conformance/test_matmulinteger/model.onnx");
  await publishFixture("pe-simple", "seed-simple/simple_model.onnx", 1);
  await publishFixture("pe-simple", "seed-simple/simple_model.onnx", 2, { int8: true });
  const promoted = await api("/admin/models/pe-simple/promotions", {
    method: "POST",
    headers: CI,
    body: JSON.stringify({ version: 1, force: true, reason: "protocol edge tests" }),
  });
  expect(promoted.status, await promoted.clone().text()).toBe(200);
});

const simpleRequest = (row: number) => ({
  inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: cases.inputs[row] }],
});

async function compress(text: string, format: "gzip" | "deflate"): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream(format));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function expectOutputs(body: { outputs: { data: number[] }[] }, row: number) {
  const expected = cases.expected[row]!;
  expect(body.outputs[0]!.data).toHaveLength(expected.length);
  body.outputs[0]!.data.forEach((value, i) => expect(value).toBeCloseTo(expected[i]!, 5));
}

describe("server metadata", () => {
  it("answers GET /v2 and GET /v2/ alike, listing exactly the supported extensions", async () => {
    const plain = await api("/v2");
    const slashed = await api("/v2/");
    expect(plain.status).toBe(200);
    expect(slashed.status).toBe(200);
    const body = (await plain.json()) as { extensions: string[] };
    expect(await slashed.json()).toEqual(body);
    expect(body.extensions).toEqual([...SUPPORTED_EXTENSIONS]);
    expect(body.extensions).toEqual(
      expect.arrayContaining([
        "model_configuration",
        "model_repository",
        "parameters",
        "statistics",
      ]),
    );
  });
});

describe("parameters extension", () => {
  it("accepts custom and Triton's reserved request parameters, answering as without them", async () => {
    const response = await postJson("/v2/models/pe-simple/versions/1/infer", {
      ...simpleRequest(2),
      parameters: {
        my_custom_parameter: 42,
        priority: 1,
        timeout: 1000,
        sequence_id: 7,
        sequence_start: true,
        sequence_end: false,
      },
    });
    expect(response.status).toBe(200);
    expectOutputs((await response.json()) as { outputs: { data: number[] }[] }, 2);
  });
});

describe("model configuration extension", () => {
  it("describes a batching model as Triton does: dims without the batch axis", async () => {
    const response = await api("/v2/models/pe-cnn/config");
    expect(response.status).toBe(200);
    expect(response.headers.get("x-pinion-model")).toBe("pe-cnn@1");
    expect(await response.json()).toEqual({
      name: "pe-cnn",
      platform: "onnxruntime_onnx",
      backend: "onnxruntime",
      version_policy: { all: {} },
      max_batch_size: 1024,
      input: [{ name: "input", data_type: "TYPE_FP32", dims: [1, 8, 8] }],
      output: [{ name: "logits", data_type: "TYPE_FP32", dims: [10] }],
      parameters: { version: { string_value: "1" }, runtime: { string_value: "ort" } },
    });
  });

  it("gives a model without a dynamic first axis max_batch_size 0 and its full dims", async () => {
    const fixed = (await (await api("/v2/models/pe-fixed/config")).json()) as {
      max_batch_size: number;
      input: { dims: number[]; data_type: string }[];
      output: { dims: number[] }[];
    };
    const metadata = (await (await api("/v2/models/pe-fixed")).json()) as {
      inputs: { shape: number[] }[];
      outputs: { shape: number[] }[];
    };
    expect(fixed.max_batch_size).toBe(0);
    expect(fixed.input.map((t) => t.dims)).toEqual(metadata.inputs.map((t) => t.shape));
    expect(fixed.output.map((t) => t.dims)).toEqual(metadata.outputs.map((t) => t.shape));
    expect(fixed.input[0]!.dims.every((d) => d > 0)).toBe(true);
  });

  it("spells integer datatypes as Triton does", async () => {
    const config = (await (await api("/v2/models/pe-integer/config")).json()) as {
      input: { data_type: string }[];
      output: { data_type: string }[];
    };
    expect(config.input.map((t) => t.data_type)).toContain("TYPE_UINT8");
    expect(config.output.map((t) => t.data_type)).toEqual(["TYPE_INT32"]);
  });

  it("answers for pinned versions and aliases, and 404 for what does not exist", async () => {
    const v2 = (await (await api("/v2/models/pe-simple/versions/2/config")).json()) as {
      backend: string;
      parameters: { version: { string_value: string } };
    };
    expect(v2).toMatchObject({
      backend: "pinion_int8",
      parameters: { version: { string_value: "2" } },
    });
    const viaAlias = await api("/v2/models/pe-simple/aliases/production/config");
    expect(viaAlias.headers.get("x-pinion-alias")).toBe("production");
    expect(await viaAlias.json()).toMatchObject({ backend: "onnxruntime" });
    const missing = await api("/v2/models/pe-nothing/config");
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: "model 'pe-nothing' not found" });
    const noVersion = await api("/v2/models/pe-simple/versions/9/config");
    expect(noVersion.status).toBe(404);
  });
});

describe("model repository extension", () => {
  it("lists every published version READY, with the aliases that route to it", async () => {
    for (const body of [undefined, "", "{}", '{"ready":true}', '{"ready":false}']) {
      const response = await api("/v2/repository/index", {
        method: "POST",
        ...(body !== undefined ? { body } : {}),
      });
      expect(response.status).toBe(200);
      const index = (await response.json()) as {
        name: string;
        version: string;
        state: string;
        aliases?: string[];
      }[];
      const ours = index.filter((entry) => entry.name.startsWith("pe-"));
      expect(ours).toEqual([
        { name: "pe-cnn", version: "1", state: "READY", reason: "" },
        { name: "pe-fixed", version: "1", state: "READY", reason: "" },
        { name: "pe-integer", version: "1", state: "READY", reason: "" },
        { name: "pe-simple", version: "1", state: "READY", reason: "", aliases: ["production"] },
        { name: "pe-simple", version: "2", state: "READY", reason: "" },
      ]);
    }
  });

  it("refuses a malformed index request with 400", async () => {
    for (const body of ["{", '{"ready":"yes"}', '{"other":1}']) {
      const response = await api("/v2/repository/index", { method: "POST", body });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: string }).error).toMatch(
        /repository index request/,
      );
    }
  });

  it("load warms the version a plain request gets; unknown models 404", async () => {
    const loaded = await api("/v2/repository/models/pe-simple/load", { method: "POST" });
    expect(loaded.status).toBe(200);
    expect(await loaded.json()).toEqual({});
    expect(loaded.headers.get("x-pinion-model")).toBe("pe-simple@1");
    expect(loaded.headers.get("x-pinion-runtime")).toBe("ort");
    const missing = await api("/v2/repository/models/pe-nothing/load", { method: "POST" });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: "model 'pe-nothing' not found" });
  });

  it("load refuses Triton's config and file parameters: versions are never replaced", async () => {
    const response = await postJson("/v2/repository/models/pe-simple/load", {
      parameters: { config: "{}" },
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(
      /load parameters are not supported.*"config".*pinion publish/,
    );
  });

  it("unload is a 409 explaining that versions are immutable and always available", async () => {
    const response = await api("/v2/repository/models/pe-simple/unload", { method: "POST" });
    expect(response.status).toBe(409);
    expect(((await response.json()) as { error: string }).error).toMatch(
      /cannot be unloaded: published versions are immutable and always available/,
    );
    const missing = await api("/v2/repository/models/pe-nothing/unload", { method: "POST" });
    expect(missing.status).toBe(404);
    // The model still answers.
    const infer = await postJson("/v2/models/pe-simple/infer", simpleRequest(0));
    expect(infer.status).toBe(200);
  });
});

describe("statistics paths", () => {
  it("are not read as a model named 'stats': Triton's statistics answer", async () => {
    for (const path of [
      "/v2/models/stats",
      "/v2/models/pe-simple/stats",
      "/v2/models/pe-simple/versions/1/stats",
    ]) {
      // The OIP document has no statistics paths (they are Triton's): not validated against it.
      const response = await plainApi(path);
      expect(response.status, path).toBe(200);
      const body = (await response.json()) as { model_stats: { name: string; version: string }[] };
      expect(body.model_stats.length, path).toBeGreaterThan(0);
      expect(
        body.model_stats.some((s) => s.name === "stats"),
        path,
      ).toBe(false);
    }
  });
});

describe("compressed request bodies", () => {
  for (const format of ["gzip", "deflate"] as const) {
    it(`infers from a ${format} body, with the same numbers as plain JSON`, async () => {
      const body = await compress(JSON.stringify(simpleRequest(3)), format);
      const response = await api("/v2/models/pe-simple/infer", {
        method: "POST",
        headers: { "content-type": "application/json", "content-encoding": format },
        body,
      });
      expect(response.status).toBe(200);
      expectOutputs((await response.json()) as { outputs: { data: number[] }[] }, 3);
    });
  }

  it("applies the body limit to the decompressed size: a gzip bomb is a 413", async () => {
    // 4 MB of spaces (the limit here is 1 MB) compresses to a few KB.
    const bomb = await compress(" ".repeat(4_000_000), "gzip");
    expect(bomb.byteLength).toBeLessThan(50_000);
    const response = await api("/v2/models/pe-simple/infer", {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: bomb,
    });
    expect(response.status).toBe(413);
    expect(await response.json()).toEqual({
      error: `request body is larger than this server's limit of ${env.MAX_REQUEST_BYTES} bytes once decompressed`,
    });
    // The isolate is fine afterwards.
    expect((await postJson("/v2/models/pe-simple/infer", simpleRequest(1))).status).toBe(200);
  });

  it("bounds the compressed bytes too: empty deflate blocks past the limit are a 413", async () => {
    // A gzip member of 250 000 empty stored blocks (5 bytes each, no output), then a final one.
    const blocks = 250_000;
    const body = new Uint8Array(10 + blocks * 5 + 5 + 8);
    body.set([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    for (let i = 0; i <= blocks; i++) {
      body.set([i === blocks ? 1 : 0, 0, 0, 0xff, 0xff], 10 + i * 5);
    }
    expect(body.byteLength).toBeGreaterThan(Number(env.MAX_REQUEST_BYTES));
    const response = await api("/v2/models/pe-simple/infer", {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body,
    });
    expect(response.status).toBe(413);
    expect(await response.json()).toEqual({
      error: `request body is larger than this server's limit of ${env.MAX_REQUEST_BYTES} bytes`,
    });
  });

  it("refuses unknown encodings with 415 and corrupt ones with 400", async () => {
    const br = await api("/v2/models/pe-simple/infer", {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "br" },
      body: "whatever",
    });
    expect(br.status).toBe(415);
    expect(((await br.json()) as { error: string }).error).toMatch(/gzip or deflate, not "br"/);
    const corrupt = await api("/v2/models/pe-simple/infer", {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: JSON.stringify(simpleRequest(0)),
    });
    expect(corrupt.status).toBe(400);
    expect(((await corrupt.json()) as { error: string }).error).toMatch(/not valid gzip data/);
  });

  it("sends error bodies uncompressed, marked identity and no-transform, whatever Accept-Encoding says", async () => {
    const response = await api("/v2/models/pe-nothing/infer", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "accept-encoding": "gzip, deflate",
        "content-encoding": "gzip",
      },
      body: await compress(JSON.stringify(simpleRequest(0)), "gzip"),
    });
    expect(response.status).toBe(404);
    // `identity`: Cloudflare (and Miniflare's emulation of it) then leave the body as it is.
    expect(response.headers.get("content-encoding")).toBe("identity");
    expect(response.headers.get("cache-control")).toBe("no-transform");
    expect(JSON.parse(new TextDecoder().decode(await response.arrayBuffer()))).toEqual({
      error: "model 'pe-nothing' not found",
    });
  });
});

describe("non-finite outputs", () => {
  it("are written as the strings NaN, Infinity and -Infinity, which the document allows", async () => {
    // FP32's largest values overflow the model's sums: the outputs are not finite.
    const data = Array.from({ length: 10 }, (_, i) => (i % 2 ? -3.4e38 : 3.4e38));
    const response = await postJson("/v2/models/pe-simple/versions/1/infer", {
      inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data }],
    });
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).not.toContain("null");
    const values = (JSON.parse(text) as { outputs: { data: unknown[] }[] }).outputs[0]!.data;
    const nonFinite = values.filter((v) => typeof v === "string");
    expect(nonFinite.length).toBeGreaterThan(0);
    for (const v of nonFinite) expect(["NaN", "Infinity", "-Infinity"]).toContain(v);
    for (const v of values) if (typeof v === "number") expect(Number.isFinite(v)).toBe(true);
  });
});

describe("the OpenAPI check itself", () => {
  const json = (body: unknown, status = 200) =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json" },
    });

  it("accepts what the document allows", async () => {
    await expectConformant("GET", "/v2/", json({ name: "x", version: "1", extensions: [] }));
    await expectConformant(
      "POST",
      "/v2/models/m/infer",
      json({ model_name: "m", outputs: [{ name: "y", shape: [1], datatype: "FP32", data: [1] }] }),
    );
  });

  it("rejects what the document forbids", async () => {
    const cases: [string, string, Response][] = [
      ["GET", "/v2", json({ name: "x", version: "1" })],
      ["GET", "/v2/models/m", json({ name: "m", versions: [1], platform: "p" })],
      [
        "POST",
        "/v2/models/m/versions/1/infer",
        json({
          model_name: "m",
          outputs: [{ name: "y", shape: [1], datatype: "FP32", data: [null] }],
        }),
      ],
      ["POST", "/v2/models/m/aliases/production/infer", json({ error: 42 }, 404)],
    ];
    for (const [method, path, response] of cases) {
      await expect(expectConformant(method, path, response), path).rejects.toThrow(
        /does not match the OpenAPI document/,
      );
    }
  });
});
