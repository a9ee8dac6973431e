/**
 * The origin's object stores against the registry's `ObjectStore` contract,
 * side by side with Miniflare's R2 (the reference for what R2 does): the
 * directory store, the S3 store talking to s3rver (an S3 emulator) over HTTP,
 * and wrangler's local R2 state. Each then serves a published version through
 * a real origin.
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DirectoryStore } from "../../origin/stores/directory-store";
import { S3Store } from "../../origin/stores/s3-store";
import { openLocalR2 } from "../../origin/stores/local-r2";
import { ModelRegistry } from "../../core/registry/registry";
import type { ObjectStore } from "../../core/registry/store";
import {
  fp32Request,
  maxAbsDiff,
  publish,
  SEED_ONNX,
  seedCases,
  startOrigin,
  type InferBody,
} from "./helpers";

/** An S3 emulator on a free port, with the bucket the stores use. */
async function startS3rver(dir: string): Promise<{ s3: S3rver; port: number }> {
  const s3 = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: "pinion-models" }],
  });
  const { port } = await s3.run();
  return { s3, port };
}

interface OpenedStore {
  store: ObjectStore;
  close(): Promise<void>;
}

interface StoreCase {
  name: string;
  open(dir: string): Promise<OpenedStore>;
  /**
   * Whether the store itself refuses a create-only put over an existing key and
   * a body whose sha256 is not the one given. R2 does both; s3rver emulates
   * neither (real S3 and R2 honour `If-None-Match: *` and `x-amz-content-sha256`).
   */
  enforcesWrites: boolean;
  /**
   * Whether delimited listings see keys nested more than one level below the
   * prefix, and `max-keys` pages. R2 does; s3rver 3.7's filesystem walk skips
   * such directories and fails paged listings, so on s3rver only what the
   * origin lists (a model's versions, one level deep) is checked.
   */
  fullListing: boolean;
}

const CASES: StoreCase[] = [
  {
    name: "directory",
    open: async (dir) => ({ store: new DirectoryStore(dir), close: async () => {} }),
    enforcesWrites: true,
    fullListing: true,
  },
  {
    name: "S3 API (s3rver)",
    open: async (dir) => {
      const { s3, port } = await startS3rver(dir);
      const store = new S3Store({
        endpoint: `http://127.0.0.1:${port}`,
        bucket: "pinion-models",
        accessKeyId: "S3RVER",
        secretAccessKey: "S3RVER",
      });
      return { store, close: () => s3.close() };
    },
    enforcesWrites: false,
    fullListing: false,
  },
  {
    name: "local R2 (Miniflare)",
    open: async (dir) => {
      const r2 = await openLocalR2(dir);
      return { store: r2.store, close: () => r2.dispose() };
    },
    enforcesWrites: true,
    fullListing: true,
  },
];

const text = (s: string) => new TextEncoder().encode(s);

async function listAll(store: ObjectStore, prefix: string, limit: number): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 20; page++) {
    const result = await store.list({ prefix, limit, ...(cursor ? { cursor } : {}) });
    expect(result.objects.length).toBeLessThanOrEqual(limit);
    keys.push(...result.objects.map((o) => o.key));
    if (!result.truncated) return keys;
    cursor = result.cursor;
  }
  throw new Error("listing did not end");
}

