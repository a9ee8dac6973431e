/**
 * One API for every model size, end to end: a ~300 MB ONNX model generated on
 * demand (deterministic weights, so its answers are known exactly) is published
 * with the `pinion` CLI through `wrangler dev`'s admin API (multipart), placed
 * on the GPU origin because it exceeds the edge budget, and inferred through
 * the edge, which forwards it to the origin `npm start` runs beside it; the
 * same kind of request to a small demo model is still answered at the edge.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BIG_MODEL_SHAPE,
  bigModelRow,
  oneHot,
  writeBigModel,
  type BigModelFile,
} from "../../scripts/lib/big-model";
import { root, startDevServer, type DevServer } from "../../scripts/lib/dev-server";
import type { VersionSummary } from "../../core/registry/manifest";

const run = promisify(execFile);
const TOKEN = "e2e-origin-routing-token";
const { k: K, n: N } = BIG_MODEL_SHAPE;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

interface InferBody {
  model_name: string;
  model_version: string;
  outputs: { name: string; datatype: string; shape: number[]; data: number[] }[];
}

let dir: string;
let big: BigModelFile;
let server: DevServer | undefined;
let previousOriginTmp: string | undefined;

async function pinion(args: string[]): Promise<Result> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      [new URL("bin/pinion.js", root).pathname, ...args],
      {
        cwd: root,
        env: { ...process.env, PINION_ADMIN_TOKEN: TOKEN, PINION_STATE_DIR: join(dir, "cli") },
        maxBuffer: 16 * 1024 * 1024,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const infer = (path: string, rows: number[][], width: number) =>
  fetch(`${server!.base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      inputs: [{ name: "input", shape: [rows.length, width], datatype: "FP32", data: rows }],
    }),
  });

/** Rows of the big model's weights, flattened: what one-hot inputs at `ks` give. */
const expectedRows = (ks: number[]) => ks.flatMap((k) => Array.from(bigModelRow(k)));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pinion-origin-routing-"));
  big = await writeBigModel(join(dir, "big.onnx"));
  // The origin npm start's script runs inherits this: its scratch directory goes inside ours.
  previousOriginTmp = process.env.PINION_ORIGIN_TMP_DIR;
  process.env.PINION_ORIGIN_TMP_DIR = join(dir, "origin-tmp");
  await mkdir(process.env.PINION_ORIGIN_TMP_DIR);
  server = await startDevServer(join(dir, "state"), [
    "--var",
    `PINION_ADMIN_TOKEN:${TOKEN}`,
    "--var",
    "VERSION_LIST_TTL_MS:0",
    "--var",
    "ALIAS_TTL_MS:0",
    "--var",
    "SHADOW_FLUSH_MS:0",
  ]);
}, 180_000);

