/**
 * Int8 at the edge: the demo models published as fp32 (v1) and int8 (v2)
 * versions, served by the worker, with the acceptance measurements of the
 * int8 runtime taken through the HTTP API.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { api, argmax, fixtureJson, postJson, publishFixture } from "../worker/helpers";

interface Body {
  model_version: string;
  outputs: { data: number[] }[];
  error?: string;
}

beforeAll(async () => {
  await publishFixture("q-digits", "digits-mlp/digits_mlp.onnx", 1);
  await publishFixture("q-digits", "digits-mlp/digits_mlp.onnx", 2, { int8: true });
  await publishFixture("q-simple", "seed-simple/simple_model.onnx", 1);
  await publishFixture("q-simple", "seed-simple/simple_model.onnx", 2, { int8: true });
  await publishFixture("q-cnn", "digits-cnn/digits_cnn.onnx", 1);
  await publishFixture("q-cnn", "digits-cnn/digits_cnn.onnx", 2, { int8: true });
  await publishFixture("q-cnn-small", "cnn-small/cnn_small.onnx", 1);
  await publishFixture("q-cnn-small", "cnn-small/cnn_small.onnx", 2, { int8: true });
  await publishFixture("q-text", "text-small/text_small.onnx", 1);
  await publishFixture("q-text", "text-small/text_small.onnx", 2, { int8: true });
});

const request = (name: string, data: number[], parameters?: Record<string, string>) => ({
  inputs: [{ name: "input", shape: [1, data.length], datatype: "FP32", data }],
  ...(parameters ? { parameters } : {}),
});

async function infer(path: string, body: unknown) {
  const response = await postJson(path, body);
  return { response, body: (await response.json()) as Body };
}

function cosine(a: number[], b: number[]): number {
  let dot = 0;
  let aa = 0;
  let bb = 0;
  a.forEach((v, i) => {
    dot += v * b[i]!;
    aa += v * v;
    bb += b[i]! ** 2;
  });
  return dot / Math.sqrt(aa * bb);
}

describe("choosing the runtime", () => {
  it("serves an int8 version on int8, an fp32 version on onnxruntime", async () => {
    const x = new Array(64).fill(0.5);
    const int8 = await infer("/v2/models/q-digits/infer", request("q-digits", x));
    expect(int8.response.status).toBe(200);
    expect(int8.body.model_version).toBe("2");
    expect(int8.response.headers.get("x-pinion-runtime")).toBe("int8");
    expect(int8.response.headers.get("x-pinion-model")).toBe("q-digits@2");
    const fp32 = await infer("/v2/models/q-digits/versions/1/infer", request("q-digits", x));
    expect(fp32.response.headers.get("x-pinion-runtime")).toBe("ort");
  });

  it("lets ?runtime= or the runtime parameter force either", async () => {
    const x = new Array(64).fill(0.25);
    const forced = await infer("/v2/models/q-digits/infer?runtime=ort", request("q-digits", x));
    expect(forced.response.headers.get("x-pinion-runtime")).toBe("ort");
    expect(forced.body.model_version).toBe("2");
    const param = await infer(
      "/v2/models/q-digits/infer",
      request("q-digits", x, { runtime: "ort" }),
    );
    expect(param.response.headers.get("x-pinion-runtime")).toBe("ort");
    const int8 = await infer(
      "/v2/models/q-digits/versions/2/infer?runtime=int8",
      request("q-digits", x),
    );
    expect(int8.response.headers.get("x-pinion-runtime")).toBe("int8");
  });

  it("refuses int8 for a version without a plan, and unknown runtimes", async () => {
    const x = new Array(64).fill(0);
    const none = await infer(
      "/v2/models/q-digits/versions/1/infer?runtime=int8",
      request("q-digits", x),
    );
    expect(none.response.status).toBe(400);
    expect(none.body.error).toBe("q-digits@1 has no int8 plan; publish it with --quantize int8");
    const bogus = await infer("/v2/models/q-digits/infer?runtime=tpu", request("q-digits", x));
    expect(bogus.response.status).toBe(400);
    expect(bogus.body.error).toMatch(/unknown runtime 'tpu'; use 'ort' or 'int8'/);
  });

  it("reports readiness per runtime", async () => {
    const { api } = await import("../worker/helpers");
    const ready = await api("/v2/models/q-digits/ready");
    expect(ready.headers.get("x-pinion-runtime")).toBe("int8");
    const ort = await api("/v2/models/q-digits/ready?runtime=ort");
    expect(ort.headers.get("x-pinion-runtime")).toBe("ort");
  });
});

describe("batch-independent int8 answers, through the API", () => {
  it.each([
    ["q-simple", "seed-simple/cases.json"],
    ["q-digits", "digits-mlp/testset.json"],
  ])(
    "%s@2: each row alone and inside a batch of 100 gives the same answer",
    async (name, cases) => {
      const rows = (await fixtureJson<{ inputs: number[][] }>(cases)).inputs.slice(0, 100);
      expect(rows).toHaveLength(100);
      const width = rows[0]!.length;
      const batch = await infer(`/v2/models/${name}/versions/2/infer`, {
        inputs: [{ name: "input", shape: [rows.length, width], datatype: "FP32", data: rows }],
      });
      expect(batch.response.headers.get("x-pinion-runtime")).toBe("int8");
      const all = batch.body.outputs[0]!.data;
      const out = all.length / rows.length;
      for (const [i, row] of rows.entries()) {
        const alone = await infer(`/v2/models/${name}/versions/2/infer`, request(name, row));
        expect(alone.response.headers.get("x-pinion-runtime")).toBe("int8");
        // JSON keeps every FP32 value apart (but the sign of zero): equal numbers, equal bits.
        expect(all.slice(i * out, (i + 1) * out), `row ${i}`).toEqual(alone.body.outputs[0]!.data);
      }
    },
  );
});

describe("int8 acceptance, through the API", () => {
  it("digits-mlp: accuracy within 0.5 points of fp32, classes agree on ≥ 99 %", async () => {
    const set = await fixtureJson<{ inputs: number[][]; labels: number[] }>(
      "digits-mlp/testset.json",
    );
    let int8Correct = 0;
    let fp32Correct = 0;
    let agree = 0;
    // fp32 is exact whatever the batch: one request. int8 as single requests, as clients send them.
    const fp32 = await infer("/v2/models/q-digits/versions/1/infer", {
      inputs: [
        { name: "input", shape: [set.inputs.length, 64], datatype: "FP32", data: set.inputs },
      ],
    });
    const fp32Logits = fp32.body.outputs[0]!.data;
    for (const [i, x] of set.inputs.entries()) {
      const int8 = await infer("/v2/models/q-digits/versions/2/infer", request("q-digits", x));
      const a = argmax(int8.body.outputs[0]!.data);
      const b = argmax(fp32Logits.slice(i * 10, i * 10 + 10));
      if (a === set.labels[i]) int8Correct++;
      if (b === set.labels[i]) fp32Correct++;
      if (a === b) agree++;
    }
    const n = set.inputs.length;
    expect(fp32Correct).toBe(350);
    expect(Math.abs(int8Correct / n - fp32Correct / n)).toBeLessThanOrEqual(0.005);
    expect(agree / n).toBeGreaterThanOrEqual(0.99);
  });

  it("seed SimpleModel: cosine ≥ 0.999 against PyTorch on all 100 cases", async () => {
    const cases = await fixtureJson<{ inputs: number[][]; expected: number[][] }>(
      "seed-simple/cases.json",
    );
    let worst = 1;
    for (const [i, x] of cases.inputs.entries()) {
      const { response, body } = await infer("/v2/models/q-simple/infer", request("q-simple", x));
      expect(response.headers.get("x-pinion-runtime")).toBe("int8");
      worst = Math.min(worst, cosine(body.outputs[0]!.data, cases.expected[i]!));
    }
    expect(worst).toBeGreaterThanOrEqual(0.999);
  });
});

describe("convolutional networks on int8 graph plans, through the API", () => {
  for (const [model, testset, shape] of [
    ["q-cnn", "digits-cnn/testset.json", [1, 8, 8]],
    ["q-cnn-small", "cnn-small/testset.json", [3, 16, 16]],
  ] as const) {
    it(`${model}: answers on int8, accuracy within 0.5 points of fp32, classes agree on ≥ 99 %`, async () => {
      const set = await fixtureJson<{ inputs: unknown[]; labels: number[] }>(testset);
      const n = set.inputs.length;
      // In requests of 40 samples (the test worker's body limit is 1 MB).
      const logits = async (version: number) => {
        const all: number[] = [];
        for (let at = 0; at < n; at += 40) {
          const rows = set.inputs.slice(at, at + 40);
          const { response, body } = await infer(`/v2/models/${model}/versions/${version}/infer`, {
            inputs: [
              { name: "input", shape: [rows.length, ...shape], datatype: "FP32", data: rows },
            ],
          });
          expect(response.status, body.error).toBe(200);
          expect(response.headers.get("x-pinion-runtime")).toBe(version === 1 ? "ort" : "int8");
          all.push(...body.outputs[0]!.data);
        }
        return all;
      };
      const [fp32, int8] = [await logits(1), await logits(2)];
      const width = fp32.length / n;
      let [fp32Correct, int8Correct, agree] = [0, 0, 0];
      for (let i = 0; i < n; i++) {
        const a = argmax(int8.slice(i * width, (i + 1) * width));
        const b = argmax(fp32.slice(i * width, (i + 1) * width));
        if (a === set.labels[i]) int8Correct++;
        if (b === set.labels[i]) fp32Correct++;
        if (a === b) agree++;
      }
      expect(Math.abs(int8Correct - fp32Correct) / n).toBeLessThanOrEqual(0.005);
      expect(agree / n).toBeGreaterThanOrEqual(0.99);
      // One sample alone gets exactly the answer it got inside the batch.
      const first = await infer(`/v2/models/${model}/infer`, {
        inputs: [{ name: "input", shape: [1, ...shape], datatype: "FP32", data: [set.inputs[0]] }],
      });
      expect(first.body.model_version).toBe("2");
      expect(first.body.outputs[0]!.data).toEqual(int8.slice(0, width));
    });
  }
});

describe("a transformer encoder's int8 text plan (text-small)", () => {
  interface TextCases {
    inputs: number[][];
    logits: number[][];
    labels: number[];
  }
  const ids = (rows: number[][]) => ({
    inputs: [
      { name: "input_ids", shape: [rows.length, rows[0]!.length], datatype: "INT64", data: rows },
    ],
  });

  it("answers INT64 token ids in JSON on int8, within quantisation error of fp32", async () => {
    const cases = await fixtureJson<TextCases>("text-small/testset.json");
    const { response, body } = await infer("/v2/models/q-text/infer", ids(cases.inputs));
    expect(response.status).toBe(200);
    expect(response.headers.get("x-pinion-runtime")).toBe("int8");
    expect(body.model_version).toBe("2");
    const got = body.outputs[0]!.data;
    const width = cases.logits[0]!.length;
    let agree = 0;
    let int8Correct = 0;
    let fp32Correct = 0;
    let worst = 0;
    let lo = Infinity;
    let hi = -Infinity;
    cases.logits.forEach((want, i) => {
      const row = got.slice(i * width, (i + 1) * width);
      want.forEach((v, j) => {
        worst = Math.max(worst, Math.abs(v - row[j]!));
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      });
      if (argmax(row) === argmax(want)) agree++;
      if (argmax(row) === cases.labels[i]) int8Correct++;
      if (argmax(want) === cases.labels[i]) fp32Correct++;
    });
    expect(agree / cases.inputs.length).toBeGreaterThanOrEqual(0.99);
    expect(Math.abs(int8Correct - fp32Correct) / cases.inputs.length).toBeLessThanOrEqual(0.01);
    // Within 2 % of the logits' range (the PyTorch reference's own numbers).
    expect(worst).toBeLessThan(0.02 * (hi - lo));
  });

  it("answers the same token ids sent as binary INT64 and INT32 as in JSON", async () => {
    const cases = await fixtureJson<TextCases>("text-small/testset.json");
    const rows = cases.inputs.slice(0, 20);
    const json = await infer("/v2/models/q-text/infer", ids(rows));
    for (const datatype of ["INT64", "INT32"] as const) {
      const data =
        datatype === "INT64"
          ? new Uint8Array(BigInt64Array.from(rows.flat(), (v) => BigInt(v)).buffer)
          : new Uint8Array(Int32Array.from(rows.flat()).buffer);
      const header = new TextEncoder().encode(
        JSON.stringify({
          inputs: [
            {
              name: "input_ids",
              shape: [rows.length, 8],
              datatype,
              parameters: { binary_data_size: data.byteLength },
            },
          ],
        }),
      );
      const body = new Uint8Array(header.length + data.length);
      body.set(header);
      body.set(data, header.length);
      const response = await api("/v2/models/q-text/infer", {
        method: "POST",
        headers: {
          "content-type": "application/octet-stream",
          "inference-header-content-length": String(header.length),
        },
        body,
      });
      // The model declares INT64: INT32 ids are refused as the wrong datatype, INT64 ones answered.
      if (datatype === "INT32") {
        expect(response.status).toBe(400);
        continue;
      }
      expect(response.status).toBe(200);
      expect(response.headers.get("x-pinion-runtime")).toBe("int8");
      const answer = (await response.json()) as Body;
      expect(answer.outputs[0]!.data).toEqual(json.body.outputs[0]!.data);
    }
  });

  it("refuses ids outside the vocabulary and sequences of another length with 400", async () => {
    const bad = await infer("/v2/models/q-text/infer", ids([[1, 2, 3, 64, 5, 6, 7, 8]]));
    expect(bad.response.status).toBe(400);
    expect(bad.body.error).toMatch(
      /input 'input_ids' holds 64 at position 3; ids must lie in \[0, 64\)/,
    );
    const negative = await infer("/v2/models/q-text/infer", ids([[1, 2, 3, -1, 5, 6, 7, 8]]));
    expect(negative.response.status).toBe(400);
    const huge = await infer("/v2/models/q-text/infer", ids([[1, 2, 3, 2 ** 40, 5, 6, 7, 8]]));
    expect(huge.response.status).toBe(400);
    const short = await infer("/v2/models/q-text/infer", ids([[1, 2, 3]]));
    expect(short.response.status).toBe(400);
    // Still serving.
    const good = await infer("/v2/models/q-text/infer", ids([[1, 2, 3, 4, 5, 6, 7, 8]]));
    expect(good.response.status).toBe(200);
  });
});
