/**
 * Explanations on real runtimes inside workerd: the data plane's `explain`
 * over versions published to the emulated R2, evaluated by the int8 kernels
 * and onnxruntime-web, checked against what `answer` (a plain inference)
 * returns for the same inputs.
 */
import { beforeAll, describe, expect, it } from "vitest";
import kernelsWasm from "../../../build/kernels.wasm";
import { linearStackToOnnx, type LinearLayer } from "../../../convert/linear-stack";
import { PinionError } from "../../../core/errors";
import type { InferenceResponse } from "../../../core/protocol/types";
import { BACKGROUND_MEDIA_TYPE, encodeBackground } from "../../../core/registry/background";
import { Int8Runtime } from "../../../core/runtimes/int8/int8-runtime";
import { OrtRuntime } from "../../../core/runtimes/ort/ort-runtime";
import { readOnnxSignature } from "../../../core/runtimes/ort/tensor-types";
import { parseServingConfig } from "../../../core/serving/config";
import { edgeDataPlane, type DataPlane } from "../../../core/serving/data-plane";
import {
  explain,
  parseExplainSettings,
  plannedWork,
  seededRandom,
  type Evaluate,
} from "../../../core/serving/explainer";
import { Trace } from "../../../core/serving/trace";
import { loadOrt } from "../../../worker/ort-workerd";
import { fixtureJson, publishFixture, registry } from "../../worker/helpers";

interface Cases {
  inputs: number[][];
}

function plane(vars: Record<string, string> = {}): DataPlane {
  return edgeDataPlane(
    registry(),
    [new Int8Runtime(kernelsWasm), new OrtRuntime(loadOrt)],
    parseServingConfig({ VERSION_LIST_TTL_MS: "0", ALIAS_TTL_MS: "0", ...vars }),
  );
}

async function explainVia(
  p: DataPlane,
  name: string,
  body: unknown,
  runtime?: string,
): Promise<InferenceResponse> {
  const bytes = new TextEncoder().encode(JSON.stringify(body));
  return p.explain(
    {
      reference: { name },
      body: { length: bytes.length, bytes: async () => bytes, stream: () => null },
      ...(runtime ? { runtime } : {}),
      requestId: "test",
    },
    new Trace(),
  );
}

const attributionsOf = (response: InferenceResponse) =>
  response.outputs.find((o) => o.name === "attributions")!.data as number[];
const sum = (values: readonly number[]) => values.reduce((a, v) => a + v, 0);

/** The served model's output rows for `rows`, through a plain inference on `runtime`. */
async function served(
  p: DataPlane,
  name: string,
  rows: readonly (readonly number[])[],
  shape: number[],
  runtime: "int8" | "ort",
): Promise<number[][]> {
  const manifest = await p.manifest(name);
  const { response } = await p.answer(manifest, {
    parameters: { runtime },
    inputs: [
      {
        name: manifest.inputs[0]!.name,
        datatype: "FP32",
        shape: [rows.length, ...shape],
        data: rows.flat(),
      },
    ],
  });
  const data = response.outputs[0]!.data as number[];
  const width = data.length / rows.length;
  return rows.map((_, i) => data.slice(i * width, (i + 1) * width));
}

function request(x: readonly number[], shape: number[], parameters: Record<string, unknown>) {
  return {
    inputs: [{ name: "input", datatype: "FP32", shape: [1, ...shape], data: x }],
    parameters,
  };
}

async function failure(promise: Promise<unknown>): Promise<PinionError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PinionError);
  return error as PinionError;
}

/** A Linear layer with weights from a seeded stream (and optionally a zeroed input column). */
function layer(name: string, inputs: number, outputs: number, seed: number, zeroColumn?: number) {
  const random = seededRandom(seed);
  const weight = Float32Array.from({ length: inputs * outputs }, (_, i) =>
    i % inputs === zeroColumn ? 0 : Math.fround(random() * 2 - 1),
  );
  const bias = Float32Array.from({ length: outputs }, () => Math.fround(random() - 0.5));
  return {
    name,
    inFeatures: inputs,
    outFeatures: outputs,
    weightKey: `${name}.weight`,
    weight,
    biasKey: `${name}.bias`,
    bias,
  } satisfies LinearLayer;
}

