/**
 * The classification extension over HTTP, in workerd: `digits-mlp` (10 logits
 * per row) published with labels answers the top-k classes of each row as
 * Triton's "score:index:label" strings, matching the plain logits of the same
 * request and PyTorch's; on onnxruntime and on the int8 runtime alike. Labels
 * are checked at publish, through the admin API's commit.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { buildModel, ElemType } from "../../convert/onnx";
import { sha256Hex } from "../../core/registry/digest";
import { encodeLabels } from "../../core/registry/labels";
import { api, fixtureBytes, fixtureJson, postJson, publishFixture } from "../worker/helpers";

interface TestSet {
  inputs: number[][];
  labels: number[];
  logits: number[][];
}
interface Output {
  name: string;
  datatype: string;
  shape: number[];
  data: (number | string)[];
  parameters?: Record<string, unknown>;
}
interface InferBody {
  outputs: Output[];
  error?: string;
}

const NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
const ROWS = 12;
let testset: TestSet;

beforeAll(async () => {
  testset = await fixtureJson<TestSet>("digits-mlp/testset.json");
  await publishFixture("digits-labeled", "digits-mlp/digits_mlp.onnx", undefined, {
    labels: NAMES,
  });
  await publishFixture("digits-unlabeled", "digits-mlp/digits_mlp.onnx");
  await publishFixture("digits-int8", "digits-mlp/digits_mlp.onnx", undefined, {
    int8: true,
    labels: NAMES,
  });
});

function request(outputs?: unknown[]) {
  return {
    inputs: [
      {
        name: "input",
        shape: [ROWS, 64],
        datatype: "FP32",
        data: testset.inputs.slice(0, ROWS),
      },
    ],
    ...(outputs ? { outputs } : {}),
  };
}

async function infer(model: string, outputs?: unknown[]): Promise<InferBody & { status: number }> {
  const response = await postJson(`/v2/models/${model}/infer`, request(outputs));
  return { status: response.status, ...((await response.json()) as InferBody) };
}

/** Indices of `row` from highest to lowest value (ties: lower index first). */
function ranking(row: readonly number[]): number[] {
  return row.map((_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b);
}

/** Checks one classification string against the plain logits it was made from. */
function expectEntry(entry: string, row: readonly number[], index: number, label?: string) {
  const parts = entry.split(":");
  expect(parts).toHaveLength(label === undefined ? 2 : 3);
  const [score, at, name] = parts as [string, string, string?];
  expect(Number(at)).toBe(index);
  // Triton's std::to_string: six decimals of the value.
  expect(score).toMatch(/^-?\d+\.\d{6}$/);
  expect(Math.abs(Number(score) - row[index]!)).toBeLessThanOrEqual(5e-7);
  expect(name).toBe(label);
}

describe("classification", () => {
  it("answers the top k of each row as score:index:label, in the logits' order", async () => {
    const plain = await infer("digits-labeled");
    expect(plain.status).toBe(200);
    const logits = plain.outputs[0]!.data as number[];
    const classified = await infer("digits-labeled", [
      { name: "logits", parameters: { classification: 3 } },
    ]);
    expect(classified.status).toBe(200);
    const output = classified.outputs[0]!;
    expect(output).toMatchObject({ name: "logits", datatype: "BYTES", shape: [ROWS, 3] });
    expect(output.parameters).toBeUndefined();
    expect(output.data).toHaveLength(ROWS * 3);
    for (let r = 0; r < ROWS; r++) {
      const row = logits.slice(r * 10, r * 10 + 10);
      const order = ranking(row);
      // PyTorch's own logits rank the same first class.
      expect(order[0]).toBe(ranking(testset.logits[r]!)[0]);
      for (let j = 0; j < 3; j++) {
        expectEntry(output.data[r * 3 + j] as string, row, order[j]!, NAMES[order[j]!]);
      }
    }
    // The labels name the digits: the top label is the true digit wherever the model is right.
    const right = testset.labels
      .slice(0, ROWS)
      .filter((digit, r) => ranking(testset.logits[r]!)[0] === digit).length;
    const named = testset.labels
      .slice(0, ROWS)
      .filter((digit, r) => (output.data[r * 3] as string).endsWith(`:${NAMES[digit]}`)).length;
    expect(named).toBe(right);
    expect(right).toBeGreaterThan(ROWS / 2);
  });

  it("answers score:index without labels, and every class when k is the class count", async () => {
    const plain = await infer("digits-unlabeled");
    const logits = plain.outputs[0]!.data as number[];
    const all = await infer("digits-unlabeled", [
      { name: "logits", parameters: { classification: 10 } },
    ]);
    expect(all.status).toBe(200);
    expect(all.outputs[0]!.shape).toEqual([ROWS, 10]);
    for (let r = 0; r < ROWS; r++) {
      const row = logits.slice(r * 10, r * 10 + 10);
      ranking(row).forEach((index, j) =>
        expectEntry(all.outputs[0]!.data[r * 10 + j] as string, row, index),
      );
    }
  });

  it("classifies the int8 runtime's outputs too, and keeps other output parameters", async () => {
    const plain = await infer("digits-int8");
    const logits = plain.outputs[0]!.data as number[];
    const response = await postJson("/v2/models/digits-int8/infer", {
      ...request([{ name: "logits", parameters: { classification: 1, tag: "x" } }]),
    });
    expect(response.headers.get("x-pinion-runtime")).toBe("int8");
    const body = (await response.json()) as InferBody;
    expect(body.outputs[0]).toMatchObject({ shape: [ROWS, 1], parameters: { tag: "x" } });
    for (let r = 0; r < ROWS; r++) {
      const row = logits.slice(r * 10, r * 10 + 10);
      const top = ranking(row)[0]!;
      expectEntry(body.outputs[0]!.data[r] as string, row, top, NAMES[top]);
    }
  });

  it("refuses counts that are not 1 to the number of classes, with a 400 naming both", async () => {
    const cases: [unknown, RegExp][] = [
      [0, /output 'logits' parameter classification is 0; it must be an integer >= 1/],
      [-2, /classification is -2; it must be an integer >= 1/],
      [2.5, /classification is 2\.5; it must be an integer >= 1/],
      ["3", /classification is "3"; it must be an integer >= 1/],
      [true, /classification is true; it must be an integer >= 1/],
      [11, /output 'logits' has 10 classes; classification asked for 11/],
    ];
    for (const [count, message] of cases) {
      const body = await infer("digits-labeled", [
        { name: "logits", parameters: { classification: count } },
      ]);
      expect(body.status, String(count)).toBe(400);
      expect(body.error, String(count)).toMatch(message);
    }
  });

  it("refuses classification of an output with no class axis", async () => {
    const bool = buildModel(
      [{ op: "Greater", inputs: ["input", "input"], outputs: ["flags"] }],
      [{ name: "input", type: ElemType.FLOAT, dims: ["batch", 4] }],
      [{ name: "flags", type: ElemType.BOOL, dims: ["batch", 4] }],
    );
    const { registry } = await import("../worker/helpers");
    await registry().publish({
      name: "flags",
      platform: "onnx_onnxv1",
      inputs: [{ name: "input", datatype: "FP32", shape: [-1, 4] }],
      outputs: [{ name: "flags", datatype: "BOOL", shape: [-1, 4] }],
      runtime: "ort",
      artifacts: { onnx: { bytes: bool, mediaType: "application/x-onnx" } },
    });
    const plain = await postJson("/v2/models/flags/infer", {
      inputs: [{ name: "input", shape: [1, 4], datatype: "FP32", data: [1, 2, 3, 4] }],
    });
    expect(plain.status).toBe(200);
    const refused = await postJson("/v2/models/flags/infer", {
      inputs: [{ name: "input", shape: [1, 4], datatype: "FP32", data: [1, 2, 3, 4] }],
      outputs: [{ name: "flags", parameters: { classification: 2 } }],
    });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as InferBody).error).toBe(
      "output 'flags' is BOOL [-1, 4]; classification needs a numeric output of shape [classes] or [batch, classes]",
    );
  });
});

