/**
 * `POST /v2/models/{name}[/versions/{v}|/aliases/{a}]/explain` over HTTP, in
 * workerd: digits-mlp published (int8) with a background set through the
 * admin API's commit (checked there), explained by KernelSHAP; the answer is
 * OIP-shaped, names what served it, and sums to the prediction gap measured
 * by `/infer`; bad requests and work past the budget are 400s.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { BACKGROUND_FORMAT, encodeBackground } from "../../core/registry/background";
import { sha256Hex } from "../../core/registry/digest";
import { api, fixtureBytes, fixtureJson, postJson, publishFixture } from "../worker/helpers";

interface Output {
  name: string;
  datatype: string;
  shape: number[];
  data: number[];
}
interface Body {
  model_name: string;
  model_version: string;
  id?: string;
  parameters?: Record<string, string | number | boolean>;
  outputs: Output[];
  error?: string;
}

let inputs: number[][];
const sum = (values: readonly number[]) => values.reduce((a, v) => a + v, 0);

beforeAll(async () => {
  inputs = (await fixtureJson<{ inputs: number[][] }>("digits-mlp/testset.json")).inputs;
  await publishFixture("http-explain", "digits-mlp/digits_mlp.onnx", undefined, {
    int8: true,
    background: inputs.slice(100, 110),
  });
});

const explainBody = (x: readonly number[], parameters: Record<string, unknown> = {}) => ({
  id: "why-1",
  inputs: [{ name: "input", datatype: "FP32", shape: [1, 64], data: x }],
  parameters,
});

async function infer(path: string, rows: readonly (readonly number[])[], runtime: string) {
  const response = await postJson(`${path}/infer?runtime=${runtime}`, {
    inputs: [{ name: "input", datatype: "FP32", shape: [rows.length, 64], data: rows.flat() }],
  });
  expect(response.status).toBe(200);
  const data = ((await response.json()) as Body).outputs[0]!.data;
  return rows.map((_, i) => data.slice(i * 10, (i + 1) * 10));
}

describe("POST …/explain", () => {
  for (const runtime of ["int8", "ort"]) {
    it(`answers the prediction and attributions that sum to its gap (${runtime})`, async () => {
      const x = inputs[11]!;
      const response = await postJson(
        `/v2/models/http-explain/versions/1/explain?runtime=${runtime}`,
        explainBody(x, { samples: 1000, seed: 7 }),
      );
      expect(response.status).toBe(200);
      expect(response.headers.get("x-pinion-model")).toBe("http-explain@1");
      expect(response.headers.get("x-pinion-runtime")).toBe(runtime);
      const body = (await response.json()) as Body;
      expect(body).toMatchObject({ model_name: "http-explain", model_version: "1", id: "why-1" });
      expect(body.parameters).toMatchObject({
        method: "shap",
        baseline: "background",
        baseline_rows: 10,
        samples: 1000,
        evaluations: 1 + 10 + 1000 * 10,
        seed: 7,
        runtime,
      });
      expect(body.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([
        ["logits", "FP32", [1, 10]],
        ["attributions", "FP32", [1, 64]],
      ]);
      const [fx] = await infer("/v2/models/http-explain", [x], runtime);
      const background = await infer("/v2/models/http-explain", inputs.slice(100, 110), runtime);
      const target = body.parameters!.target as number;
      const expected = sum(background.map((row) => row[target]!)) / background.length;
      expect(Math.abs(sum(body.outputs[1]!.data) - (fx![target]! - expected))).toBeLessThan(1e-3);
    });
  }

  it("answers through an alias and the request's alias parameter", async () => {
    const auth = { authorization: `Bearer ${env.PINION_ADMIN_TOKEN}` };
    const promoted = await api("/admin/models/http-explain/promotions", {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ version: 1, alias: "stable", force: true }),
    });
    expect([200, 201]).toContain(promoted.status);
    const viaPath = await postJson(
      "/v2/models/http-explain/aliases/stable/explain",
      explainBody(inputs[0]!, { samples: 200 }),
    );
    expect(viaPath.status).toBe(200);
    expect(viaPath.headers.get("x-pinion-alias")).toBe("stable");
    const viaParameter = await postJson(
      "/v2/models/http-explain/explain",
      explainBody(inputs[0]!, { samples: 200, alias: "stable" }),
    );
    expect(viaParameter.status).toBe(200);
    expect(viaParameter.headers.get("x-pinion-alias")).toBe("stable");
  });

  it("refuses work past the budget, bad parameters and binary bodies with 400", async () => {
    const x = inputs[0]!;
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { samples: 100_000 },
        /needs 1000011 model evaluations .* allows 200000 \(MAX_EXPLAIN_EVALUATIONS\)/,
      ],
      [{ method: "anchors" }, /use one of shap, occlusion, integrated_gradients/],
      [{ baseline: "median" }, /baseline' is "median"/],
      [
        { method: "occlusion", window: 65 },
        /occlusion window 1x65 is larger than the input's 1x64/,
      ],
      [{ seed: -1 }, /'seed' is -1; it must be an integer from 0 to 4294967295/],
    ];
    for (const [parameters, message] of cases) {
      const response = await postJson(
        "/v2/models/http-explain/explain",
        explainBody(x, parameters),
      );
      expect(response.status).toBe(400);
      expect(((await response.json()) as Body).error).toMatch(message);
    }
    const binary = await api("/v2/models/http-explain/explain", {
      method: "POST",
      headers: {
        "content-type": "application/octet-stream",
        "inference-header-content-length": "0",
      },
      body: new Uint8Array(256),
    });
    expect(binary.status).toBe(400);
    const missing = await postJson("/v2/models/no-such-model/explain", explainBody(x));
    expect(missing.status).toBe(404);
  });
});

describe("background sets at the admin API's commit", () => {
  const auth = { authorization: `Bearer ${env.PINION_ADMIN_TOKEN}` };
  const admin = (path: string, method = "GET", body?: unknown) =>
    api(`/admin/${path}`, {
      method,
      headers: { ...auth, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

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
      const complete = await admin(`models/${model}/uploads/${started.uploadId}/complete`, "POST", {
        sha256,
        parts: [await part.json()],
      });
      expect(complete.status).toBe(200);
    }
    return { key: started.key, bytes: bytes.byteLength, sha256, mediaType };
  }

  it("refuses rows of the wrong shape, commits good ones and explains with them", async () => {
    const model = "admin-background";
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
    const background = (rows: unknown[]) =>
      encodeBackground({ format: BACKGROUND_FORMAT, inputName: "input", rows });
    const short = await stored(model, background([new Array(63).fill(0)]), "application/json");
    const refused = await admin(`models/${model}/versions`, "POST", {
      ...fields,
      artifacts: { onnx, background: short },
    });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as Body).error).toBe(
      "background artifact: background row 0 has shape [63]; 'input' takes [64] per row",
    );
    const good = await stored(model, background(inputs.slice(0, 4)), "application/json");
    const committed = await admin(`models/${model}/versions`, "POST", {
      ...fields,
      artifacts: { onnx, background: good },
    });
    expect(committed.status).toBe(201);
    const response = await postJson(`/v2/models/${model}/explain`, explainBody(inputs[9]!));
    expect(response.status).toBe(200);
    expect(((await response.json()) as Body).parameters).toMatchObject({
      baseline: "background",
      baseline_rows: 4,
    });
  });
});