/** Publishes an ONNX model built here, with a background set. */
async function publishBuilt(name: string, onnx: Uint8Array, background: number[][]) {
  const { inputs, outputs } = await readOnnxSignature(await loadOrt(), onnx);
  return registry().publish({
    name,
    platform: "onnx_onnxv1",
    inputs,
    outputs,
    runtime: "ort",
    artifacts: {
      onnx: { bytes: onnx, mediaType: "application/x-onnx" },
      background: {
        bytes: encodeBackground({
          format: "pinion.background/1",
          inputName: "input",
          rows: background,
        }),
        mediaType: BACKGROUND_MEDIA_TYPE,
      },
    },
  });
}

describe("KernelSHAP on digits-mlp", () => {
  let cases: Cases;
  let background: number[][];
  beforeAll(async () => {
    cases = await fixtureJson<Cases>("digits-mlp/testset.json");
    background = cases.inputs.slice(50, 70);
    await publishFixture("explain-mlp-int8", "digits-mlp/digits_mlp.onnx", undefined, {
      int8: true,
      background,
    });
    await publishFixture("explain-mlp-ort", "digits-mlp/digits_mlp.onnx", undefined, {
      background,
    });
  });

  for (const [name, runtime] of [
    ["explain-mlp-int8", "int8"],
    ["explain-mlp-ort", "ort"],
  ] as const) {
    it(`sums to f(x) − E[f(background)] within 1e-3 on the ${runtime} runtime`, async () => {
      const p = plane();
      for (const x of cases.inputs.slice(0, 3)) {
        const response = await explainVia(p, name, request(x, [64], { samples: 1000 }));
        expect(response.parameters).toMatchObject({
          method: "shap",
          runtime,
          baseline: "background",
          baseline_rows: 20,
          samples: 1000,
          exact: false,
        });
        // f(x) and E[f(background)] from plain inferences on the same runtime.
        const [fx] = await served(p, name, [x], [64], runtime);
        const target = response.parameters!.target as number;
        const top = fx!.indexOf(Math.max(...fx!));
        expect(target).toBe(top);
        const onBackground = await served(p, name, background, [64], runtime);
        const expected = sum(onBackground.map((row) => row[target]!)) / background.length;
        expect(response.parameters!.prediction).toBeCloseTo(fx![target]!, 5);
        expect(response.parameters!.base_value).toBeCloseTo(expected, 4);
        const attributions = attributionsOf(response);
        expect(attributions).toHaveLength(64);
        expect(Math.abs(sum(attributions) - (fx![target]! - expected))).toBeLessThan(1e-3);
        // The prediction is answered too, as inference answers it.
        const logits = response.outputs.find((o) => o.name === "logits")!;
        expect(logits.shape).toEqual([1, 10]);
        (logits.data as number[]).forEach((v, i) => expect(v).toBeCloseTo(fx![i]!, 5));
      }
    });
  }

  it("gives identical answers for a fixed seed, and other samples for another", async () => {
    const x = cases.inputs[7]!;
    const first = await explainVia(
      plane(),
      "explain-mlp-int8",
      request(x, [64], { seed: 42, samples: 300 }),
    );
    const again = await explainVia(
      plane(),
      "explain-mlp-int8",
      request(x, [64], { seed: 42, samples: 300 }),
    );
    const other = await explainVia(
      plane(),
      "explain-mlp-int8",
      request(x, [64], { seed: 43, samples: 300 }),
    );
    expect(attributionsOf(again)).toEqual(attributionsOf(first));
    expect(attributionsOf(other)).not.toEqual(attributionsOf(first));
    // Efficiency holds for every seed: it is imposed, not estimated.
    expect(sum(attributionsOf(other))).toBeCloseTo(sum(attributionsOf(first)), 4);
  });

  it("refuses work past MAX_EXPLAIN_EVALUATIONS before running anything", async () => {
    const x = cases.inputs[0]!;
    const p = plane({ MAX_EXPLAIN_EVALUATIONS: "5000" });
    // 20 background rows × 300 coalitions = 6000 evaluations (+21).
    const error = await failure(
      explainVia(p, "explain-mlp-int8", request(x, [64], { samples: 300 })),
    );
    expect(error.kind).toBe("invalid_argument");
    expect(error.message).toMatch(
      /6021 model evaluations .*allows 5000 \(MAX_EXPLAIN_EVALUATIONS\)/,
    );
    // Without explicit samples the default shrinks to the budget and says so.
    const fitted = await explainVia(p, "explain-mlp-int8", request(x, [64], {}));
    expect(fitted.parameters!.samples).toBe(Math.floor((5000 - 21) / 20));
    expect(fitted.parameters!.evaluations).toBeLessThanOrEqual(5000);
  });

  it("uses the golden mean or zeros when asked, and refuses a missing background set", async () => {
    await publishFixture("explain-mlp-golden", "digits-mlp/digits_mlp.onnx", undefined, {
      golden: "digits-mlp/testset.json",
    });
    const p = plane();
    const x = cases.inputs[3]!;
    const golden = await explainVia(p, "explain-mlp-golden", request(x, [64], { samples: 200 }));
    expect(golden.parameters!.baseline).toMatch(/^golden mean \(\d+ cases\)$/);
    const zeros = await explainVia(
      p,
      "explain-mlp-golden",
      request(x, [64], { baseline: "zeros", samples: 200 }),
    );
    expect(zeros.parameters!.baseline).toBe("zeros");
    const [fx] = await served(p, "explain-mlp-golden", [x], [64], "ort");
    const [f0] = await served(p, "explain-mlp-golden", [new Array(64).fill(0)], [64], "ort");
    const t = zeros.parameters!.target as number;
    expect(Math.abs(sum(attributionsOf(zeros)) - (fx![t]! - f0![t]!))).toBeLessThan(1e-3);
    const error = await failure(
      explainVia(p, "explain-mlp-golden", request(x, [64], { baseline: "background" })),
    );
    expect(error.message).toMatch(/has no background set; publish it with --background/);
  });
});

