/**
 * The ONNX backend conformance cases for the quantisation operators, run on
 * Pinion's int8 kernels: integer outputs must match exactly, float outputs
 * bit for bit (the kernels compute in f32 exactly as the reference does).
 */
import { readdirSync, readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import type { Bytes, Int8Kernels } from "../../core/runtimes/int8/kernels";
import { loadKernels } from "../../scripts/lib/kernels-node";

interface JsonTensor {
  name: string;
  dims: number[];
  dtype: "float32" | "uint8" | "int8" | "int32";
  data: number[];
}
interface Case {
  case: string;
  op_type: string;
  expanded: boolean;
  attributes: Record<string, number> | null;
}

const root = new URL("../../fixtures/onnx-conformance/", import.meta.url);
const OPS = [
  "QuantizeLinear",
  "DequantizeLinear",
  "DynamicQuantizeLinear",
  "MatMulInteger",
  "QLinearMatMul",
];

function loadCase(dir: string) {
  const info = JSON.parse(readFileSync(new URL(`${dir}/case.json`, root), "utf8")) as Case;
  const set = new URL(`${dir}/test_data_set_0/`, root);
  const files = readdirSync(set);
  const read = (prefix: string) =>
    files
      .filter((f) => f.startsWith(prefix) && f.endsWith(".json"))
      .sort((a, b) => Number(/\d+/.exec(a)![0]) - Number(/\d+/.exec(b)![0]))
      .map((f) => JSON.parse(readFileSync(new URL(f, set), "utf8")) as JsonTensor);
  return { info, inputs: read("input_"), outputs: read("output_") };
}

const cases = readdirSync(root)
  .filter((d) => d.startsWith("test_"))
  .map(loadCase)
  .filter((c) => OPS.includes(c.info.op_type));

function typed(t: JsonTensor): Float32Array | Uint8Array | Int8Array | Int32Array {
  switch (t.dtype) {
    case "float32":
      return Float32Array.from(t.data);
    case "uint8":
      return Uint8Array.from(t.data);
    case "int8":
      return Int8Array.from(t.data);
    case "int32":
      return Int32Array.from(t.data);
  }
}

const scalar = (t: JsonTensor) => t.data[0]!;
const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

/** Runs 2-D kernels over the leading (batch) dimensions of N-D MatMul operands. */
function batched(
  a: JsonTensor,
  b: JsonTensor,
  run: (a: Bytes, b: Bytes, m: number, k: number, n: number) => ArrayLike<number>,
): number[] {
  const [m, k] = a.dims.slice(-2) as [number, number];
  const n = b.dims.at(-1)!;
  const batches = size(a.dims.slice(0, -2));
  const A = typed(a) as Bytes;
  const B = typed(b) as Bytes;
  const bBatches = size(b.dims.slice(0, -2));
  const out: number[] = [];
  for (let i = 0; i < batches; i++) {
    const bi = bBatches === 1 ? 0 : i;
    out.push(
      ...Array.from(
        run(
          A.subarray(i * m * k, (i + 1) * m * k),
          B.subarray(bi * k * n, (bi + 1) * k * n),
          m,
          k,
          n,
        ),
      ),
    );
  }
  return out;
}

function evaluate(kernels: Int8Kernels, c: ReturnType<typeof loadCase>): ArrayLike<number>[] {
  const ins = c.inputs;
  switch (c.info.op_type) {
    case "QuantizeLinear":
    case "DequantizeLinear": {
      const [x, scale, zp] = ins as [JsonTensor, JsonTensor, JsonTensor?];
      const axis = c.info.attributes?.axis ?? 1;
      const zeroPoint = zp ?? { ...scale, dtype: "uint8", data: scale.data.map(() => 0) };
      const perAxis = scale.dims.length === 1 && scale.dims[0]! > 1;
      if (c.info.op_type === "QuantizeLinear") {
        const signed = zeroPoint.dtype === "int8";
        return [
          perAxis
            ? kernels.quantizeLinearAxis(
                typed(x) as Float32Array,
                x.dims,
                axis,
                Float32Array.from(scale.data),
                zeroPoint.data,
                signed,
              )
            : kernels.quantizeLinear(
                typed(x) as Float32Array,
                scalar(scale),
                scalar(zeroPoint),
                signed,
              ),
        ];
      }
      return [
        perAxis
          ? kernels.dequantizeLinearAxis(
              typed(x) as Bytes,
              x.dims,
              axis,
              Float32Array.from(scale.data),
              zeroPoint.data,
            )
          : kernels.dequantizeLinear(typed(x) as Bytes, scalar(scale), scalar(zeroPoint)),
      ];
    }
    case "DynamicQuantizeLinear": {
      const { y, scale, zeroPoint } = kernels.dynamicQuantizeLinear(typed(ins[0]!) as Float32Array);
      return [y, [scale], [zeroPoint]];
    }
    case "MatMulInteger": {
      const [a, b, azp, bzp] = ins as [JsonTensor, JsonTensor, JsonTensor?, JsonTensor?];
      const aZp = azp ? (azp.data.length === 1 ? azp.data[0]! : azp.data) : 0;
      const bZp = bzp ? (bzp.data.length === 1 ? bzp.data[0]! : bzp.data) : 0;
      return [batched(a, b, (A, B, m, k, n) => kernels.matMulInteger(A, B, m, k, n, aZp, bZp))];
    }
    case "QLinearMatMul": {
      const [a, as, azp, b, bs, bzp, ys, yzp] = ins as JsonTensor[];
      return [
        batched(a!, b!, (A, B, m, k, n) =>
          kernels.qlinearMatMul(
            A,
            scalar(as!),
            scalar(azp!),
            B,
            bs!.data.length === 1 ? scalar(bs!) : Float32Array.from(bs!.data),
            bzp!.data.length === 1 ? scalar(bzp!) : bzp!.data,
            scalar(ys!),
            scalar(yzp!),
            yzp!.dtype === "int8",
            m,
            k,
            n,
          ),
        ),
      ];
    }
  }
  throw new Error(`no kernel for ${c.info.op_type}`);
}

describe.each(["release", "debug"] as const)("ONNX conformance on the %s kernels", (build) => {
  let kernels: Int8Kernels;
  beforeAll(async () => {
    kernels = await loadKernels(build);
  });

  it("covers every quantisation case in the fixtures", () => {
    const ops = new Set(cases.map((c) => c.info.op_type));
    expect([...ops].sort()).toEqual([...OPS].sort());
    expect(cases.length).toBe(13);
  });

  it.each(cases.map((c) => [c.info.case, c] as const))("%s", (_, c) => {
    const got = evaluate(kernels, c);
    expect(got).toHaveLength(c.outputs.length);
    c.outputs.forEach((expected, i) => {
      // Bit-exact: Float32Array.from keeps the exact f32 values of the JSON.
      expect(Array.from(got[i]!), `${c.info.case} output ${i}`).toEqual(
        Array.from(typed(expected)),
      );
    });
  });
});
