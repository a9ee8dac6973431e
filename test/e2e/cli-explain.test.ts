/**
 * `pinion explain` end to end against local R2: digits-mlp published with
 * `--quantize int8 --golden … --background …`, explained by KernelSHAP on the
 * int8 runtime (efficiency checked on the JSON answer), the top elements
 * printed; digits-cnn explained by occlusion from a nested image; a
 * background file of the wrong shape refused at publish with one clear line.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { root, startDevServer } from "../../scripts/lib/dev-server";

const run = promisify(execFile);
const fixture = (path: string) => new URL(`fixtures/${path}`, root).pathname;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let dir: string;

async function pinion(args: string[], target = "local"): Promise<Result> {
  const bin = new URL("bin/pinion.js", root).pathname;
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      [bin, ...args, "--persist-to", join(dir, "state")],
      { cwd: root, env: { ...process.env, PINION_ADMIN_TOKEN: "", PINION_TARGET: target } },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let digits: number[][];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pinion-cli-explain-"));
  digits = (
    JSON.parse(await readFile(fixture("digits-mlp/testset.json"), "utf8")) as {
      inputs: number[][];
    }
  ).inputs;
  await writeFile(join(dir, "background.json"), JSON.stringify({ rows: digits.slice(20, 30) }));
  await writeFile(join(dir, "input.json"), JSON.stringify(digits[5]));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("pinion explain", () => {
  it("publishes a background set and explains a prediction with KernelSHAP on int8", async () => {
    const published = await pinion([
      "publish",
      "digits",
      fixture("digits-mlp/digits_mlp.onnx"),
      "--quantize",
      "int8",
      "--golden",
      fixture("digits-mlp/testset.json"),
      "--background",
      join(dir, "background.json"),
    ]);
    expect(published.stderr).toBe("");
    expect(published.code).toBe(0);
    expect(published.stdout).toMatch(/background: \d+ bytes/);

    const json = await pinion([
      "explain",
      "digits",
      join(dir, "input.json"),
      "--samples",
      "500",
      "--json",
    ]);
    expect(json.code).toBe(0);
    const response = JSON.parse(json.stdout) as {
      parameters: Record<string, number | string>;
      outputs: { name: string; shape: number[]; data: number[] }[];
    };
    expect(response.parameters).toMatchObject({
      method: "shap",
      runtime: "int8",
      baseline: "background",
      baseline_rows: 10,
      samples: 500,
    });
    const attributions = response.outputs.find((o) => o.name === "attributions")!;
    expect(attributions.shape).toEqual([1, 64]);
    const total = attributions.data.reduce((a, v) => a + v, 0);
    const gap =
      (response.parameters.prediction as number) - (response.parameters.base_value as number);
    expect(Math.abs(total - gap)).toBeLessThan(1e-3);

    const text = await pinion(["explain", "digits", join(dir, "input.json"), "--top", "3"]);
    expect(text.code).toBe(0);
    const lines = text.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(
      /^digits@1 on int8: shap, 2048 samples, \d+ evaluations, baseline background$/,
    );
    expect(lines[2]).toMatch(/^element\s+attribution\s+share$/);
    expect(lines.slice(3)).toHaveLength(3);
    // The top rows are the largest attributions, by magnitude, in order.
    const magnitudes = lines.slice(3).map((line) => Math.abs(Number(line.split(/\s+/)[1])));
    expect([...magnitudes].sort((a, b) => b - a)).toEqual(magnitudes);
  });

  it("explains an image by occlusion, positions given as [channel,row,column]", async () => {
    const cnn = await pinion(["publish", "digits-cnn", fixture("digits-cnn/digits_cnn.onnx")]);
    expect(cnn.code).toBe(0);
    const image = Array.from({ length: 8 }, (_, r) => digits[5]!.slice(r * 8, r * 8 + 8));
    await writeFile(join(dir, "image.json"), JSON.stringify([image]));
    const text = await pinion([
      "explain",
      "digits-cnn",
      join(dir, "image.json"),
      "--method",
      "occlusion",
      "--window",
      "2",
      "--baseline",
      "0",
    ]);
    expect(text.stderr).toBe("");
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /^digits-cnn@1 on ort: occlusion, 49 samples, 50 evaluations, baseline value 0$/m,
    );
    expect(text.stdout).toMatch(/^\[0,\d,\d\]\s+[+-]\d/m);
    // An 8×8 heatmap (two characters per pixel) before the table; the largest attribution is '#' or '%'.
    const lines = text.stdout.split("\n");
    const start = lines.indexOf("  heatmap (+ .:*#, − .-=%):");
    expect(start).toBeGreaterThan(0);
    const heatmap = lines.slice(start + 1, start + 9);
    // Rows without attribution print as nothing (trailing blanks trimmed).
    for (const line of heatmap) expect(line).toMatch(/^(?: {4}[ .:*#=%-]{0,16})?$/);
    expect(heatmap.join("")).toMatch(/##|%%/);
  });

  it("refuses a background file of the wrong shape at publish with one line", async () => {
    await writeFile(join(dir, "short.json"), JSON.stringify([[1, 2, 3]]));
    const refused = await pinion([
      "publish",
      "digits-bad",
      fixture("digits-mlp/digits_mlp.onnx"),
      "--background",
      join(dir, "short.json"),
    ]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toMatch(
      /background row 0 has shape \[3\]; 'input' takes \[64\] per row/,
    );
  });

  it("asks a worker's /explain with --target URL, and answers as locally", async () => {
    const server = await startDevServer(join(dir, "state"));
    try {
      const args = ["explain", "digits", join(dir, "input.json"), "--samples", "300", "--json"];
      const remote = await pinion(args, server.base);
      expect(remote.stderr).toBe("");
      expect(remote.code).toBe(0);
      const local = await pinion(args);
      const attributions = (text: string) =>
        (JSON.parse(text) as { outputs: { name: string; data: number[] }[] }).outputs.find(
          (o) => o.name === "attributions",
        )!.data;
      // The same version, runtime, seed and arithmetic: the same answer, bit for bit.
      expect(attributions(remote.stdout)).toEqual(attributions(local.stdout));
      const missing = await pinion(["explain", "nope", join(dir, "input.json")], server.base);
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toMatch(/model 'nope'/);
    } finally {
      await server.stop();
    }
  });
});
