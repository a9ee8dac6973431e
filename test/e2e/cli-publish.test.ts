/**
 * The `pinion` CLI end to end, with no Python anywhere: publish the seed
 * model's PyTorch `.pth` into the local R2 state, serve it with `wrangler dev`,
 * and get PyTorch's outputs back over HTTP; then the same through the worker's
 * admin API, with and without the token; concurrent publishes get distinct versions.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { unzipSync, zipSync } from "fflate";
import pkg from "onnx-proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { root, startDevServer, type DevServer } from "../../scripts/lib/dev-server";

const { onnx } = pkg;
const run = promisify(execFile);
const TOKEN = "e2e-admin-token";
const pth = new URL("fixtures/seed-simple/simple_model.pth", root).pathname;
const digitsOnnx = new URL("fixtures/digits-mlp/digits_mlp.onnx", root).pathname;
const DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function pinion(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const bin = new URL("bin/pinion.js", root).pathname;
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], {
      cwd: root,
      env: { ...process.env, PINION_ADMIN_TOKEN: "", ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function inferAll(base: string, model: string) {
  const cases = JSON.parse(
    await readFile(new URL("fixtures/seed-simple/cases.json", root), "utf8"),
  ) as {
    inputs: number[][];
    expected: number[][];
  };
  const response = await fetch(`${base}/v2/models/${model}/infer`, {
    method: "POST",
    body: JSON.stringify({
      inputs: [{ name: "input", shape: [100, 10], datatype: "FP32", data: cases.inputs }],
    }),
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { model_version: string; outputs: { data: number[] }[] };
  const expected = cases.expected.flat();
  const worst = Math.max(...body.outputs[0]!.data.map((v, i) => Math.abs(v - expected[i]!)));
  return { worst, version: body.model_version, headers: response.headers };
}

describe("pinion CLI", () => {
  let persistTo: string;
  let server: DevServer | undefined;

  beforeAll(async () => {
    persistTo = await mkdtemp(join(tmpdir(), "pinion-cli-"));
  });

  afterAll(async () => {
    await server?.stop();
    await rm(persistTo, { recursive: true, force: true });
  });

  it("publishes a PyTorch .pth to local R2 and lists it", async () => {
    const result = await pinion(["publish", "seed", pth, "--persist-to", persistTo]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(
      /converted .*simple_model\.pth: layer1 10→20, layer2 20→10 \(relu between layers\)/,
    );
    expect(result.stdout).toMatch(/published seed@1 \(\d+ bytes, sha256 [0-9a-f]{12}\)/);
    expect(result.stdout).toMatch(/inputs: {2}input FP32 \[-1, 10\]/);

    const versions = await pinion(["versions", "seed", "--persist-to", persistTo, "--json"]);
    expect(JSON.parse(versions.stdout)).toMatchObject([
      { version: 1, runtime: "ort", source: "simple_model.pth" },
    ]);
    const models = await pinion(["models", "--persist-to", persistTo]);
    expect(models.stdout.trim()).toBe("seed");
  });

  it("gives concurrent publishes distinct versions", async () => {
    const results = await Promise.all(
      [1, 2, 3].map(() => pinion(["publish", "seed", pth, "--persist-to", persistTo, "--json"])),
    );
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const versions = results
      .map((r) => (JSON.parse(r.stdout) as { version: number }).version)
      .sort();
    expect(versions).toEqual([2, 3, 4]);
  });

  it("fails with one clear line and a non-zero exit on bad input", async () => {
    const missing = await pinion(["publish", "seed", "nope.pth", "--persist-to", persistTo]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim()).toBe("pinion: cannot read model file nope.pth: no such file");
    const badName = await pinion(["publish", "Bad/Name", pth, "--persist-to", persistTo]);
    expect(badName.code).toBe(2);
    expect(badName.stderr).toMatch(/^pinion: invalid model name "Bad\/Name"/);
    expect(badName.stderr.split("\n").filter(Boolean)).toHaveLength(1);
    const badActivation = await pinion(["publish", "seed", pth, "--activation", "swish"]);
    expect(badActivation.code).toBe(2);
    expect(badActivation.stderr).toMatch(/choose one of relu, tanh, sigmoid, gelu, none/);
  });

  it("publishes class labels with --labels, and refuses a count that is not the class count", async () => {
    const labels = join(persistTo, "labels.txt");
    await writeFile(labels, DIGITS.map((d) => `${d}\r\n`).join(""));
    const short = join(persistTo, "short.txt");
    await writeFile(short, DIGITS.slice(0, 9).join("\n"));
    const refused = await pinion([
      "publish",
      "digits",
      digitsOnnx,
      "--labels",
      short,
      "--persist-to",
      persistTo,
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim()).toBe(
      "pinion: labels artifact: labels file has 9 labels but no output has 9 classes: 'logits' (10 classes)",
    );
    const ok = await pinion([
      "publish",
      "digits",
      digitsOnnx,
      "--labels",
      labels,
      "--persist-to",
      persistTo,
    ]);
    expect(ok.stderr).toBe("");
    expect(ok.stdout).toMatch(/published digits@1/);
    expect(ok.stdout).toMatch(/ {2}labels: {2}\d+ bytes/);
  });

  it("serves what it published: PyTorch's outputs over HTTP", async () => {
    server = await startDevServer(persistTo, ["--var", `PINION_ADMIN_TOKEN:${TOKEN}`]);
    const { worst, version, headers } = await inferAll(server.base, "seed");
    expect(version).toBe("4");
    expect(headers.get("x-pinion-model")).toBe("seed@4");
    expect(worst).toBeLessThan(1e-5);
  });

  it("publishes through the admin API with the token, and not without it", async () => {
    const base = server!.base;
    const without = await pinion(["publish", "remote", pth, "--target", base]);
    expect(without.code).toBe(2);
    expect(without.stderr).toMatch(
      /needs its admin token in the PINION_ADMIN_TOKEN environment variable/,
    );
    const wrong = await pinion(["publish", "remote", pth, "--target", base], {
      PINION_ADMIN_TOKEN: "wrong",
    });
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toMatch(/401 missing or wrong admin token/);

    const ok = await pinion(["publish", "remote", pth, "--target", base], {
      PINION_ADMIN_TOKEN: TOKEN,
    });
    expect(ok.stderr).toBe("");
    expect(ok.stdout).toMatch(/published remote@1/);
    const { worst } = await inferAll(base, "remote");
    expect(worst).toBeLessThan(1e-5);

    const models = await pinion(["models", "--target", base, "--json"], {
      PINION_ADMIN_TOKEN: TOKEN,
    });
    expect(JSON.parse(models.stdout)).toEqual(expect.arrayContaining(["remote", "seed", "simple"]));
    const versions = await pinion(["versions", "remote", "--target", base], {
      PINION_ADMIN_TOKEN: TOKEN,
    });
    expect(versions.code).toBe(0);
    expect(versions.stdout).toMatch(
      /^VERSION\s+BYTES\s+SHA256\s+RUNTIME\s+PLACEMENT\s+CREATED\s+SOURCE\n1\s+\d+\s+[0-9a-f]{12}\s+ort\s+edge\s+\S+\s+simple_model\.pth/,
    );
  });

  it("answers classification with the labels published locally and through the admin API", async () => {
    const base = server!.base;
    const labels = join(persistTo, "labels.txt");
    const remote = await pinion(
      ["publish", "digits-remote", digitsOnnx, "--labels", labels, "--target", base],
      { PINION_ADMIN_TOKEN: TOKEN },
    );
    expect(remote.stderr).toBe("");
    const testset = JSON.parse(
      await readFile(new URL("fixtures/digits-mlp/testset.json", root), "utf8"),
    ) as { inputs: number[][]; logits: number[][] };
    for (const model of ["digits", "digits-remote"]) {
      const response = await fetch(`${base}/v2/models/${model}/infer`, {
        method: "POST",
        body: JSON.stringify({
          inputs: [
            { name: "input", shape: [4, 64], datatype: "FP32", data: testset.inputs.slice(0, 4) },
          ],
          outputs: [{ name: "logits", parameters: { classification: 2 } }],
        }),
      });
      expect(response.status, model).toBe(200);
      const output = ((await response.json()) as { outputs: { shape: number[]; data: string[] }[] })
        .outputs[0]!;
      expect(output.shape).toEqual([4, 2]);
      output.data.forEach((entry, i) => {
        const logits = testset.logits[Math.floor(i / 2)]!;
        const order = logits.map((_, j) => j).sort((a, b) => logits[b]! - logits[a]!);
        const [score, index, label] = entry.split(":");
        expect(Number(index)).toBe(order[i % 2]);
        expect(Math.abs(Number(score) - logits[Number(index)]!)).toBeLessThan(1e-4);
        expect(label).toBe(DIGITS[Number(index)]);
      });
    }
  });

  it("resumes an interrupted upload, and starts afresh when the saved one is gone", async () => {
    const base = server!.base;
    const host = new URL(base).host.replace(/[^a-zA-Z0-9.-]/g, "_");
    const onnxPath = new URL("fixtures/seed-simple/simple_model.onnx", root).pathname;
    const onnx = new Uint8Array(await readFile(onnxPath));
    const sha256 = createHash("sha256").update(onnx).digest("hex");
    const admin = (path: string, init: RequestInit) =>
      fetch(`${base}/admin/${path}`, {
        ...init,
        headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) },
      });

    // An upload that was started and got its only part through before the CLI was interrupted.
    const started = (await (
      await admin("models/resumed/uploads", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ sha256, bytes: onnx.byteLength, mediaType: "application/x-onnx" }),
      })
    ).json()) as { uploadId: string; key: string; partBytes: number };
    const part = (await (
      await admin(`models/resumed/uploads/${started.uploadId}/parts/1?sha256=${sha256}`, {
        method: "PUT",
        body: onnx,
      })
    ).json()) as { partNumber: number; etag: string };
    const stateDir = join(persistTo, "cli-state");
    await mkdir(join(stateDir, "uploads"), { recursive: true });
    const statePath = join(stateDir, "uploads", `${host}-${sha256}.json`);
    await writeFile(statePath, JSON.stringify({ ...started, parts: [part] }));

    const resumed = await pinion(["publish", "resumed", onnxPath, "--target", base], {
      PINION_ADMIN_TOKEN: TOKEN,
      PINION_STATE_DIR: stateDir,
    });
    expect(resumed.stderr).toBe("");
    expect(resumed.stdout).toMatch(/published resumed@1/);
    expect(await readdir(join(stateDir, "uploads"))).toEqual([]);

    // A saved upload the server no longer knows: the CLI starts a new one.
    await writeFile(
      statePath,
      JSON.stringify({
        uploadId: "gone",
        key: started.key,
        partBytes: started.partBytes,
        parts: [],
      }),
    );
    const other = await pinion(["publish", "stale", onnxPath, "--target", base], {
      PINION_ADMIN_TOKEN: TOKEN,
      PINION_STATE_DIR: stateDir,
    });
    expect(other.stderr).toBe("");
    expect(other.stdout).toMatch(/published stale@1/);
    expect(await readdir(join(stateDir, "uploads"))).toEqual([]);
  });
});

describe("pinion publish refuses non-finite weights", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pinion-nonfinite-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("names the tensor of a .pth and of an .onnx, and publishes with --allow-non-finite", async () => {
    // layer2.weight of the seed checkpoint (storage 2), with a NaN and an Infinity.
    const entries = unzipSync(await readFile(pth));
    const weights = new Float32Array(entries["simple_model/data/2"]!.slice().buffer);
    weights[3] = NaN;
    weights[9] = Infinity;
    entries["simple_model/data/2"] = new Uint8Array(weights.buffer);
    const badPth = join(dir, "nan.pth");
    await writeFile(badPth, zipSync(entries, { level: 0 }));
    // layer1.bias of the seed's ONNX export, with -Infinity.
    const model = onnx.ModelProto.decode(
      await readFile(new URL("fixtures/seed-simple/simple_model.onnx", root)),
    );
    const bias = model.graph!.initializer!.find((t) => t.name === "layer1.bias")!;
    const values = new Float32Array(new Uint8Array(bias.rawData!).buffer);
    values[5] = -Infinity;
    bias.rawData = new Uint8Array(values.buffer);
    const badOnnx = join(dir, "inf.onnx");
    await writeFile(badOnnx, onnx.ModelProto.encode(model).finish());

    const persist = ["--persist-to", dir];
    const fromPth = await pinion(["publish", "nan", badPth, ...persist]);
    expect(fromPth.code).toBe(2);
    expect(fromPth.stderr.trim()).toBe(
      `pinion: the model's weights are not all finite: tensor "layer2.weight" holds 2 ` +
        `non-finite values (the first, NaN, at index 3); the version would answer nulls ` +
        `(--allow-non-finite publishes it anyway)`,
    );
    const fromOnnx = await pinion(["publish", "inf", badOnnx, ...persist]);
    expect(fromOnnx.code).toBe(2);
    expect(fromOnnx.stderr).toMatch(
      /^pinion: the model's weights are not all finite: tensor "layer1\.bias" holds 1 non-finite value \(the first, -Infinity, at index 5\)/,
    );
    const listed = await pinion(["models", "--json", ...persist]);
    expect(JSON.parse(listed.stdout)).toEqual([]);

    const allowed = await pinion([
      "publish",
      "nan",
      badPth,
      "--allow-non-finite",
      "--quantize",
      "int8",
      ...persist,
    ]);
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toMatch(/published nan@1/);
    expect(allowed.stderr).toMatch(
      /no int8 plan: int8 cannot quantise non-finite weights: tensor "layer2\.weight"/,
    );
  });
});
