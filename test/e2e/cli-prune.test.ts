/**
 * `pinion publish --prune` end to end: digits-mlp pruned with `auto` and int8
 * into local R2, and with a fixed fraction through the worker's admin API;
 * `wrangler dev` serves both — the int8 one within the accuracy bound on the
 * golden set, the other with the answers of the pruned ONNX under
 * onnxruntime-node — the listings say what was pruned, and the pruned version
 * passes its golden gate.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pruneDenseModel } from "../../convert/prune";
import type { VersionSummary } from "../../core/registry/manifest";
import { root, startDevServer, type DevServer } from "../../scripts/lib/dev-server";

const run = promisify(execFile);
const TOKEN = "e2e-prune-token";
const onnxFile = new URL("fixtures/digits-mlp/digits_mlp.onnx", root).pathname;
const goldenFile = new URL("fixtures/digits-mlp/testset.json", root).pathname;

async function pinion(args: string[], env: Record<string, string> = {}) {
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

describe("pinion publish --prune, served by wrangler dev", () => {
  let persistTo: string;
  let stateDir: string;
  let server: DevServer | undefined;
  let testset: { inputs: number[][]; labels: number[] };

  beforeAll(async () => {
    persistTo = await mkdtemp(join(tmpdir(), "pinion-prune-"));
    stateDir = await mkdtemp(join(tmpdir(), "pinion-prune-state-"));
    testset = JSON.parse(await readFile(goldenFile, "utf8"));
  });

  afterAll(async () => {
    await server?.stop();
    await rm(persistTo, { recursive: true, force: true });
    await rm(stateDir, { recursive: true, force: true });
  });

  /** All 360 golden inputs in one request; returns the logits and the runtime that answered. */
  async function infer(model: string, runtime?: "ort" | "int8") {
    const response = await fetch(
      `${server!.base}/v2/models/${model}/infer${runtime ? `?runtime=${runtime}` : ""}`,
      {
        method: "POST",
        body: JSON.stringify({
          inputs: [{ name: "input", shape: [360, 64], datatype: "FP32", data: testset.inputs }],
        }),
      },
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as { outputs: { data: number[] }[] };
    return { logits: body.outputs[0]!.data, runtime: response.headers.get("x-pinion-runtime") };
  }

  const accuracy = (logits: number[]) =>
    (100 *
      testset.labels.filter((label, r) => {
        const row = logits.slice(r * 10, r * 10 + 10);
        return row.indexOf(Math.max(...row)) === label;
      }).length) /
    360;

  it("publishes digits-mlp with --prune auto --quantize int8 and prints the combined report", async () => {
    const result = await pinion(
      [
        "publish",
        "digits-pruned",
        onnxFile,
        "--prune",
        "auto",
        "--quantize",
        "int8",
        "--golden",
        goldenFile,
        "--persist-to",
        persistTo,
      ],
      { PINION_STATE_DIR: stateDir },
    );
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/published digits-pruned@1/);
    expect(result.stdout).toMatch(
      /pruned: {2}\d+\.\d% of hidden units \(auto, within 0\.5 points; units ranked by measured effect on the golden set\)/,
    );
    expect(result.stdout).toMatch(/\/fc1\/Gemm: 128 → \d+ units \(\d+ removed\)/);
    expect(result.stdout).toMatch(/search \(fraction→score\/int8\): 50\.0%→/);
    for (const variant of [
      "fp32 +onnxruntime-node",
      "pruned +onnxruntime-node",
      "int8 +int8",
      "pruned \\+ int8 +int8",
    ]) {
      expect(result.stdout).toMatch(
        new RegExp(`^ {4}${variant} +\\d+\\.\\d\\d% +\\d+ +\\d+ +\\d+\\.\\d\\d µs$`, "m"),
      );
    }
  });

  it("serves the pruned int8 version within the accuracy bound on the golden set", async () => {
    server = await startDevServer(persistTo, ["--var", `PINION_ADMIN_TOKEN:${TOKEN}`]);
    const { logits, runtime } = await infer("digits-pruned");
    expect(runtime).toBe("int8");
    expect(accuracy(logits)).toBeGreaterThanOrEqual(97.2222 - 0.5);
  });

  it("publishes a fixed fraction through the admin API; the version answers as the pruned ONNX does", async () => {
    const base = server!.base;
    const result = await pinion(
      [
        "publish",
        "digits-quarter",
        onnxFile,
        "--prune",
        "0.25",
        "--max-accuracy-drop",
        "2",
        "--golden",
        goldenFile,
        "--target",
        base,
      ],
      { PINION_ADMIN_TOKEN: TOKEN, PINION_STATE_DIR: stateDir },
    );
    expect(result.stderr).toBe("");
    expect(result.stdout).toMatch(/\/fc1\/Gemm: 128 → 96 units \(32 removed\)/);

    // Pruning is deterministic: the same call gives the ONNX that was published.
    const expected = await pruneDenseModel(new Uint8Array(await readFile(onnxFile)), {
      fraction: 0.25,
      maxAccuracyDrop: 2,
      cases: {
        inputs: testset.inputs.map((r) => Float32Array.from(r)),
        labels: testset.labels,
      },
      timingRuns: 0,
    });
    const session = await ort.InferenceSession.create(expected.onnx);
    const reference = (
      await session.run({
        input: new ort.Tensor("float32", Float32Array.from(testset.inputs.flat()), [360, 64]),
      })
    ).logits!.data as Float32Array;
    await session.release();
    const { logits, runtime } = await infer("digits-quarter");
    expect(runtime).toBe("ort");
    const worst = Math.max(...logits.map((v, i) => Math.abs(v - reference[i]!)));
    expect(worst).toBeLessThan(1e-4);
    expect(accuracy(logits)).toBeCloseTo(expected.record.accuracy!.pruned, 6);

    // The listings say what was pruned.
    const listed = await pinion(["versions", "digits-quarter", "--target", base, "--json"], {
      PINION_ADMIN_TOKEN: TOKEN,
    });
    const versions = JSON.parse(listed.stdout) as VersionSummary[];
    expect(versions[0]!.pruned).toBe("/fc1/Gemm 128→96, /fc2/Gemm 64→48 (25.0%, golden-effect)");
    const table = await pinion(["versions", "digits-pruned", "--target", base], {
      PINION_ADMIN_TOKEN: TOKEN,
    });
    expect(table.stdout).toMatch(
      /SOURCE\s+PRUNED\n1\s.*digits_mlp\.onnx\s+\/fc1\/Gemm 128→\d+, \/fc2\/Gemm 64→\d+ \(\d+\.\d%, golden-effect\)/,
    );
  });

  it("passes its golden gate: the stored golden outputs are the pruned model's", async () => {
    const result = await pinion(["promote", "digits-quarter", "1", "--target", server!.base], {
      PINION_ADMIN_TOKEN: TOKEN,
    });
    expect(result.stdout).toMatch(/gate golden: passed — 360 golden cases on ort/);
    expect(result.code).toBe(0);
  });

  it("refuses a CNN with the reason, before uploading anything", async () => {
    const cnn = new URL("fixtures/digits-cnn/digits_cnn.onnx", root).pathname;
    const result = await pinion([
      "publish",
      "cnn",
      cnn,
      "--prune",
      "0.25",
      "--persist-to",
      persistTo,
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(
      /pinion: this model's structure is not prunable yet: it has convolutions/,
    );
  });
});