describe("KernelSHAP on models with known Shapley values", () => {
  it("equals w·(x − mean background) on a linear model, enumerated and sampled", async () => {
    const linear = layer("fc", 10, 3, 1);
    await publishBuilt(
      "explain-linear",
      linearStackToOnnx([linear]),
      Array.from({ length: 5 }, (_, r) =>
        Array.from({ length: 10 }, (_, j) => Math.fround(Math.sin(r * 10 + j))),
      ),
    );
    const background = Array.from({ length: 5 }, (_, r) =>
      Array.from({ length: 10 }, (_, j) => Math.fround(Math.sin(r * 10 + j))),
    );
    const x = Array.from({ length: 10 }, (_, j) => Math.fround(j / 3 - 1.2));
    for (const [samples, exact] of [
      [2000, true],
      [120, false],
    ] as const) {
      for (const target of [0, 2]) {
        const response = await explainVia(
          plane(),
          "explain-linear",
          request(x, [10], { samples, target }),
        );
        expect(response.parameters).toMatchObject({ exact, target });
        const attributions = attributionsOf(response);
        attributions.forEach((phi, j) => {
          const mean = sum(background.map((row) => row[j]!)) / background.length;
          const w = linear.weight[target * 10 + j]!;
          expect(Math.abs(phi - w * (x[j]! - mean))).toBeLessThan(1e-5);
        });
      }
    }
  });

  it("gives an input the model ignores exactly 0", async () => {
    const hidden = layer("fc1", 6, 8, 2, 3);
    const out = layer("fc2", 8, 2, 3);
    const background = [
      [0.1, -0.2, 0.3, 0.9, 0.5, -0.6],
      [-0.4, 0.2, 0.0, -0.7, 0.1, 0.3],
    ];
    await publishBuilt("explain-ignores", linearStackToOnnx([hidden, out]), background);
    const x = [1, 0.5, -1, 2, -0.5, 0.25];
    const response = await explainVia(plane(), "explain-ignores", request(x, [6], { target: 1 }));
    expect(response.parameters!.exact).toBe(true);
    const attributions = attributionsOf(response);
    expect(Math.abs(attributions[3]!)).toBeLessThan(1e-6);
    // Every other input moves the output here.
    for (const j of [0, 1, 2, 4, 5]) expect(Math.abs(attributions[j]!)).toBeGreaterThan(1e-4);
  });
});

