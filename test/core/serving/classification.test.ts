/**
 * The classification extension's pure parts: Triton's score formatting (C's
 * `printf("%f")`), the top-k order (ties, NaN), shapes, and labels files.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { LabelCache } from "../../../core/serving/classification";
import { divergence } from "../../../core/serving/shadow";
import { checkOutputSize } from "../../../core/protocol/tensor-codec";
import { Executor } from "../../../core/serving/executor";
import { ModelCache } from "../../../core/serving/model-cache";
import { Timing } from "../../../core/serving/timing";
import { OrtRuntime } from "../../../core/runtimes/ort/ort-runtime";
import { loadOrt } from "../../../worker/ort-workerd";
import { publishFixture, registry } from "../../worker/helpers";
import { classify, formatFixed6 } from "../../../core/serving/classification";
import { checkLabels, encodeLabels, parseLabels } from "../../../core/registry/labels";

describe("formatFixed6", () => {
  it("writes six decimals of the exact value, as printf('%f') does", () => {
    // What glibc's (and CPython's) "%f" prints for each: ties round to even, the sign stays.
    const cases: [number, string][] = [
      [3.3, "3.300000"],
      [Math.fround(3.3), "3.300000"],
      [0.0078125, "0.007812"],
      [0.0234375, "0.023438"],
      [-0.0078125, "-0.007812"],
      [1.5e-6, "0.000002"],
      [5e-7, "0.000000"],
      [-1e-9, "-0.000000"],
      [-0, "-0.000000"],
      [0, "0.000000"],
      [1e21, "1000000000000000000000.000000"],
      [3.4028234663852886e38, "340282346638528859811704183484516925440.000000"],
      [NaN, "nan"],
      [Infinity, "inf"],
      [-Infinity, "-inf"],
    ];
    for (const [value, text] of cases) expect(formatFixed6(value), String(value)).toBe(text);
  });

  it("agrees with toFixed(6) away from exact ties", () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    for (let i = 0; i < 2000; i++) {
      const value = random() * 10 ** ((i % 12) - 4);
      expect(formatFixed6(value)).toBe(value.toFixed(6));
    }
  });
});

describe("classify", () => {
  const tensor = (data: number[], shape: number[]) => ({
    name: "out",
    datatype: "FP32" as const,
    shape,
    data: Float32Array.from(data),
  });

  it("orders by value, ties by index, NaN last; rank 1 gives [k]", () => {
    const result = classify(tensor([1, 5, 10, 4, NaN, 5], [6]), 5, ["a", "b", "c", "d", "e", "f"]);
    expect(result).toEqual({
      name: "out",
      datatype: "BYTES",
      shape: [5],
      data: ["10.000000:2:c", "5.000000:1:b", "5.000000:5:f", "4.000000:3:d", "1.000000:0:a"],
    });
  });

  it("writes integer scores in full, per row of a [batch, classes] output", () => {
    const result = classify(
      {
        name: "out",
        datatype: "INT64",
        shape: [2, 3],
        data: BigInt64Array.from([1n, 9n, -3n, 2n ** 60n, 0n, 5n]),
      },
      2,
    );
    expect(result.shape).toEqual([2, 2]);
    expect(result.data).toEqual(["9:1", "1:0", `${2n ** 60n}:0`, "5:2"]);
  });

  it("refuses more classes than the row has, and outputs without a class axis", () => {
    expect(() => classify(tensor([1, 2], [1, 2]), 3)).toThrow(
      "output 'out' has 2 classes; classification asked for 3",
    );
    expect(() => classify(tensor([1, 2, 3, 4], [1, 2, 2]), 1)).toThrow(
      /classification needs a numeric output of shape \[classes\] or \[batch, classes\]/,
    );
  });
});

describe("labels files", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);

  it("reads one label per line, LF or CRLF, final newline optional", () => {
    expect(parseLabels(bytes("cat\r\ndog\nbird"))).toEqual(["cat", "dog", "bird"]);
    expect(parseLabels(encodeLabels(["a b", "c:d"]))).toEqual(["a b", "c:d"]);
  });

  it("refuses empty files and lines, control characters, invalid UTF-8, oversized files", () => {
    expect(() => parseLabels(bytes(""))).toThrow("labels file has no labels");
    expect(() => parseLabels(bytes("a\n\nb\n"))).toThrow("labels file line 2 is empty");
    expect(() => parseLabels(bytes("a\tb\n"))).toThrow("line 1 holds a control character");
    expect(() => parseLabels(new Uint8Array([0x61, 0xff, 0x0a]))).toThrow("not valid UTF-8");
    expect(() => parseLabels(new Uint8Array(1024 * 1024 + 1))).toThrow(/at most 1048576/);
    expect(() => parseLabels(bytes(`${"x".repeat(257)}\n`))).toThrow(/257 characters; at most 256/);
  });

  it("must have as many labels as an output has classes", () => {
    const outputs = [
      { name: "logits", datatype: "FP32" as const, shape: [-1, 10] },
      { name: "mask", datatype: "BOOL" as const, shape: [-1, 3] },
      { name: "any", datatype: "FP32" as const, shape: [-1, -1] },
    ];
    expect(() => checkLabels(new Array(10).fill("x"), outputs)).not.toThrow();
    expect(() => checkLabels(["a", "b", "c"], outputs)).toThrow(
      "labels file has 3 labels but no output has 3 classes: 'logits' (10 classes), 'mask' (BOOL [-1, 3], no class axis), 'any' (a dynamic number of classes)",
    );
  });
});

describe("LabelCache", () => {
  it("reads a version's labels once, verified; none for a version without them", async () => {
    const labeled = await publishFixture("cache-labeled", "digits-mlp/digits_mlp.onnx", undefined, {
      labels: ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"],
    });
    const plain = await publishFixture("cache-plain", "digits-mlp/digits_mlp.onnx");
    const cache = new LabelCache(registry());
    expect(await cache.labelsOf(plain)).toBeUndefined();
    expect(await cache.labelsOf(labeled)).toEqual([
      "a",
      "b",
      "c",
      "d",
      "e",
      "f",
      "g",
      "h",
      "i",
      "j",
    ]);

    // Bytes changed under the manifest (same size): a fresh cache refuses them; this one keeps
    // the verified copy it read.
    const key = labeled.artifacts.labels!.key;
    await env.MODELS.put(key, "k\nb\nc\nd\ne\nf\ng\nh\ni\nj\n");
    expect((await cache.labelsOf(labeled))![0]).toBe("a");
    await expect(new LabelCache(registry()).labelsOf(labeled)).rejects.toThrow(
      /labels artifact of cache-labeled@1 failed its sha256 check/,
    );
  });
});

describe("the response size bound on classification strings", () => {
  it("counts each string's JSON bytes exactly", () => {
    const strings = { name: "s", datatype: "BYTES" as const, shape: [2], data: ["ab", 'c"d'] };
    // "ab", and "c\"d", : 5 + 7 bytes.
    expect(() => checkOutputSize([strings], { maxElements: 2, maxBytes: 12 })).not.toThrow();
    expect(() => checkOutputSize([strings], { maxElements: 2, maxBytes: 11 })).toThrow(
      /more than 11 bytes of JSON \(MAX_RESPONSE_BYTES; 2 elements\)/,
    );
  });

  it("refuses an answer whose labelled strings exceed MAX_RESPONSE_BYTES, though the logits fit", async () => {
    const long = Array.from({ length: 10 }, (_, i) => `${i}`.padStart(200, "x"));
    const manifest = await publishFixture("long-labels", "digits-mlp/digits_mlp.onnx", undefined, {
      labels: long,
    });
    const limits = { maxRequestBytes: 1 << 20, maxResponseElements: 1000, maxResponseBytes: 4000 };
    const executor = new Executor(
      registry(),
      [new OrtRuntime(loadOrt)],
      new ModelCache(64 << 20),
      limits,
    );
    const request = (classification?: number) => ({
      inputs: [{ name: "input", shape: [2, 64], datatype: "FP32", data: new Array(128).fill(0.5) }],
      ...(classification ? { outputs: [{ name: "logits", parameters: { classification } }] } : {}),
    });
    // 20 logits fit in 4000 bytes, and so do 2 rows of 5 labelled strings (~2200 bytes)…
    await executor.run(manifest, request(), new Timing());
    const five = await executor.run(manifest, request(5), new Timing());
    expect(five.response.outputs[0]!.shape).toEqual([2, 5]);
    // …but not 2 rows of 10 (~4400 bytes).
    await expect(executor.run(manifest, request(10), new Timing())).rejects.toThrow(
      /more than 4000 bytes of JSON \(MAX_RESPONSE_BYTES; 20 elements\)/,
    );
  });
});

describe("shadow divergence of classification answers", () => {
  it("compares each row's top-1 class, not the strings as numbers", () => {
    const answer = (data: string[]) => ({
      model_name: "m",
      model_version: "1",
      outputs: [{ name: "logits", datatype: "BYTES", shape: [3, 2], data }],
    });
    const primary = answer(["9.0:1:b", "1.0:0:a", "5.0:2:c", "4.0:1:b", "2.0:0:a", "1.0:2:c"]);
    const candidate = answer(["8.5:1:b", "2.0:0:a", "4.0:1:b", "3.9:2:c", "2.0:0:a", "1.0:1:b"]);
    expect(divergence(primary, candidate)).toEqual({
      maxAbsDiff: 0,
      meanAbsDiff: 0,
      top1Rows: 3,
      top1Disagreements: 1,
    });
  });
});