describe("labels in the model configuration", () => {
  it("lists a version's labels and marks the output they name, as Triton's label_filename", async () => {
    const response = await api("/v2/models/digits-labeled/config");
    expect(response.status).toBe(200);
    const config = (await response.json()) as {
      output: { name: string; label_filename?: string }[];
      parameters: Record<string, { string_value: string }>;
    };
    expect(config.output).toEqual([
      { name: "logits", data_type: "TYPE_FP32", dims: [10], label_filename: "labels.txt" },
    ]);
    expect(config.parameters.labels!.string_value.split("\n")).toEqual(NAMES);
    const plain = (await (await api("/v2/models/digits-unlabeled/config")).json()) as typeof config;
    expect(plain.output[0]!.label_filename).toBeUndefined();
    expect(plain.parameters.labels).toBeUndefined();
  });
});

describe("labels at the admin API's commit", () => {
  const auth = { authorization: `Bearer ${env.PINION_ADMIN_TOKEN}` };
  const admin = (path: string, method = "GET", body?: unknown) =>
    api(`/admin/${path}`, {
      method,
      headers: { ...auth, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  /** Uploads bytes as the CLI does (one part) and answers their manifest entry. */
  async function stored(model: string, bytes: Uint8Array, mediaType: string) {
    const sha256 = await sha256Hex(bytes);
    const started = (await (
      await admin(`models/${model}/uploads`, "POST", { sha256, bytes: bytes.byteLength, mediaType })
    ).json()) as { exists: boolean; key: string; uploadId: string };
    if (!started.exists) {
      const part = await api(
        `/admin/models/${model}/uploads/${started.uploadId}/parts/1?sha256=${sha256}`,
        { method: "PUT", headers: auth, body: bytes },
      );
      expect(part.status).toBe(200);
      const complete = await admin(`models/${model}/uploads/${started.uploadId}/complete`, "POST", {
        sha256,
        parts: [await part.json()],
      });
      expect(complete.status).toBe(200);
    }
    return { key: started.key, bytes: bytes.byteLength, sha256, mediaType };
  }

  it("refuses labels whose count is not an output's class count, and serves the right ones", async () => {
    const model = "admin-labels";
    const onnx = await stored(
      model,
      await fixtureBytes("digits-mlp/digits_mlp.onnx"),
      "application/x-onnx",
    );
    const fields = {
      platform: "onnx_onnxv1",
      inputs: [{ name: "input", datatype: "FP32", shape: [-1, 64] }],
      outputs: [{ name: "logits", datatype: "FP32", shape: [-1, 10] }],
      runtime: "ort",
    };
    const nine = await stored(model, encodeLabels(NAMES.slice(0, 9)), "text/plain");
    const refused = await admin(`models/${model}/versions`, "POST", {
      ...fields,
      artifacts: { onnx, labels: nine },
    });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as InferBody).error).toBe(
      "labels artifact: labels file has 9 labels but no output has 9 classes: 'logits' (10 classes)",
    );
    const blank = await stored(model, new TextEncoder().encode("a\n\nc\n"), "text/plain");
    const empty = await admin(`models/${model}/versions`, "POST", {
      ...fields,
      artifacts: { onnx, labels: blank },
    });
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as InferBody).error).toBe(
      "labels artifact: labels file line 2 is empty",
    );
    expect((await admin(`models/${model}/versions`)).status).toBe(404);

    const ten = await stored(model, encodeLabels(NAMES), "text/plain");
    const committed = await admin(`models/${model}/versions`, "POST", {
      ...fields,
      artifacts: { onnx, labels: ten },
    });
    expect(committed.status).toBe(201);
    expect(
      ((await committed.json()) as { artifacts: { labels?: unknown } }).artifacts.labels,
    ).toEqual(ten);
    const answer = await infer(model, [{ name: "logits", parameters: { classification: 2 } }]);
    expect(answer.status).toBe(200);
    for (const entry of answer.outputs[0]!.data as string[]) {
      const [, index, label] = entry.split(":");
      expect(label).toBe(NAMES[Number(index)]);
    }
  });

  it("answers a classification asked for as binary data (tritonclient's default) as length-prefixed BYTES", async () => {
    const body = request([
      { name: "logits", parameters: { classification: 3, binary_data: true } },
    ]);
    const json = await (await postJson("/v2/models/digits-labeled/infer", request())).json();
    const logits = (json as InferBody).outputs[0]!.data as number[];
    const response = await postJson("/v2/models/digits-labeled/infer", body);
    expect(response.status).toBe(200);
    const headerLength = Number(response.headers.get("inference-header-content-length"));
    const bytes = new Uint8Array(await response.arrayBuffer());
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(0, headerLength))) as {
      outputs: Output[];
    };
    const [output] = header.outputs;
    expect(output).toMatchObject({ name: "logits", datatype: "BYTES", shape: [ROWS, 3] });
    expect(output!.data).toBeUndefined();
    const size = output!.parameters!.binary_data_size as number;
    expect(headerLength + size).toBe(bytes.length);
    const view = new DataView(bytes.buffer, bytes.byteOffset + headerLength, size);
    const entries: string[] = [];
    for (let offset = 0; offset < size;) {
      const length = view.getUint32(offset, true);
      entries.push(
        new TextDecoder().decode(
          bytes.subarray(headerLength + offset + 4, headerLength + offset + 4 + length),
        ),
      );
      offset += 4 + length;
    }
    expect(entries).toHaveLength(ROWS * 3);
    for (let r = 0; r < ROWS; r++) {
      const row = logits.slice(r * 10, r * 10 + 10);
      ranking(row)
        .slice(0, 3)
        .forEach((index, j) => expectEntry(entries[r * 3 + j]!, row, index, NAMES[index]));
    }
  });
});