describe("occlusion on digits-cnn", () => {
  for (const int8 of [false, true]) {
    it(`concentrates on the drawn strokes (${int8 ? "int8" : "ort"})`, async () => {
      const name = `explain-cnn-${int8 ? "int8" : "ort"}`;
      await publishFixture(name, "digits-cnn/digits_cnn.onnx", undefined, { int8 });
      const cases = await fixtureJson<{ inputs: number[][][][] }>("digits-cnn/testset.json");
      const p = plane();
      let share = 0;
      let area = 0;
      const images = cases.inputs.slice(0, 10);
      for (const image of images) {
        const x = image.flat(2);
        const response = await explainVia(p, name, {
          inputs: [{ name: "input", datatype: "FP32", shape: [1, 1, 8, 8], data: x }],
          parameters: { method: "occlusion", window: 2, stride: 1, baseline: 0 },
        });
        expect(response.parameters).toMatchObject({
          method: "occlusion",
          runtime: int8 ? "int8" : "ort",
          samples: 49,
          evaluations: 50,
          window: "2x2",
          stride: "1x1",
          baseline: "value 0",
        });
        const attributions = attributionsOf(response);
        expect(response.outputs.find((o) => o.name === "attributions")!.shape).toEqual([
          1, 1, 8, 8,
        ]);
        let inside = 0;
        let positive = 0;
        attributions.forEach((a, i) => {
          if (a <= 0) return;
          positive += a;
          if (x[i]! > 0) inside += a;
        });
        share += inside / positive;
        area += x.filter((v) => v > 0).length / x.length;
      }
      share /= images.length;
      area /= images.length;
      // Measured: positive mass lies mostly on the strokes, far above their share of the image.
      expect(share).toBeGreaterThan(area + 0.25);
      expect(share).toBeGreaterThan(0.75);
    });
  }
});

describe("integrated gradients by finite differences", () => {
  it("is nearly complete: Σφ ≈ f(x) − f(baseline)", async () => {
    await publishFixture("explain-ig", "digits-mlp/digits_mlp.onnx");
    const cases = await fixtureJson<Cases>("digits-mlp/testset.json");
    const x = cases.inputs[4]!;
    const response = await explainVia(
      plane(),
      "explain-ig",
      request(x, [64], { method: "integrated_gradients", samples: 64 }),
    );
    const gap =
      (response.parameters!.prediction as number) - (response.parameters!.base_value as number);
    expect(response.parameters!.baseline).toBe("zeros");
    expect(Math.abs(response.parameters!.convergence_delta as number)).toBeLessThan(
      0.02 * Math.abs(gap),
    );
    expect(sum(attributionsOf(response)) - gap).toBeCloseTo(
      response.parameters!.convergence_delta as number,
      4,
    );
  });
});

describe("explain requests the plane refuses", () => {
  it("refuses origin-placed versions, batches, unknown parameters and bad targets", async () => {
    await publishFixture("explain-refusals", "seed-simple/simple_model.onnx");
    await publishFixture("explain-origin", "seed-simple/simple_model.onnx", undefined, {
      placement: "origin",
    });
    const p = plane();
    const x = Array.from({ length: 10 }, (_, i) => i / 10);
    expect((await failure(explainVia(p, "explain-origin", request(x, [10], {})))).kind).toBe(
      "not_implemented",
    );
    const batch = {
      inputs: [{ name: "input", datatype: "FP32", shape: [2, 10], data: [...x, ...x] }],
    };
    expect((await failure(explainVia(p, "explain-refusals", batch))).message).toMatch(
      /one instance at a time/,
    );
    expect(
      (await failure(explainVia(p, "explain-refusals", request(x, [10], { method: "lime" }))))
        .message,
    ).toMatch(/use one of shap, occlusion, integrated_gradients/);
    expect(
      (await failure(explainVia(p, "explain-refusals", request(x, [10], { target: 10 })))).message,
    ).toMatch(/target 10 is out of range: the output row has 10 values/);
    expect(
      (await failure(explainVia(p, "explain-refusals", request(x, [10], { windows: 2 })))).message,
    ).toMatch(/unknown explain parameter "windows"/);
  });
});

