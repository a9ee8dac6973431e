/**
 * The origin server over HTTP, as the edge and direct callers use it: the
 * reference fixtures published into a directory store, served by real
 * onnxruntime-node on a listening socket, checked against PyTorch's outputs,
 * and the edge contract's statuses (401, 404, 400, 412, 413), headers and
 * metrics.
 */
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DirectoryStore } from "../../origin/stores/directory-store";
import type { Manifest } from "../../core/registry/manifest";
import {
  argmax,
  digitsTestset,
  DIGITS_ONNX,
  fp32Request,
  maxAbsDiff,
  publish,
  SEED_ONNX,
  seedCases,
  startOrigin,
  type InferBody,
  type RunningOrigin,
} from "./helpers";

const TOKEN = "origin-test-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };
const MAX_REQUEST_BYTES = 1_000_000;

describe("origin server over HTTP (directory store)", () => {
  let dir: string;
  let store: DirectoryStore;
  let running: RunningOrigin;
  let seed: Manifest;
  let digits1: Manifest;
  let digits2: Manifest;
  let tampered: Manifest;

  const get = (path: string, headers: Record<string, string> = AUTH) =>
    fetch(`${running.url}${path}`, { headers });
  const post = (path: string, body: BodyInit, headers: Record<string, string> = AUTH) =>
    fetch(`${running.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pinion-origin-dir-"));
    store = new DirectoryStore(join(dir, "registry"));
    seed = await publish(store, "seed", SEED_ONNX);
    digits1 = await publish(store, "digits-mlp", DIGITS_ONNX);
    // Published for the int8 runtime at the edge; the origin must serve its ONNX graph.
    digits2 = await publish(store, "digits-mlp", DIGITS_ONNX, { quantize: "int8" });
    tampered = await publish(store, "tampered", SEED_ONNX);
    running = await startOrigin({
      store,
      token: TOKEN,
      maxRequestBytes: MAX_REQUEST_BYTES,
      tmpDir: dir,
    });
  });

  afterAll(async () => {
    await running?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers server metadata with the execution providers it runs on, and health probes", async () => {
    const metadata = await get("/v2", {});
    expect(metadata.status).toBe(200);
    expect(metadata.headers.get("x-pinion-runtime")).toBe("origin");
    expect(await metadata.json()).toMatchObject({
      name: "pinion",
      runtime: "origin",
      execution_providers: ["cpu"],
      execution_providers_requested: ["cpu"],
    });
    const live = await get("/v2/health/live", {});
    expect([live.status, await live.json()]).toEqual([200, { live: true }]);
    const ready = await get("/v2/health/ready", {});
    expect([ready.status, await ready.json()]).toEqual([200, { ready: true }]);
  });

  it("serves model metadata and per-version readiness, latest and pinned", async () => {
    const latest = await get("/v2/models/digits-mlp");
    expect(latest.status).toBe(200);
    expect(latest.headers.get("x-pinion-model")).toBe("digits-mlp@2");
    expect(await latest.json()).toEqual({
      name: "digits-mlp",
      versions: ["1", "2"],
      platform: "onnx_onnxv1",
      inputs: [{ name: "input", datatype: "FP32", shape: [-1, 64] }],
      outputs: [{ name: "logits", datatype: "FP32", shape: [-1, 10] }],
    });
    const pinned = await get("/v2/models/digits-mlp/versions/1");
    expect(pinned.headers.get("x-pinion-model")).toBe("digits-mlp@1");

    const ready = await get("/v2/models/digits-mlp/versions/1/ready", {
      ...AUTH,
      "x-pinion-artifact-sha256": digits1.artifacts.onnx.sha256,
    });
    expect(ready.status).toBe(200);
    expect(ready.headers.get("x-pinion-runtime")).toBe("origin");
    expect(await ready.json()).toEqual({ name: "digits-mlp", version: "1", ready: true });
  });

  it("infers the seed model with PyTorch's outputs, pinned by version and sha256", async () => {
    const cases = await seedCases();
    const response = await post(
      "/v2/models/seed/versions/1/infer",
      fp32Request(cases.inputs, { id: "batch-1" }),
      {
        ...AUTH,
        "x-pinion-artifact-sha256": seed.artifacts.onnx.sha256,
        "x-request-id": "edge-req-42",
      },
    );
    expect(response.status).toBe(200);
    expect(response.headers.get("x-pinion-model")).toBe("seed@1");
    expect(response.headers.get("x-pinion-runtime")).toBe("origin");
    expect(response.headers.get("x-request-id")).toBe("edge-req-42");
    expect(response.headers.get("server-timing")).toMatch(
      /resolve;dur=[\d.]+, decode;dur=[\d.]+, load;dur=[\d.]+, compute;dur=[\d.]+, total;dur=[\d.]+/,
    );
    const body = (await response.json()) as InferBody;
    expect(body).toMatchObject({ model_name: "seed", model_version: "1", id: "batch-1" });
    expect(body.outputs[0]).toMatchObject({ name: "output", datatype: "FP32", shape: [100, 10] });
    expect(maxAbsDiff(body.outputs[0]!.data, cases.expected.flat())).toBeLessThan(1e-5);
  });

  it("classifies the digits test set as PyTorch does, serving an int8-hinted version's ONNX graph", async () => {
    const testset = await digitsTestset();
    for (const manifest of [digits1, digits2]) {
      const response = await post(
        `/v2/models/digits-mlp/versions/${manifest.version}/infer`,
        fp32Request(testset.inputs),
        { ...AUTH, "x-pinion-artifact-sha256": manifest.artifacts.onnx.sha256 },
      );
      expect(response.status).toBe(200);
      expect(response.headers.get("x-pinion-runtime")).toBe("origin");
      const output = ((await response.json()) as InferBody).outputs[0]!;
      expect(output.shape).toEqual([360, 10]);
      // 1e-4 is the fixture's tolerance for fp32 logits; int8 would miss it by far.
      expect(maxAbsDiff(output.data, testset.logits.flat())).toBeLessThan(1e-4);
      const rows = testset.labels.map((_, i) => output.data.slice(i * 10, i * 10 + 10));
      const correct = rows.filter((row, i) => argmax(row) === testset.labels[i]).length;
      expect(correct / rows.length).toBe(testset.accuracy);
    }
    expect(digits2.runtime).toBe("int8");
  });

  it("generates a request id when none is sent, and logs W3C trace context with it", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const response = await get("/v2/models/seed/versions/1", {
      ...AUTH,
      traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
    });
    expect(response.status).toBe(200);
    const id = response.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const entry = running.logs.find((e) => e.event === "request" && e.requestId === id);
    expect(entry).toMatchObject({
      traceId,
      parentSpanId: "00f067aa0ba902b7",
      method: "GET",
      path: "/v2/models/seed/versions/1",
      status: 200,
      model: "seed@1",
    });
  });

  it("refuses with 412, naming both digests, when the pinned sha256 is not the version's", async () => {
    const expected = seed.artifacts.onnx.sha256;
    const other = digits1.artifacts.onnx.sha256;
    const pinned = { ...AUTH, "x-pinion-artifact-sha256": other };
    const cases = await seedCases();
    for (const response of [
      await post("/v2/models/seed/versions/1/infer", fp32Request(cases.inputs), pinned),
      await get("/v2/models/seed/versions/1", pinned),
      await get("/v2/models/seed/versions/1/ready", pinned),
    ]) {
      expect(response.status).toBe(412);
      expect(response.headers.get("x-pinion-model")).toBe("seed@1");
      const { error } = (await response.json()) as { error: string };
      expect(error).toContain(other);
      expect(error).toContain(expected);
    }
    // Hex digits compare without regard to case.
    const upper = await get("/v2/models/seed/versions/1", {
      ...AUTH,
      "x-pinion-artifact-sha256": expected.toUpperCase(),
    });
    expect(upper.status).toBe(200);
  });

  it("401s without the token or with a wrong one; /v2, health probes and /metrics stay open", async () => {
    const cases = await seedCases();
    const attempts: Record<string, string>[] = [
      {},
      { authorization: "Bearer not-the-token" },
      { authorization: TOKEN },
      { authorization: `Basic ${TOKEN}` },
    ];
    for (const headers of attempts) {
      const response = await post(
        "/v2/models/seed/versions/1/infer",
        fp32Request(cases.inputs),
        headers,
      );
      expect(response.status).toBe(401);
      expect(response.headers.get("www-authenticate")).toBe('Bearer realm="pinion-origin"');
      expect(await response.json()).toEqual({
        error: "missing or wrong origin token (Authorization: Bearer …)",
      });
    }
    expect((await get("/v2/models/seed", {})).status).toBe(401);
    expect((await get("/v2/models/nope/versions/1/ready", {})).status).toBe(401);
    for (const path of ["/v2", "/v2/health/live", "/v2/health/ready", "/metrics"]) {
      expect((await get(path, {})).status, path).toBe(200);
    }
  });

  it("404s for unknown models, versions and endpoints; 400 for malformed names; 405 for wrong methods", async () => {
    const cases: [string, number, RegExp][] = [
      ["/v2/models/nope", 404, /model 'nope' not found/],
      ["/v2/models/nope/versions/1/ready", 404, /model 'nope' not found/],
      ["/v2/models/seed/versions/9", 404, /model 'seed' has no version 9/],
      ["/v2/models/seed/versions/0", 400, /invalid model version "0"/],
      ["/v2/models/Seed", 400, /invalid model name "Seed"/],
      ["/v2/nothing-here", 404, /no such endpoint: GET \/v2\/nothing-here/],
      ["/v2/models/seed/versions/1/infer", 405, /GET is not allowed/],
    ];
    for (const [path, status, message] of cases) {
      const response = await get(path);
      expect(response.status, path).toBe(status);
      expect(((await response.json()) as { error: string }).error).toMatch(message);
    }
    const unknownVersion = await post(
      "/v2/models/seed/versions/7/infer",
      fp32Request([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]),
    );
    expect(unknownVersion.status).toBe(404);
  });

  it("400s for requests whose tensors do not fit the model", async () => {
    const row = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    const input = (fields: Record<string, unknown>) =>
      JSON.stringify({
        inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: row, ...fields }],
      });
    const cases: [string, RegExp][] = [
      [
        input({ shape: [1, 9], data: row.slice(0, 9) }),
        /has shape \[1, 9\]; the model expects \[-1, 10\]/,
      ],
      [input({ datatype: "INT32" }), /has datatype INT32; the model expects FP32/],
      [input({ data: row.slice(0, 9) }), /has 9 data elements but shape \[1, 10\] needs 10/],
      [input({ data: [...row.slice(0, 9), "x"] }), /element 9 is "x"; expected a number/],
      [input({ name: "other" }), /unknown input 'other'/],
      [JSON.stringify({ inputs: [] }), /at least one input is required/],
      [
        JSON.stringify({
          inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: row }],
          outputs: [{ name: "nope" }],
        }),
        /unknown output 'nope'/,
      ],
      [
        JSON.stringify({
          parameters: { runtime: "int8" },
          inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: row }],
        }),
        /runtime 'int8' is not served here/,
      ],
      ["{not json", /request body is not valid JSON/],
      ["", /request body is empty/],
    ];
    for (const [body, message] of cases) {
      const response = await post("/v2/models/seed/versions/1/infer", body);
      expect(response.status, body.slice(0, 80)).toBe(400);
      expect(((await response.json()) as { error: string }).error).toMatch(message);
    }
  });

  it("413s bodies over PINION_ORIGIN_MAX_REQUEST_BYTES, declared or streamed", async () => {
    const big = `{"inputs":[{"name":"input","shape":[1,10],"datatype":"FP32","data":[${"0,".repeat(MAX_REQUEST_BYTES / 2)}0]}]}`;
    const declared = await post("/v2/models/seed/versions/1/infer", big);
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as { error: string }).error).toBe(
      `request body is larger than this server's limit of ${MAX_REQUEST_BYTES} bytes`,
    );

    // No Content-Length: the limit is enforced while the body streams in.
    const bytes = new TextEncoder().encode(big);
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 64 * 1024) {
          controller.enqueue(bytes.subarray(i, i + 64 * 1024));
        }
        controller.close();
      },
    });
    const streamed = await fetch(`${running.url}/v2/models/seed/versions/1/infer`, {
      method: "POST",
      headers: AUTH,
      body: chunks,
      duplex: "half",
    } as RequestInit);
    expect(streamed.status).toBe(413);
  });

  it("refuses an artifact whose bytes do not match the manifest's sha256, and leaves no temporary files", async () => {
    // Same length, other bytes: only the digest can tell.
    const blob = store.pathOf(tampered.artifacts.onnx.key);
    await writeFile(blob, new Uint8Array(tampered.artifacts.onnx.bytes).fill(7));
    const response = await post(
      "/v2/models/tampered/versions/1/infer",
      fp32Request([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]),
    );
    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: string }).error).toBe(
      "onnx artifact of tampered@1 failed its sha256 check; refusing to serve it",
    );
    const ready = await get("/v2/models/tampered/versions/1/ready");
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ready: false });
    expect(running.logs).toContainEqual(
      expect.objectContaining({ event: "model_load_failed", model: "tampered", version: 1 }),
    );
    // Every artifact went through the temporary directory; none stays there.
    expect(await readdir(running.origin.tmpDir)).toEqual([]);
  });

  it("exports Prometheus metrics: requests by route and status, latency, load times, loaded models", async () => {
    const response = await get("/metrics", {});
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0.0.4/);
    const text = await response.text();
    const value = (series: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    const infer = 'route="/v2/models/{name}/versions/{version}/infer"';
    expect(value(`pinion_origin_requests_total{method="POST",${infer},status="200"}`)).toBe(3);
    expect(value(`pinion_origin_requests_total{method="POST",${infer},status="401"}`)).toBe(4);
    expect(value(`pinion_origin_requests_total{method="POST",${infer},status="412"}`)).toBe(1);
    expect(value(`pinion_origin_requests_total{method="POST",${infer},status="413"}`)).toBe(2);
    expect(value(`pinion_origin_requests_total{method="POST",${infer},status="400"}`)).toBe(10);
    expect(value(`pinion_origin_request_duration_seconds_count{method="POST",${infer}}`)).toBe(
      3 + 4 + 1 + 2 + 10 + 1 + 1, // and one 404 (unknown version), one 503 (tampered)
    );
    expect(value('pinion_origin_model_load_seconds_count{outcome="ok"}')).toBe(3);
    expect(value('pinion_origin_model_load_seconds_count{outcome="error"}')).toBe(2);
    expect(value("pinion_origin_models_loaded")).toBe(3);
    expect(value("pinion_origin_model_cache_bytes")).toBe(running.origin.cache.bytesHeld);
    expect(running.origin.cache.keys().sort()).toEqual([
      "digits-mlp@1/origin",
      "digits-mlp@2/origin",
      "seed@1/origin",
    ]);
  });
});
