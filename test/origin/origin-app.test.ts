/**
 * The origin app without a socket (`app.request`): the session cache's byte
 * budget, single-flight loads, auth turned off when no token is configured,
 * and the execution provider choice.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOriginApp, type OriginApp } from "../../origin/app";
import type { LogEntry } from "../../origin/log";
import { MEMORY_PER_MODEL_BYTE } from "../../origin/ort-node-runtime";
import { chooseProviders } from "../../origin/providers";
import { DirectoryStore } from "../../origin/stores/directory-store";
import type { Manifest } from "../../core/registry/manifest";
import { ModelRegistry } from "../../core/registry/registry";
import {
  DIGITS_ONNX,
  digitsTestset,
  fp32Request,
  publish,
  SEED_ONNX,
  type InferBody,
} from "./helpers";

describe("origin app", () => {
  let dir: string;
  let store: DirectoryStore;
  let digits: Manifest[];
  let seed: Manifest;
  const apps: OriginApp[] = [];

  async function app(options: { cacheBytes: number }, logs: LogEntry[] = []) {
    const origin = await createOriginApp({
      store,
      tmpDir: dir,
      log: (entry) => void logs.push(entry),
      ...options,
    });
    apps.push(origin);
    return origin;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pinion-origin-app-"));
    store = new DirectoryStore(join(dir, "registry"));
    seed = await publish(store, "seed", SEED_ONNX);
    digits = [
      await publish(store, "digits-mlp", DIGITS_ONNX),
      await publish(store, "digits-mlp", DIGITS_ONNX),
    ];
  });

  afterAll(async () => {
    for (const origin of apps) await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("serves without a token when none is configured, and warns about it at startup", async () => {
    const logs: LogEntry[] = [];
    const origin = await app({ cacheBytes: 1024 ** 3 }, logs);
    expect(logs).toContainEqual(expect.objectContaining({ level: "warn", event: "auth_disabled" }));
    const response = await origin.app.request("/v2/models/seed/versions/1/infer", {
      method: "POST",
      body: fp32Request([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-pinion-runtime")).toBe("origin");
  });

  it("keeps loaded sessions within the byte budget, least recently used out first", async () => {
    const perModel = digits[0]!.artifacts.onnx.bytes * MEMORY_PER_MODEL_BYTE;
    const seedBytes = seed.artifacts.onnx.bytes * MEMORY_PER_MODEL_BYTE;
    // Room for one digits session and the seed one, not for two digits sessions.
    const origin = await app({ cacheBytes: perModel + seedBytes + 100 });
    const testset = await digitsTestset();
    const infer = (path: string, rows: number[][]) =>
      origin.app.request(path, { method: "POST", body: fp32Request(rows) });

    expect((await infer("/v2/models/digits-mlp/versions/1/infer", testset.inputs)).status).toBe(
      200,
    );
    expect(
      (await infer("/v2/models/seed/versions/1/infer", [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])).status,
    ).toBe(200);
    expect(origin.cache.keys()).toEqual(["digits-mlp@1/origin", "seed@1/origin"]);
    expect((await infer("/v2/models/digits-mlp/versions/2/infer", testset.inputs)).status).toBe(
      200,
    );
    expect(origin.cache.keys()).toEqual(["seed@1/origin", "digits-mlp@2/origin"]);
    expect(origin.cache.bytesHeld).toBe(perModel + seedBytes);
  });

  it("refuses, before downloading, a version that could never fit the budget", async () => {
    const logs: LogEntry[] = [];
    const limit = digits[0]!.artifacts.onnx.bytes - 1;
    const origin = await app({ cacheBytes: limit * MEMORY_PER_MODEL_BYTE }, logs);
    const response = await origin.app.request("/v2/models/digits-mlp/versions/1/ready");
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({
      ready: false,
      error: `onnx artifact of digits-mlp@1 is ${limit + 1} bytes; this server's limit is ${limit}`,
    });
  });

  it("says what failed without the host's paths: a model onnxruntime cannot load, an unwritable temp dir", async () => {
    const broken = await new ModelRegistry(store).publish({
      name: "broken",
      platform: "onnx_onnxv1",
      inputs: [{ name: "input", datatype: "FP32", shape: [-1, 10] }],
      outputs: [{ name: "output", datatype: "FP32", shape: [-1, 10] }],
      runtime: "ort",
      placement: "origin",
      artifacts: {
        onnx: { bytes: new TextEncoder().encode("hello"), mediaType: "application/x-onnx" },
      },
    });
    const request = (origin: OriginApp, model: string, version: number) =>
      origin.app.request(`/v2/models/${model}/versions/${version}/infer`, {
        method: "POST",
        body: fp32Request([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]),
      });

    const logs: LogEntry[] = [];
    const origin = await app({ cacheBytes: 1024 ** 3 }, logs);
    const loadFailed = await request(origin, "broken", broken.version);
    expect(loadFailed.status).toBe(503);
    const loadError = ((await loadFailed.json()) as { error: string }).error;
    expect(loadError).toMatch(/^onnxruntime-node could not load broken@1: .*the model file/);
    expect(loadError).not.toContain(dir);
    expect(loadError).not.toContain(tmpdir());
    // The detail, path and all, goes to the server's log.
    expect(JSON.stringify(logs)).toContain(dir);

    // The origin's own temp directory vanishes after startup: writing the download fails.
    const parent = await mkdtemp(join(dir, "tmp-"));
    const unwritable = await createOriginApp({
      store,
      tmpDir: parent,
      cacheBytes: 1024 ** 3,
      log: () => {},
    });
    apps.push(unwritable);
    await rm(parent, { recursive: true });
    const writeFailed = await request(unwritable, "seed", 1);
    expect(writeFailed.status).toBe(503);
    const writeError = ((await writeFailed.json()) as { error: string }).error;
    expect(writeError).toMatch(/^could not fetch the onnx artifact of seed@1: .*ENOENT/);
    expect(writeError).not.toContain(dir);
  });

  it("loads a version once for concurrent first requests", async () => {
    const logs: LogEntry[] = [];
    const origin = await app({ cacheBytes: 1024 ** 3 }, logs);
    const testset = await digitsTestset();
    const responses = await Promise.all(
      Array.from({ length: 6 }, () =>
        origin.app.request("/v2/models/digits-mlp/versions/2/infer", {
          method: "POST",
          body: fp32Request(testset.inputs.slice(0, 8)),
        }),
      ),
    );
    for (const response of responses) {
      expect(response.status).toBe(200);
      expect(((await response.json()) as InferBody).outputs[0]!.shape).toEqual([8, 10]);
    }
    expect(logs.filter((e) => e.event === "model_loaded")).toEqual([
      expect.objectContaining({ model: "digits-mlp", version: 2 }),
    ]);
  });

  it("answers classification with the published labels, on onnxruntime-node", async () => {
    const names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
    const labels = join(dir, "labels.txt");
    await writeFile(labels, names.join("\n"));
    const manifest = await publish(store, "digits-labeled", DIGITS_ONNX, { labels });
    expect(manifest.artifacts.labels?.mediaType).toBe("text/plain; charset=utf-8");
    const origin = await app({ cacheBytes: 1024 ** 3 });
    const testset = await digitsTestset();
    const rows = testset.inputs.slice(0, 6);
    const response = await origin.app.request("/v2/models/digits-labeled/versions/1/infer", {
      method: "POST",
      body: fp32Request(rows, {
        outputs: [{ name: "logits", parameters: { classification: 3 } }],
      }),
    });
    expect(response.status).toBe(200);
    const output = ((await response.json()) as { outputs: { shape: number[]; data: string[] }[] })
      .outputs[0]!;
    expect(output.shape).toEqual([6, 3]);
    output.data.forEach((entry, i) => {
      const logits = testset.logits[Math.floor(i / 3)]!;
      const order = logits.map((_, j) => j).sort((a, b) => logits[b]! - logits[a]!);
      const [score, index, label] = entry.split(":");
      expect(Number(index)).toBe(order[i % 3]);
      expect(Math.abs(Number(score) - logits[Number(index)]!)).toBeLessThan(1e-4);
      expect(label).toBe(names[Number(index)]);
    });
  });
});

describe("execution providers", () => {
  it("falls back to the CPU when a configured provider cannot run here, and says why", async () => {
    const choice = await chooseProviders(["cuda", "cpu"]);
    expect(choice.requested).toEqual(["cuda", "cpu"]);
    expect(choice.active.at(-1)).toBe("cpu");
    // Either CUDA runs here, or it is reported as failed with onnxruntime's reason.
    const cudaFailed = choice.failed.find((f) => f.provider === "cuda");
    expect(choice.active.includes("cuda")).toBe(cudaFailed === undefined);
    // npm installs onnxruntime-node without its CUDA provider (the install script fetches it).
    const bin = join(
      dirname(createRequire(import.meta.url).resolve("onnxruntime-node")),
      "../bin/napi-v6/linux/x64",
    );
    if (!existsSync(join(bin, "libonnxruntime_providers_cuda.so"))) {
      expect(choice.active).toEqual(["cpu"]);
      expect(cudaFailed?.reason).toMatch(/cuda/i);
    }
  });

  it("adds the CPU when it is not configured, and refuses providers onnxruntime does not know", async () => {
    expect((await chooseProviders(["cpu"])).active).toEqual(["cpu"]);
    const cudaOnly = await chooseProviders(["cuda"]);
    expect(cudaOnly.active).toEqual(cudaOnly.failed.length === 0 ? ["cuda", "cpu"] : ["cpu"]);
    await expect(chooseProviders(["bogus", "cpu"])).rejects.toThrow(
      /unknown execution provider 'bogus' in PINION_ORIGIN_PROVIDERS; this onnxruntime-node knows cpu, .*cuda/,
    );
  });
});