describe("KernelSHAP against Shapley values known in closed form", () => {
  // f(x) = Σ aⱼxⱼ + Σ bᵢⱼxᵢxⱼ over pairs, from a zero baseline: each pair's product is shared
  // equally, so φᵢ = aᵢxᵢ + ½ Σⱼ bᵢⱼxᵢxⱼ (no model file has this form; the explainer takes any
  // evaluator, so the algorithm is checked here on its own).
  function quadratic(m: number, seed: number) {
    const random = seededRandom(seed);
    const a = Array.from({ length: m }, () => random() * 2 - 1);
    const b = Array.from({ length: m * m }, () => (random() < 0.2 ? random() * 2 - 1 : 0));
    const f = (row: ArrayLike<number>) => {
      let value = 0;
      for (let i = 0; i < m; i++) {
        value += a[i]! * row[i]!;
        for (let j = i + 1; j < m; j++) value += b[i * m + j]! * row[i]! * row[j]!;
      }
      return value;
    };
    const shapley = (x: readonly number[]) =>
      x.map((xi, i) => {
        let phi = a[i]! * xi;
        for (let j = 0; j < m; j++) {
          if (j !== i) phi += (b[Math.min(i, j) * m + Math.max(i, j)]! * xi * x[j]!) / 2;
        }
        return phi;
      });
    const evaluate: Evaluate = async (rows, count) =>
      Float32Array.from({ length: count }, (_, r) => f(rows.subarray(r * m, (r + 1) * m)));
    return { evaluate, shapley };
  }

  // Enumerated, the fit is the Shapley values of any game; sampled with pairs (each coalition
  // and its complement), it is still exact for games of pairwise interactions like this one.
  it("is exact when every coalition is enumerated, and with paired sampling", async () => {
    for (const [m, samples, tolerance] of [
      [8, 254, 1e-5],
      [24, 1000, 1e-5],
    ] as const) {
      const { evaluate, shapley } = quadratic(m, m);
      const x = Array.from({ length: m }, (_, i) => Math.fround(Math.cos(i) * 1.5));
      const settings = parseExplainSettings({ samples, seed: 3 });
      const explanation = await explain(
        settings,
        Float32Array.from(x),
        [m],
        { rows: new Float32Array(m), count: 1, description: "zeros" },
        samples,
        evaluate,
      );
      expect(explanation.exact).toBe(m === 8);
      const want = shapley(x);
      const scale = Math.max(...want.map(Math.abs));
      explanation.attributions.forEach((phi, i) => {
        expect(Math.abs(phi - want[i]!)).toBeLessThan(tolerance * Math.max(1, scale));
      });
    }
  });

  it("plans the work before running: evaluations per method, defaults shrunk to the budget", () => {
    const shap = parseExplainSettings({});
    expect(plannedWork(shap, [64], 20, 200_000)).toEqual({
      samples: 2048,
      evaluations: 1 + 20 + 2048 * 20,
    });
    expect(plannedWork(shap, [64], 200, 200_000)).toEqual({
      samples: 998,
      evaluations: 1 + 200 + 998 * 200,
    });
    const occlusion = parseExplainSettings({ method: "occlusion", window: "3x2", stride: 2 });
    // Rows 0, 2, 4, 5 (the last flush with the edge) × columns 0, 2, 4, 6.
    expect(plannedWork(occlusion, [1, 8, 8], 1, 1000)).toEqual({ samples: 16, evaluations: 17 });
    const ig = parseExplainSettings({ method: "integrated_gradients" });
    expect(plannedWork(ig, [64], 1, 200_000)).toEqual({ samples: 32, evaluations: 2 + 32 * 128 });
    expect(() => plannedWork(parseExplainSettings({ samples: 100 }), [64], 20, 1000)).toThrow(
      /needs 2021 model evaluations \(100 coalitions × 20 background rows\); this server allows 1000/,
    );
  });
});
