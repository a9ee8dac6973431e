/**
 * The binary tensor data extension on the GPU origin: the origin (real
 * onnxruntime-node on a listening socket) speaks it, and the edge's
 * `OriginForwarder` passes a binary body and its `Inference-Header-Content-Length`
 * through unchanged, and the binary answer back with its header.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DirectoryStore } from "../../origin/stores/directory-store";
import type { Manifest } from "../../core/registry/manifest";
import { ModelRegistry } from "../../core/registry/registry";
import { FORWARDER_DEFAULTS } from "../../core/serving/config";
import { DataPlane } from "../../core/serving/data-plane";
import { Executor } from "../../core/serving/executor";
import { ModelCache } from "../../core/serving/model-cache";
import { OriginForwarder } from "../../core/serving/origin-forwarder";
import { ModelResolver } from "../../core/serving/resolver";
import { Trace } from "../../core/serving/trace";
import {
  maxAbsDiff,
  publish,
  SEED_ONNX,
  seedCases,
  startOrigin,
  type RunningOrigin,
} from "./helpers";

const TOKEN = "origin-binary-token";

/** A request for `rows` as binary FP32, asking for the output binary, laid out byte by byte. */
function binaryRequest(rows: number[][]): { body: Uint8Array<ArrayBuffer>; headerLength: number } {
  const values = rows.flat();
  const header = new TextEncoder().encode(
    JSON.stringify({
      inputs: [
        {
          name: "input",
          shape: [rows.length, rows[0]!.length],
          datatype: "FP32",
          parameters: { binary_data_size: values.length * 4 },
        },
      ],
      outputs: [{ name: "output", parameters: { binary_data: true } }],
    }),
  );
  const body = new Uint8Array(header.length + values.length * 4);
  body.set(header);
  const view = new DataView(body.buffer, header.length);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return { body, headerLength: header.length };
}

/** The binary answer's header and its one FP32 output. */
async function readAnswer(response: Response) {
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("application/octet-stream");
  const headerLength = Number(response.headers.get("inference-header-content-length"));
  const bytes = new Uint8Array(await response.arrayBuffer());
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(0, headerLength))) as {
    outputs: { shape: number[]; parameters: { binary_data_size: number } }[];
  };
  const size = header.outputs[0]!.parameters.binary_data_size;
  expect(bytes.length).toBe(headerLength + size);
  const view = new DataView(bytes.buffer, bytes.byteOffset + headerLength, size);
  const values = Array.from({ length: size / 4 }, (_, i) => view.getFloat32(i * 4, true));
  return { header, values };
}

describe("binary tensor data on the origin", () => {
  let dir: string;
  let running: RunningOrigin;
  let seed: Manifest;
  let registry: ModelRegistry;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pinion-origin-binary-"));
    const store = new DirectoryStore(join(dir, "registry"));
    seed = await publish(store, "seed", SEED_ONNX);
    await publish(store, "seed-on-origin", SEED_ONNX, { placement: "origin" });
    registry = new ModelRegistry(store);
    running = await startOrigin({
      store,
      token: TOKEN,
      maxRequestBytes: 1_000_000,
      tmpDir: dir,
    });
  });

  afterAll(async () => {
    await running?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers a binary request with a binary output, as PyTorch does", async () => {
    const cases = await seedCases();
    const { body, headerLength } = binaryRequest(cases.inputs.slice(0, 20));
    const response = await fetch(`${running.url}/v2/models/seed/versions/1/infer`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${TOKEN}`,
        "content-type": "application/octet-stream",
        "inference-header-content-length": String(headerLength),
      },
      body,
    });
    const { header, values } = await readAnswer(response);
    expect(header.outputs[0]!.shape).toEqual([20, 10]);
    expect(maxAbsDiff(values, cases.expected.slice(0, 20).flat())).toBeLessThan(1e-5);
  });

  it("is reached through the edge's forwarder with the body and header passed on unchanged", async () => {
    const cases = await seedCases();
    const forwarder = new OriginForwarder({
      ...FORWARDER_DEFAULTS,
      url: running.url,
      token: TOKEN,
    });
    const { body, headerLength } = binaryRequest(cases.inputs.slice(20, 25));
    const response = await forwarder.forward({
      endpoint: "infer",
      manifest: seed,
      body,
      contentType: "application/octet-stream",
      inferenceHeaderLength: String(headerLength),
      requestId: "binary-forward",
    });
    const { header, values } = await readAnswer(response);
    expect(header.outputs[0]!.shape).toEqual([5, 10]);
    expect(maxAbsDiff(values, cases.expected.slice(20, 25).flat())).toBeLessThan(1e-5);
    // Without the header, the same bytes are not a JSON request: the origin's 400 comes back.
    const unframed = await forwarder.forward({
      endpoint: "infer",
      manifest: seed,
      body,
      contentType: "application/octet-stream",
      requestId: "binary-forward-unframed",
    });
    expect(unframed.status).toBe(400);
    expect(((await unframed.json()) as { error: string }).error).toMatch(/not valid JSON/);
  });

  it("is relayed by the edge's data plane for an origin-placed version, body and header unchanged", async () => {
    const cases = await seedCases();
    const forwarder = new OriginForwarder({
      ...FORWARDER_DEFAULTS,
      url: running.url,
      token: TOKEN,
    });
    // The edge's composition, with no runtime of its own: origin-placed versions never need one.
    const plane = new DataPlane({
      resolver: new ModelResolver(registry, {
        versionListTtlMs: 0,
        aliasTtlMs: 0,
        maxArtifactBytes: 1e8,
      }),
      executor: new Executor(registry, [], new ModelCache(1e8), { maxRequestBytes: 1_000_000 }),
      forwarder,
      maxRequestBytes: 1_000_000,
    });
    const { body, headerLength } = binaryRequest(cases.inputs.slice(30, 33));
    const answer = await plane.infer(
      {
        reference: { name: "seed-on-origin", key: "k" },
        body: {
          length: body.length,
          bytes: async () => body,
          stream: () => new Response(body).body,
        },
        contentType: "application/octet-stream",
        inferenceHeaderLength: String(headerLength),
        requestId: "binary-relay",
      },
      new Trace(),
    );
    expect(answer.kind).toBe("relayed");
    if (answer.kind !== "relayed") return;
    const { header, values } = await readAnswer(
      new Response(answer.body, { status: answer.status, headers: answer.headers }),
    );
    expect(header.outputs[0]!.shape).toEqual([3, 10]);
    expect(maxAbsDiff(values, cases.expected.slice(30, 33).flat())).toBeLessThan(1e-5);
  });
});
