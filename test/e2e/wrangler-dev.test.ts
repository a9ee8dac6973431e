/**
 * End to end, as a user runs it: `npm start`'s script seeds the demo models into
 * a fresh local R2 and starts `wrangler dev`; we call it over real HTTP, then stop
 * the whole process group we started (wrangler spawns workerd children).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { groupAlive, root, startDevServer, type DevServer } from "../../scripts/lib/dev-server";

describe("npm start + wrangler dev over real HTTP", () => {
  let server: DevServer;
  let base: string;
  let persistTo: string;

  beforeAll(async () => {
    persistTo = await mkdtemp(join(tmpdir(), "pinion-e2e-"));
    server = await startDevServer(persistTo);
    base = server.base;
  });

  afterAll(async () => {
    await server?.stop();
    if (persistTo) await rm(persistTo, { recursive: true, force: true });
  });

  it("seeds the four demo models", async () => {
    const output = server.output();
    expect(output).toMatch(/published: simple@1 \(ort, onnx 2218 bytes\)/);
    expect(output).toMatch(/published: simple@2 \(int8, int8 plan \d+ bytes\)/);
    expect(output).toMatch(/published: digits-mlp@1 \(ort, onnx 69602 bytes\)/);
    expect(output).toMatch(/published: digits-mlp@2 \(int8, int8 plan \d+ bytes\)/);
    expect(output).toMatch(/published: digits-cnn@1 \(ort, onnx 16317 bytes\)/);
    expect(output).toMatch(/published: digits-cnn@2 \(int8, int8 plan \d+ bytes\)/);
    expect(output).toMatch(/published: text-small@1 \(ort, onnx \d+ bytes\)/);
    expect(output).toMatch(/published: text-small@2 \(int8, int8 plan \d+ bytes\)/);
    for (const name of ["simple", "digits-mlp", "digits-cnn", "text-small"]) {
      const response = await fetch(`${base}/v2/models/${name}/ready`);
      expect(response.status, name).toBe(200);
    }
  });

  it("answers the seed model's cases as PyTorch does", async () => {
    const cases = JSON.parse(
      await readFile(new URL("fixtures/seed-simple/cases.json", root), "utf8"),
    ) as { inputs: number[][]; expected: number[][] };
    // Version 1 is the fp32 export on onnxruntime: PyTorch's numbers to 1e-5.
    const response = await fetch(`${base}/v2/models/simple/versions/1/infer`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "e2e-1" },
      body: JSON.stringify({
        id: "e2e",
        inputs: [{ name: "input", shape: [100, 10], datatype: "FP32", data: cases.inputs }],
      }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-pinion-model")).toBe("simple@1");
    expect(response.headers.get("x-pinion-runtime")).toBe("ort");
    expect(response.headers.get("x-request-id")).toBe("e2e-1");
    expect(response.headers.get("server-timing")).toMatch(/load;dur=.*compute;dur=/);
    const body = (await response.json()) as { id: string; outputs: { data: number[] }[] };
    expect(body.id).toBe("e2e");
    const expected = cases.expected.flat();
    const worst = Math.max(...body.outputs[0]!.data.map((v, i) => Math.abs(v - expected[i]!)));
    expect(worst).toBeLessThan(1e-5);
  });

  it("serves the int8 version by default, and onnxruntime when asked", async () => {
    const body = JSON.stringify({
      inputs: [{ name: "input", shape: [1, 64], datatype: "FP32", data: new Array(64).fill(0.5) }],
    });
    const int8 = await fetch(`${base}/v2/models/digits-mlp/infer`, { method: "POST", body });
    expect(int8.status).toBe(200);
    expect(int8.headers.get("x-pinion-model")).toBe("digits-mlp@2");
    expect(int8.headers.get("x-pinion-runtime")).toBe("int8");
    const ort = await fetch(`${base}/v2/models/digits-mlp/infer?runtime=ort`, {
      method: "POST",
      body,
    });
    expect(ort.headers.get("x-pinion-runtime")).toBe("ort");
  });

  it("answers the text model's INT64 token ids as PyTorch does", async () => {
    const testset = JSON.parse(
      await readFile(new URL("fixtures/text-small/testset.json", root), "utf8"),
    ) as { inputs: number[][]; logits: number[][] };
    const response = await fetch(`${base}/v2/models/text-small/versions/1/infer`, {
      method: "POST",
      body: JSON.stringify({
        inputs: [{ name: "input_ids", shape: [200, 8], datatype: "INT64", data: testset.inputs }],
      }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-pinion-runtime")).toBe("ort");
    const body = (await response.json()) as { outputs: { shape: number[]; data: number[] }[] };
    expect(body.outputs[0]!.shape).toEqual([200, 4]);
    const expected = testset.logits.flat();
    const worst = Math.max(...body.outputs[0]!.data.map((v, i) => Math.abs(v - expected[i]!)));
    expect(worst).toBeLessThan(1e-4);
  });

  it("answers bad input with 400 and keeps serving", async () => {
    const bad = await fetch(`${base}/v2/models/simple/infer`, { method: "POST", body: "{oops" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/not valid JSON/);
    const good = await fetch(`${base}/v2/models/digits-mlp`);
    expect(good.status).toBe(200);
  });

  it("re-seeding is idempotent: an unchanged model gets no new version", async () => {
    const { openLocalR2 } = await import("../../origin/stores/local-r2");
    const { seedDemoModels } = await import("../../scripts/lib/demo-models");
    // The running server holds the persistence files; a second Miniflare may read them too.
    const r2 = await openLocalR2(persistTo);
    const lines: string[] = [];
    try {
      await seedDemoModels(r2.store, (line) => lines.push(line));
    } finally {
      await r2.dispose();
    }
    expect(lines).toEqual([
      "up to date: simple (versions 1, 2)",
      "up to date: digits-mlp (versions 1, 2)",
      "up to date: digits-cnn (versions 1, 2)",
      "up to date: text-small (versions 1, 2)",
    ]);
  });

  it("stops completely when its process group is ended", async () => {
    await server.stop();
    expect(groupAlive(server.child.pid!)).toBe(false);
    await expect(fetch(`${base}/v2/health/live`)).rejects.toThrow();
  });
});
