import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { GOLDEN_FORMAT, parseGolden } from "../../convert/golden";

const read = (path: string) =>
  readFileSync(new URL(`../../fixtures/${path}`, import.meta.url), "utf8");
const simpleIn = [{ name: "input", datatype: "FP32" as const, shape: [-1, 10] }];
const simpleOut = [{ name: "output", datatype: "FP32" as const, shape: [-1, 10] }];

describe("parseGolden", () => {
  it("accepts the seed model's cases.json and a classifier's testset.json", () => {
    const golden = parseGolden(read("seed-simple/cases.json"), simpleIn, simpleOut);
    expect(golden).toMatchObject({
      format: GOLDEN_FORMAT,
      inputName: "input",
      outputName: "output",
    });
    expect(golden.inputs).toHaveLength(100);
    expect(golden.expected).toHaveLength(100);
    const digits = parseGolden(
      read("digits-cnn/testset.json"),
      [{ name: "input", datatype: "FP32", shape: [-1, 1, 8, 8] }],
      [{ name: "logits", datatype: "FP32", shape: [-1, 10] }],
    );
    expect(digits.labels).toHaveLength(360);
    expect(digits.outputName).toBe("logits");
  });

  it("accepts integer token ids for an INT64 input, and refuses fractions there", () => {
    const ids = [{ name: "input_ids", datatype: "INT64" as const, shape: [-1, 8] }];
    const logits = [{ name: "logits", datatype: "FP32" as const, shape: [-1, 4] }];
    const text = parseGolden(read("text-small/testset.json"), ids, logits);
    expect(text.inputName).toBe("input_ids");
    expect(text.inputs).toHaveLength(200);
    const fraction = [[1, 2, 3, 4, 5, 6, 7, 8.5]];
    expect(() =>
      parseGolden(JSON.stringify({ inputs: fraction, logits: [[0, 0, 0, 0]] }), ids, logits),
    ).toThrow(/golden input 0 holds values that are not INT64 integers/);
  });

  it("refuses files that do not fit the model", () => {
    expect(() => parseGolden("{", simpleIn, simpleOut)).toThrow(/not valid JSON/);
    expect(() => parseGolden(JSON.stringify({ inputs: [[1]] }), simpleIn, simpleOut)).toThrow(
      /needs `expected`/,
    );
    expect(() =>
      parseGolden(
        JSON.stringify({ inputs: [new Array(9).fill(0)], expected: [new Array(10).fill(0)] }),
        simpleIn,
        simpleOut,
      ),
    ).toThrow(/golden input 0 has shape \[9\]; 'input' takes \[10\] per case/);
    expect(() =>
      parseGolden(
        JSON.stringify({ inputs: [new Array(10).fill(0)], expected: [] }),
        simpleIn,
        simpleOut,
      ),
    ).toThrow(/1 inputs but 0 expected outputs/);
    expect(() =>
      parseGolden(
        JSON.stringify({
          output_name: "probs",
          inputs: [new Array(10).fill(0)],
          expected: [new Array(10).fill(0)],
        }),
        simpleIn,
        simpleOut,
      ),
    ).toThrow(/output_name must be one of: output/);
  });
});
