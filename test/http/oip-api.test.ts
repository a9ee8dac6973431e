import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { SUPPORTED_EXTENSIONS } from "../../core/protocol/extensions";
import { argmax, fixtureJson, publishFixture } from "../worker/helpers";
// Every response these tests receive is checked against the OIP OpenAPI document.
import { validatedApi as api, validatedPostJson as postJson } from "../worker/openapi";

interface SeedCases {
  input_name: string;
  output_name: string;
  inputs: number[][];
  expected: number[][];
}
interface TestSet {
  input_name: string;
  output_name: string;
  inputs: unknown[];
  labels: number[];
  logits: number[][];
}
interface InferBody {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: { name: string; datatype: string; shape: number[]; data: number[] }[];
  error?: string;
}

beforeAll(async () => {
  await publishFixture("simple", "seed-simple/simple_model.onnx");
  await publishFixture("digits-mlp", "digits-mlp/digits_mlp.onnx");
  await publishFixture("digits-cnn", "digits-cnn/digits_cnn.onnx");
  await publishFixture("pinned", "seed-simple/simple_model.onnx", 1);
  await publishFixture("pinned", "seed-simple/simple_model.onnx", 2);
});

const row = (data: number[], shape = [1, data.length]) => ({
  inputs: [{ name: "input", shape, datatype: "FP32", data }],
});

describe("health and server metadata", () => {
  it("answers liveness, readiness and server metadata", async () => {
    const live = await api("/v2/health/live");
    expect(live.status).toBe(200);
    expect(await live.json()).toEqual({ live: true });
    const ready = await api("/v2/health/ready");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true });
    const head = await api("/v2/health/live", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    const meta = await api("/v2");
    expect(await meta.json()).toEqual({
      name: "pinion",
      version: "0.1.0",
      extensions: [...SUPPORTED_EXTENSIONS],
    });
  });

  it("puts a request id and Server-Timing on every response", async () => {
    const generated = await api("/v2/health/live");
    expect(generated.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    const echoed = await api("/v2/nowhere", { headers: { "x-request-id": "client-42" } });
    expect(echoed.status).toBe(404);
    expect(echoed.headers.get("x-request-id")).toBe("client-42");
    for (const response of [generated, echoed]) {
      expect(response.headers.get("server-timing")).toMatch(/load;dur=[\d.]+.*compute;dur=[\d.]+/);
    }
  });
});

describe("model metadata and readiness", () => {
  it("describes a model with its versions, platform and dynamic dims", async () => {
    const response = await api("/v2/models/digits-cnn");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      name: "digits-cnn",
      versions: ["1"],
      platform: "onnx_onnxv1",
      inputs: [{ name: "input", datatype: "FP32", shape: [-1, 1, 8, 8] }],
      outputs: [{ name: "logits", datatype: "FP32", shape: [-1, 10] }],
    });
    const pinned = await api("/v2/models/pinned/versions/1");
    expect(await pinned.json()).toMatchObject({ name: "pinned", versions: ["1", "2"] });
  });

  it("loads the model on a readiness check", async () => {
    const response = await api("/v2/models/simple/ready");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ name: "simple", version: "1", ready: true });
    expect(response.headers.get("x-pinion-runtime")).toBe("ort");
    const versioned = await api("/v2/models/pinned/versions/1/ready");
    expect(await versioned.json()).toEqual({ name: "pinned", version: "1", ready: true });
  });

  it("answers 404 for unknown models and versions, 400 for malformed ones", async () => {
    const cases: [string, number, RegExp][] = [
      ["/v2/models/nope", 404, /model 'nope' not found/],
      ["/v2/models/nope/ready", 404, /model 'nope' not found/],
      ["/v2/models/simple/versions/9", 404, /model 'simple' has no version 9/],
      ["/v2/models/simple/versions/9/ready", 404, /no version 9/],
      ["/v2/models/simple/versions/latest", 400, /invalid model version "latest"/],
      ["/v2/models/Simple", 400, /invalid model name "Simple"/],
      ["/v2/models/..%2F..%2Fsecrets", 400, /invalid model name "..\/..\/secrets"/],
      // URL parsing resolves an encoded ".." segment before routing: it never names a model.
      // (`/v2/models/%2e%2e` is `/v2/`, the server metadata, so this goes one segment further.)
      ["/v2/models/%2e%2e/ready", 404, /^no such endpoint: GET \/v2\/ready;/],
      ["/v2/models/m%C3%B6del", 400, /invalid model name "m\u00f6del"/],
    ];
    for (const [path, status, message] of cases) {
      const response = await api(path);
      expect(response.status, path).toBe(status);
      expect(((await response.json()) as { error: string }).error, path).toMatch(message);
    }
  });
});