afterAll(async () => {
  await server?.stop();
  if (previousOriginTmp === undefined) delete process.env.PINION_ORIGIN_TMP_DIR;
  else process.env.PINION_ORIGIN_TMP_DIR = previousOriginTmp;
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("an oversized model is served through the GPU origin, a small one at the edge", () => {
  it("the generated model is the size and digest the test expects", () => {
    expect(big.bytes).toBeGreaterThan(K * N * 4);
    expect(big.bytes).toBeLessThan(K * N * 4 + 4096);
    expect(big.bytes).toBeGreaterThan(250 * 1024 ** 2);
    expect(big.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("pinion publish (multipart through the admin API) places it on the origin", async () => {
    const started = performance.now();
    const published = await pinion(["publish", "big", big.path, "--target", server!.base]);
    const seconds = (performance.now() - started) / 1000;
    // wrangler dev's own log says why, should the admin API fail (e.g. the worker reloaded).
    expect(published.stderr, server!.output().slice(-4000)).toBe("");
    expect(published.code).toBe(0);
    expect(published.stdout).toContain(
      `published big@1 (${big.bytes} bytes, sha256 ${big.sha256.slice(0, 12)})`,
    );
    expect(published.stdout).toMatch(/inputs: {2}input FP32 \[-1, 8192\]/);
    expect(published.stdout).toMatch(/outputs: output FP32 \[-1, 9216\]/);
    expect(published.stdout).toContain("placement: origin");
    console.log(`published ${big.bytes} bytes through the admin API in ${seconds.toFixed(1)} s`);

    const table = await pinion(["versions", "big", "--target", server!.base]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(
      new RegExp(
        `^VERSION\\s+BYTES\\s+SHA256\\s+RUNTIME\\s+PLACEMENT\\s+CREATED\\s+SOURCE\\n1\\s+${big.bytes}\\s+${big.sha256.slice(0, 12)}\\s+ort\\s+origin\\s+\\S+\\s+big\\.onnx\\n$`,
      ),
    );
    const json = await pinion(["versions", "big", "--target", server!.base, "--json"]);
    const versions = JSON.parse(json.stdout) as VersionSummary[];
    expect(versions).toEqual([
      expect.objectContaining({
        version: 1,
        placement: "origin",
        bytes: big.bytes,
        sha256: big.sha256,
      }),
    ]);
  }, 300_000);

  it("metadata is answered for the origin-placed version", async () => {
    for (const path of ["/v2/models/big", "/v2/models/big/versions/1"]) {
      const response = await fetch(`${server!.base}${path}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("x-pinion-model")).toBe("big@1");
      expect(await response.json()).toMatchObject({
        name: "big",
        versions: ["1"],
        platform: "onnx_onnxv1",
        inputs: [{ name: "input", datatype: "FP32", shape: [-1, K] }],
        outputs: [{ name: "output", datatype: "FP32", shape: [-1, N] }],
      });
    }
  });

  it("/ready asks the origin, which loads the 300 MB version", async () => {
    const started = performance.now();
    const response = await fetch(`${server!.base}/v2/models/big/versions/1/ready`);
    const body = await response.json();
    expect(body).toEqual({ name: "big", version: "1", ready: true });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-pinion-runtime")).toBe("origin");
    expect(response.headers.get("x-pinion-model")).toBe("big@1");
    console.log(`origin loaded big@1 in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    const latest = await fetch(`${server!.base}/v2/models/big/ready`);
    expect(latest.status).toBe(200);
    expect(await latest.json()).toEqual({ name: "big", version: "1", ready: true });
    expect(latest.headers.get("x-pinion-runtime")).toBe("origin");
  }, 120_000);

  it("one-hot rows through the edge come back from the origin as exactly those rows of W", async () => {
    const ks = [0, 4242, K - 1];
    const response = await infer(
      "/v2/models/big/versions/1/infer",
      ks.map((k) => oneHot(k)),
      K,
    );
    const body = (await response.json()) as InferBody;
    expect(response.status, JSON.stringify(body).slice(0, 300)).toBe(200);
    expect(response.headers.get("x-pinion-runtime")).toBe("origin");
    expect(response.headers.get("x-pinion-model")).toBe("big@1");
    // The origin's own Server-Timing is kept apart from the edge's.
    expect(response.headers.get("x-pinion-origin-timing")).toMatch(/compute;dur=/);
    expect(response.headers.get("server-timing")).toMatch(/compute;dur=/);
    expect(body.model_name).toBe("big");
    expect(body.model_version).toBe("1");
    expect(body.outputs).toHaveLength(1);
    const [output] = body.outputs;
    expect(output!.name).toBe("output");
    expect(output!.datatype).toBe("FP32");
    expect(output!.shape).toEqual([ks.length, N]);
    const data = output!.data.flat(2) as number[];
    const expected = expectedRows(ks);
    expect(data).toHaveLength(expected.length);
    // Exactly: every weight is an integer over 4096, and a one-hot product adds only zeros.
    const mismatches = data.filter((v, i) => v !== expected[i]).length;
    expect(mismatches).toBe(0);
    expect(data.slice(N, N + 4)).toEqual(Array.from(bigModelRow(4242).slice(0, 4)));
  }, 120_000);

  it("an unpinned request is forwarded too, and the origin's 4xx answers pass through", async () => {
    const response = await infer("/v2/models/big/infer", [oneHot(17)], K);
    const body = (await response.json()) as InferBody;
    expect(response.status).toBe(200);
    expect(response.headers.get("x-pinion-runtime")).toBe("origin");
    expect(response.headers.get("x-pinion-model")).toBe("big@1");
    const data = body.outputs[0]!.data.flat(2) as number[];
    expect(data).toEqual(Array.from(bigModelRow(17)));

    // A row of the wrong width is the caller's mistake: the origin's 400, as it said it.
    const wrong = await infer("/v2/models/big/versions/1/infer", [[1, 0, 0]], 3);
    expect(wrong.status).toBe(400);
    expect(wrong.headers.get("x-pinion-runtime")).toBe("origin");
    const error = (await wrong.json()) as { error: string };
    expect(error.error).toMatch(/8192/);
  }, 60_000);

  it("the same kind of request to a small model is answered at the edge", async () => {
    const row = oneHot(3, { k: 10, n: 10 });
    for (const path of ["/v2/models/simple/infer", "/v2/models/simple/versions/1/infer"]) {
      const response = await infer(path, [row], 10);
      const body = (await response.json()) as InferBody;
      expect(response.status, JSON.stringify(body)).toBe(200);
      const runtime = response.headers.get("x-pinion-runtime");
      expect(runtime === "int8" || runtime === "ort", `runtime ${runtime}`).toBe(true);
      expect(response.headers.get("x-pinion-origin-timing")).toBeNull();
      expect(body.model_name).toBe("simple");
      expect(body.outputs[0]!.shape).toEqual([1, 10]);
    }
    // The demo's latest version carries an int8 plan, which the edge runs itself.
    const latest = await infer("/v2/models/simple/infer", [row], 10);
    expect(latest.headers.get("x-pinion-runtime")).toBe("int8");
    const ort = await infer("/v2/models/simple/versions/1/infer", [row], 10);
    expect(ort.headers.get("x-pinion-runtime")).toBe("ort");
  }, 60_000);

  it("a shadow version placed on the origin is run on the origin, not at the edge", async () => {
    const pth = new URL("fixtures/seed-simple/simple_model.pth", root).pathname;
    const target = ["--target", server!.base];
    for (const args of [
      ["publish", "shadowed", pth],
      ["publish", "shadowed", pth, "--placement", "origin"],
      ["promote", "shadowed", "1", "--force"],
      ["promote", "shadowed", "2", "--shadow", "100", "--force"],
    ]) {
      const result = await pinion([...args, ...target]);
      expect(result.code, result.stderr).toBe(0);
    }
    for (let i = 0; i < 5; i++) {
      const response = await infer("/v2/models/shadowed/infer", [oneHot(i, { k: 10, n: 10 })], 10);
      expect(response.status).toBe(200);
      expect(response.headers.get("x-pinion-model")).toBe("shadowed@1");
      expect(response.headers.get("x-pinion-runtime")).toBe("ort");
    }
    // Shadow runs happen after the answers; their totals reach R2 at once (SHADOW_FLUSH_MS 0).
    let report: { samples: number; errors: number; maxAbsDiff: number } | undefined;
    for (let i = 0; i < 100 && (report?.samples ?? 0) < 5; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const shown = await pinion(["shadow-report", "shadowed", "--json", ...target]);
      report = (JSON.parse(shown.stdout) as (typeof report)[])[0];
    }
    expect(report).toMatchObject({ samples: 5, errors: 0 });
    // The same fp32 graph on onnxruntime-node and onnxruntime-web.
    expect(report!.maxAbsDiff).toBeLessThan(1e-5);
    // The origin logged each shadow run: the edge sent version 2 there rather than running it.
    const runs = server!
      .output()
      .split("\n")
      .filter((line) =>
        line.includes('"path":"/v2/models/shadowed/versions/2/infer","status":200'),
      );
    expect(runs).toHaveLength(5);
  }, 120_000);
});