describe.each(CASES)("$name store", ({ open, enforcesWrites, fullListing }) => {
  let dir: string;
  let opened: OpenedStore;
  let store: ObjectStore;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pinion-origin-store-"));
    opened = await open(dir);
    store = opened.store;
    for (const key of [
      "models/a/versions/1/manifest.json",
      "models/a/versions/2/manifest.json",
      "models/a/blobs/sha256/0f",
      "models/b/versions/1/manifest.json",
      "models/b/odd name+(1)!.json",
    ]) {
      await store.put(key, `contents of ${key}`);
    }
  });

  afterAll(async () => {
    await opened?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("reads back what was put: whole, as text, and streamed", async () => {
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 31) % 251);
    const info = await store.put("models/c/blobs/sha256/big", bytes);
    expect(info?.size).toBe(bytes.length);
    expect(await store.head("models/c/blobs/sha256/big")).toMatchObject({
      key: "models/c/blobs/sha256/big",
      size: bytes.length,
    });
    const whole = await store.get("models/c/blobs/sha256/big");
    expect(new Uint8Array(await whole!.arrayBuffer())).toEqual(bytes);
    const streamed = await store.get("models/c/blobs/sha256/big");
    const chunks: Uint8Array[] = [];
    for await (const chunk of streamed!.body as unknown as AsyncIterable<Uint8Array>) {
      chunks.push(chunk);
    }
    expect(Buffer.concat(chunks).equals(Buffer.from(bytes))).toBe(true);
    const odd = await store.get("models/b/odd name+(1)!.json");
    expect(await odd!.text()).toBe("contents of models/b/odd name+(1)!.json");
  });

  it("answers null for a key that is not there", async () => {
    expect(await store.get("models/a/versions/9/manifest.json")).toBeNull();
    expect(await store.head("models/a/versions/9/manifest.json")).toBeNull();
  });

  it("lists a model's versions with a delimiter, as the registry does", async () => {
    const versions = await store.list({ prefix: "models/a/versions/", delimiter: "/" });
    expect(versions.objects).toEqual([]);
    expect(versions.delimitedPrefixes).toEqual(["models/a/versions/1/", "models/a/versions/2/"]);
    const b = await store.list({ prefix: "models/b/", delimiter: "/" });
    expect(b.objects.map((o) => o.key)).toEqual(["models/b/odd name+(1)!.json"]);
    expect(b.objects[0]!.size).toBe(text("contents of models/b/odd name+(1)!.json").length);
  });

  // Only defined where the store can pass it (see `fullListing`), rather than reported skipped.
  if (fullListing) {
    it("lists deeper keys under one prefix per 'directory', and pages with a cursor", async () => {
      const top = await store.list({ prefix: "models/", delimiter: "/" });
      expect(top.objects).toEqual([]);
      expect(top.delimitedPrefixes).toEqual(["models/a/", "models/b/", "models/c/"]);
      const b = await store.list({ prefix: "models/b/", delimiter: "/" });
      expect(b.delimitedPrefixes).toEqual(["models/b/versions/"]);
      expect(await listAll(store, "models/a/", 1)).toEqual([
        "models/a/blobs/sha256/0f",
        "models/a/versions/1/manifest.json",
        "models/a/versions/2/manifest.json",
      ]);
    });
  }

  if (enforcesWrites) {
    it("refuses a create-only overwrite and a body with the wrong sha256", async () => {
      const key = "models/a/versions/1/manifest.json";
      expect(await store.put(key, "other", { onlyIf: { etagDoesNotMatch: "*" } })).toBeNull();
      expect(await (await store.get(key))!.text()).toBe(`contents of ${key}`);
      const wrong = createHash("sha256").update("something else").digest("hex");
      await expect(store.put("models/d/x", "bytes", { sha256: wrong })).rejects.toThrow();
      expect(await store.head("models/d/x")).toBeNull();
      const right = createHash("sha256").update("bytes").digest("hex");
      expect(await store.put("models/d/x", "bytes", { sha256: right })).not.toBeNull();
    });
  }

  it("serves a version published into it through the origin, with PyTorch's outputs", async () => {
    const manifest = await publish(store, "seed", SEED_ONNX);
    expect(await new ModelRegistry(store).listVersions("seed")).toEqual([1]);
    const running = await startOrigin({ store, tmpDir: dir });
    try {
      const cases = await seedCases();
      const response = await fetch(`${running.url}/v2/models/seed/versions/1/infer`, {
        method: "POST",
        headers: { "x-pinion-artifact-sha256": manifest.artifacts.onnx.sha256 },
        body: fp32Request(cases.inputs),
      });
      expect(response.status).toBe(200);
      const body = (await response.json()) as InferBody;
      expect(maxAbsDiff(body.outputs[0]!.data, cases.expected.flat())).toBeLessThan(1e-5);
    } finally {
      await running.stop();
    }
  });
});

describe("S3 store errors", () => {
  it("reports a store that refuses the credentials as unreachable, and readiness goes false", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pinion-origin-s3-"));
    const { s3, port } = await startS3rver(dir);
    try {
      const store = new S3Store({
        endpoint: `http://127.0.0.1:${port}`,
        bucket: "pinion-models",
        accessKeyId: "NOT-A-KEY",
        secretAccessKey: "S3RVER",
        retries: 0,
      });
      await expect(store.get("models/a")).rejects.toThrow(
        /object store refused GET models\/a: 403 InvalidAccessKeyId/,
      );
      const running = await startOrigin({ store, tmpDir: dir });
      try {
        const ready = await fetch(`${running.url}/v2/health/ready`);
        expect([ready.status, await ready.json()]).toEqual([503, { ready: false }]);
      } finally {
        await running.stop();
      }
    } finally {
      await s3.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