describe("inference", () => {
  it("matches PyTorch on all 100 seed cases, one request each, flat and nested", async () => {
    const cases = await fixtureJson<SeedCases>("seed-simple/cases.json");
    let worst = 0;
    for (const [i, input] of cases.inputs.entries()) {
      const body = i % 2 === 0 ? row(input) : row([input] as unknown as number[], [1, 10]);
      const response = await postJson("/v2/models/simple/infer", body);
      expect(response.status).toBe(200);
      const result = (await response.json()) as InferBody;
      expect(result.outputs[0]!.shape).toEqual([1, 10]);
      result.outputs[0]!.data.forEach((v, j) => {
        worst = Math.max(worst, Math.abs(v - cases.expected[i]![j]!));
      });
    }
    expect(worst).toBeLessThan(1e-5);
  });

  it("answers a batch of all 100 seed cases at once", async () => {
    const cases = await fixtureJson<SeedCases>("seed-simple/cases.json");
    const response = await postJson("/v2/models/simple/infer", {
      inputs: [{ name: "input", shape: [100, 10], datatype: "FP32", data: cases.inputs }],
    });
    const result = (await response.json()) as InferBody;
    expect(result.outputs[0]!.shape).toEqual([100, 10]);
    const expected = cases.expected.flat();
    result.outputs[0]!.data.forEach((v, j) =>
      expect(Math.abs(v - expected[j]!)).toBeLessThan(1e-5),
    );
  });

  for (const [model, fixture, shapeOf] of [
    ["digits-mlp", "digits-mlp/testset.json", (n: number) => [n, 64]],
    ["digits-cnn", "digits-cnn/testset.json", (n: number) => [n, 1, 8, 8]],
  ] as const) {
    it(`${model}: 360 test samples in batches score 350/360 with logits within 1e-4`, async () => {
      const set = await fixtureJson<TestSet>(fixture);
      let correct = 0;
      let worst = 0;
      const batchSize = 45;
      for (let start = 0; start < set.inputs.length; start += batchSize) {
        const inputs = set.inputs.slice(start, start + batchSize);
        const response = await postJson(`/v2/models/${model}/infer`, {
          inputs: [
            { name: "input", shape: shapeOf(inputs.length), datatype: "FP32", data: inputs },
          ],
        });
        expect(response.status).toBe(200);
        const logits = ((await response.json()) as InferBody).outputs[0]!;
        expect(logits.name).toBe("logits");
        expect(logits.shape).toEqual([inputs.length, 10]);
        for (let i = 0; i < inputs.length; i++) {
          const mine = logits.data.slice(i * 10, i * 10 + 10);
          if (argmax(mine) === set.labels[start + i]) correct++;
          mine.forEach(
            (v, j) => (worst = Math.max(worst, Math.abs(v - set.logits[start + i]![j]!))),
          );
        }
      }
      expect(correct / set.inputs.length).toBeCloseTo(0.97222, 5);
      expect(correct).toBe(350);
      expect(worst).toBeLessThan(1e-4);
    });
  }

  it("echoes the id, names the version that ran, and says what served it", async () => {
    const response = await postJson(
      "/v2/models/pinned/infer",
      { id: "req-7", ...row(new Array(10).fill(0.5)) },
      { "x-request-id": "trace-abc" },
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as InferBody;
    expect(body.id).toBe("req-7");
    expect(body.model_name).toBe("pinned");
    expect(body.model_version).toBe("2");
    expect(response.headers.get("x-pinion-model")).toBe("pinned@2");
    expect(response.headers.get("x-pinion-runtime")).toBe("ort");
    expect(response.headers.get("x-request-id")).toBe("trace-abc");
    expect(response.headers.get("server-timing")).toMatch(
      /resolve;dur=[\d.]+, decode;dur=[\d.]+, load;dur=[\d.]+, compute;dur=[\d.]+, total;dur=[\d.]+/,
    );

    const pinned = await postJson(
      "/v2/models/pinned/versions/1/infer",
      row(new Array(10).fill(0.5)),
    );
    expect(((await pinned.json()) as InferBody).model_version).toBe("1");
    expect(pinned.headers.get("x-pinion-model")).toBe("pinned@1");
    expect(body.id).toBeDefined();
  });

  it("returns only the requested outputs, with their parameters", async () => {
    const response = await postJson("/v2/models/simple/infer", {
      ...row(new Array(10).fill(1)),
      outputs: [{ name: "output", parameters: { content_type: "np" } }],
    });
    const body = (await response.json()) as InferBody & {
      outputs: { parameters?: Record<string, unknown> }[];
    };
    expect(body.outputs).toHaveLength(1);
    expect(body.outputs[0]!.parameters).toEqual({ content_type: "np" });
    expect(body).not.toHaveProperty("id");
  });
});

describe("errors", () => {
  const good = () => row(new Array(10).fill(0.25));
  const input = (over: Record<string, unknown>) => ({
    inputs: [
      { name: "input", shape: [1, 10], datatype: "FP32", data: new Array(10).fill(0), ...over },
    ],
  });

  const badRequests: [string, unknown, RegExp][] = [
    ["malformed JSON", '{"inputs": [', /request body is not valid JSON/],
    ["empty body", "", /request body is empty/],
    [
      "NaN literal",
      '{"inputs":[{"name":"input","shape":[1,1],"datatype":"FP32","data":[NaN]}]}',
      /not valid JSON/,
    ],
    ["not an object", "[1,2,3]", /invalid inference request: request body/],
    ["no inputs", { inputs: [] }, /inputs: at least one input is required/],
    ["inputs not a list", { inputs: "x" }, /invalid inference request: inputs/],
    ["unknown input", input({ name: "pixels" }), /unknown input 'pixels'; simple@1 takes 'input'/],
    [
      "duplicate input",
      { inputs: [...input({}).inputs, ...input({}).inputs] },
      /given more than once/,
    ],
    ["wrong datatype", input({ datatype: "INT32" }), /datatype INT32; the model expects FP32/],
    ["unknown datatype", input({ datatype: "FLOAT32" }), /unknown datatype 'FLOAT32'/],
    ["shape mismatch", input({ shape: [2, 5] }), /shape \[2, 5\]; the model expects \[-1, 10\]/],
    ["rank mismatch", input({ shape: [10] }), /the model expects \[-1, 10\]/],
    [
      "count mismatch",
      input({ data: [1, 2, 3] }),
      /has 3 data elements but shape \[1, 10\] needs 10/,
    ],
    [
      "non-numeric data",
      input({ data: ["a", ...new Array(9).fill(0)] }),
      /element 0 is "a"; expected a number/,
    ],
    ["null data", input({ data: [null, ...new Array(9).fill(0)] }), /element 0 is null/],
    [
      "infinity",
      '{"inputs":[{"name":"input","shape":[1,1],"datatype":"FP32","data":[1e999]}]}',
      /null|finite/,
    ],
    ["overflowing FP32", input({ data: [1e39, ...new Array(9).fill(0)] }), /representable as FP32/],
    [
      "negative dim",
      input({ shape: [-1, 10] }),
      /shape\[0\] is -1; dimensions must be integers >= 0/,
    ],
    ["absurd dims", input({ shape: [1e8, 1e8] }), /has 10000000000000000 elements; at most 500000/],
    ["fractional dim", input({ shape: [1.5, 10] }), /shape\[0\] is 1.5/],
    [
      "missing data",
      { inputs: [{ name: "input", shape: [1, 10], datatype: "FP32" }] },
      /data must be a JSON array/,
    ],
    [
      "unknown output",
      { ...good(), outputs: [{ name: "probs" }] },
      /unknown output 'probs'; simple@1 produces 'output'/,
    ],
    [
      "duplicate output",
      { ...good(), outputs: [{ name: "output" }, { name: "output" }] },
      /requested more than once/,
    ],
    [
      "bad parameters",
      { ...good(), parameters: { a: { b: 1 } } },
      /invalid inference request: parameters.a/,
    ],
    ["bad id", { ...good(), id: 7 }, /invalid inference request: id/],
  ];

  for (const [label, body, message] of badRequests) {
    it(`400 for ${label}`, async () => {
      const response = await postJson("/v2/models/simple/infer", body);
      expect(response.status).toBe(400);
      expect(response.headers.get("content-type")).toMatch(/application\/json/);
      const { error } = (await response.json()) as { error: string };
      if (label === "infinity") {
        // JSON.parse reads 1e999 as Infinity, which FP32 cannot hold.
        expect(error).toMatch(/element 0 is null; expected a finite number representable as FP32/);
      } else {
        expect(error).toMatch(message);
      }
      expect(response.headers.get("x-pinion-model")).toBe("simple@1");
    });
  }

  it("404 for an unknown model or version, 405 for a wrong method, 404 for no route", async () => {
    const unknownModel = await postJson("/v2/models/ghost/infer", good());
    expect(unknownModel.status).toBe(404);
    expect(await unknownModel.json()).toEqual({ error: "model 'ghost' not found" });
    const unknownVersion = await postJson("/v2/models/simple/versions/3/infer", good());
    expect(unknownVersion.status).toBe(404);

    const wrongMethod = await api("/v2/models/simple/infer");
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("POST");
    expect(((await wrongMethod.json()) as { error: string }).error).toMatch(/GET is not allowed/);
    const postHealth = await api("/v2/health/live", { method: "POST" });
    expect(postHealth.status).toBe(405);
    expect(postHealth.headers.get("allow")).toBe("GET, HEAD");

    const noRoute = await api("/v1/models/simple:predict", { method: "POST" });
    expect(noRoute.status).toBe(404);
    expect(((await noRoute.json()) as { error: string }).error).toMatch(/no such endpoint/);
  });

  it("413 for a body over the limit, by Content-Length or while streaming", async () => {
    const big = JSON.stringify({
      inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: [] }],
      pad: "x".repeat(1_000_001),
    });
    const declared = await postJson("/v2/models/simple/infer", big);
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as { error: string }).error).toBe(
      "request body is larger than this server's limit of 1000000 bytes",
    );

    // No Content-Length: the limit is enforced while the stream is read.
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > 4_000_000) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const streamed = await api("/v2/models/simple/infer", { method: "POST", body: stream });
    expect(streamed.status).toBe(413);
    expect(sent).toBeLessThan(4_000_000);
  });

  it("503, never the tampered bytes, when an artifact fails its sha256 check", async () => {
    const manifest = await publishFixture("tampered", "seed-simple/simple_model.onnx");
    const object = await env.MODELS.get(manifest.artifacts.onnx.key);
    const bytes = new Uint8Array(await object!.arrayBuffer());
    bytes[100]! ^= 0x01;
    await env.MODELS.put(manifest.artifacts.onnx.key, bytes);

    const response = await postJson("/v2/models/tampered/infer", good());
    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: string }).error).toMatch(
      /onnx artifact of tampered@1 failed its sha256 check; refusing to serve it/,
    );
    const ready = await api("/v2/models/tampered/ready");
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ name: "tampered", ready: false });
  });

  it("survives a burst of bad requests; the next good one succeeds", async () => {
    const bad = badRequests.map(([, body]) => postJson("/v2/models/simple/infer", body));
    const more = Array.from({ length: 20 }, (_, i) =>
      postJson("/v2/models/simple/infer", input({ shape: [i + 2, 10] })),
    );
    const responses = await Promise.all([...bad, ...more]);
    for (const response of responses) expect(response.status).toBe(400);

    const response = await postJson("/v2/models/simple/infer", good());
    expect(response.status).toBe(200);
    expect(((await response.json()) as InferBody).outputs[0]!.data).toHaveLength(10);
  });
});

describe("errors echo at most a little of the request", () => {
  const long = (length: number) => "X".repeat(length);
  const request = (over: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    inputs: [
      { name: "input", shape: [1, 10], datatype: "FP32", data: new Array(10).fill(0), ...over },
    ],
    ...extra,
  });
  const cases: [string, string, unknown, RegExp][] = [
    [
      "a 100 KB datatype",
      "/v2/models/simple/infer",
      request({ datatype: long(100_000) }),
      /^input 'input' has unknown datatype 'X{64}… \(100000 chars\)'; expected one of/,
    ],
    [
      "a 900 KB string element",
      "/v2/models/simple/infer",
      request({ data: [long(900_000), ...new Array(9).fill(0)] }),
      /^input 'input' element 0 is "X{64}"… \(a string of 900000 chars\); expected a number/,
    ],
    [
      "a 100 KB input name",
      "/v2/models/simple/infer",
      request({ name: long(100_000) }),
      /^unknown input 'X{64}… \(100000 chars\)'; simple@1 takes 'input'/,
    ],
    [
      "a 100 KB output name",
      "/v2/models/simple/infer",
      request({}, { outputs: [{ name: long(100_000) }] }),
      /^unknown output 'X{64}… \(100000 chars\)'/,
    ],
    [
      "a 100 KB parameter name",
      "/v2/models/simple/infer",
      request({}, { parameters: { [long(100_000)]: { nested: true } } }),
      /^invalid inference request: parameters\.X{53}… \(100011 chars\): /,
    ],
    [
      "a 100 KB runtime",
      `/v2/models/simple/infer?runtime=${long(100_000)}`,
      request({}),
      /^unknown runtime 'X{64}… \(100000 chars\)'; use 'ort' or 'int8'/,
    ],
  ];
  for (const [label, path, body, message] of cases) {
    it(`400 with a short error for ${label}`, async () => {
      const response = await postJson(path, body);
      expect(response.status).toBe(400);
      const text = await response.text();
      expect(text.length).toBeLessThan(1024);
      expect((JSON.parse(text) as { error: string }).error).toMatch(message);
    });
  }
});
