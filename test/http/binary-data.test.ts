/**
 * The binary tensor data extension over HTTP, with requests built byte by byte
 * as `extension_binary_data.md` lays them out: a JSON header of
 * `Inference-Header-Content-Length` bytes, then each tensor's little-endian
 * bytes; answers parsed back the same way and compared with the fixtures.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { api, fixtureJson, postJson, publishFixture } from "../worker/helpers";

interface SeedCases {
  inputs: number[][];
  expected: number[][];
}
interface OutputHeader {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: { binary_data_size?: number };
  data?: number[];
}
interface ResponseHeader {
  model_name: string;
  model_version: string;
  outputs: OutputHeader[];
}

const utf8 = (text: string) => new TextEncoder().encode(text);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** FP32 values as little-endian bytes, through DataView. */
function fp32Bytes(values: readonly number[]): Uint8Array {
  const view = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return new Uint8Array(view.buffer);
}

/** FP16 bits of a normal value exactly representable in FP16 (the test's values are). */
function fp16Bits(value: number): number {
  if (value === 0) return Object.is(value, -0) ? 0x8000 : 0;
  const sign = value < 0 ? 0x8000 : 0;
  const abs = Math.abs(value);
  const exponent = Math.floor(Math.log2(abs));
  const mantissa = (abs / 2 ** exponent - 1) * 1024;
  if (!Number.isInteger(mantissa) || exponent < -14 || exponent > 15) {
    throw new Error(`${value} is not a normal FP16 value`);
  }
  return sign | ((exponent + 15) << 10) | mantissa;
}

function fp16Bytes(values: readonly number[]): Uint8Array {
  const view = new DataView(new ArrayBuffer(values.length * 2));
  values.forEach((v, i) => view.setUint16(i * 2, fp16Bits(v), true));
  return new Uint8Array(view.buffer);
}

/** A body as the extension lays it out, with its header length. */
function binaryBody(header: object, ...tensors: Uint8Array[]) {
  const json = utf8(JSON.stringify(header));
  return { body: concat(json, ...tensors), headerLength: json.length };
}

function postBinary(path: string, body: Uint8Array, headerLength: number | string) {
  return api(path, {
    method: "POST",
    headers: {
      "content-type": "application/octet-stream",
      "inference-header-content-length": String(headerLength),
    },
    body,
  });
}

/** Splits a binary answer into its JSON header and each binary output's FP32 values. */
async function readBinary(response: Response) {
  expect(response.headers.get("content-type")).toBe("application/octet-stream");
  const headerLength = Number(response.headers.get("inference-header-content-length"));
  const body = new Uint8Array(await response.arrayBuffer());
  expect(Number(response.headers.get("content-length") ?? body.length)).toBe(body.length);
  const header = JSON.parse(
    new TextDecoder().decode(body.subarray(0, headerLength)),
  ) as ResponseHeader;
  let offset = headerLength;
  const tensors: number[][] = [];
  for (const output of header.outputs) {
    const size = output.parameters?.binary_data_size;
    if (size === undefined) continue;
    const view = new DataView(body.buffer, body.byteOffset + offset, size);
    tensors.push(Array.from({ length: size / 4 }, (_, i) => view.getFloat32(i * 4, true)));
    offset += size;
  }
  expect(offset).toBe(body.length);
  return { header, tensors };
}

function maxDiff(actual: readonly number[], expected: readonly number[]): number {
  expect(actual.length).toBe(expected.length);
  return actual.reduce((worst, v, i) => Math.max(worst, Math.abs(v - expected[i]!)), 0);
}

let cases: SeedCases;

beforeAll(async () => {
  await publishFixture("bin-simple", "seed-simple/simple_model.onnx");
  cases = await fixtureJson<SeedCases>("seed-simple/cases.json");
});

const INFER = "/v2/models/bin-simple/infer";

describe("binary tensor data requests", () => {
  it("answers all 100 seed cases sent as binary FP32, with a binary output, as PyTorch does", async () => {
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          {
            name: "input",
            shape: [100, 10],
            datatype: "FP32",
            parameters: { binary_data_size: 4000 },
          },
        ],
        outputs: [{ name: "output", parameters: { binary_data: true } }],
      },
      fp32Bytes(cases.inputs.flat()),
    );
    const response = await postBinary(INFER, body, headerLength);
    expect(response.status).toBe(200);
    const { header, tensors } = await readBinary(response);
    expect(header).toMatchObject({ model_name: "bin-simple", model_version: "1" });
    expect(header.outputs).toEqual([
      {
        name: "output",
        datatype: "FP32",
        shape: [100, 10],
        parameters: { binary_data_size: 4000 },
      },
    ]);
    expect(maxDiff(tensors[0]!, cases.expected.flat())).toBeLessThan(1e-5);
  });

  it("answers in JSON when no binary output is asked for, and identically to a JSON request", async () => {
    const rows = cases.inputs.slice(0, 4);
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          {
            name: "input",
            shape: [4, 10],
            datatype: "FP32",
            parameters: { binary_data_size: 160 },
          },
        ],
      },
      fp32Bytes(rows.flat()),
    );
    const binary = await postBinary(INFER, body, headerLength);
    expect(binary.status).toBe(200);
    expect(binary.headers.get("content-type")).toMatch(/application\/json/);
    expect(binary.headers.get("inference-header-content-length")).toBeNull();
    const fromBinary = (await binary.json()) as ResponseHeader;
    const json = await postJson(INFER, {
      inputs: [{ name: "input", shape: [4, 10], datatype: "FP32", data: rows }],
    });
    const fromJson = (await json.json()) as ResponseHeader;
    expect(fromBinary.outputs[0]!.data).toEqual(fromJson.outputs[0]!.data);
    expect(maxDiff(fromBinary.outputs[0]!.data!, cases.expected.slice(0, 4).flat())).toBeLessThan(
      1e-5,
    );
  });

  it("returns every output binary with binary_data_output, from a JSON-data request too", async () => {
    const response = await postJson(INFER, {
      inputs: [{ name: "input", shape: [2, 10], datatype: "FP32", data: cases.inputs.slice(0, 2) }],
      parameters: { binary_data_output: true },
    });
    expect(response.status).toBe(200);
    const { header, tensors } = await readBinary(response);
    expect(header.outputs[0]).toMatchObject({
      shape: [2, 10],
      parameters: { binary_data_size: 80 },
    });
    expect(maxDiff(tensors[0]!, cases.expected.slice(0, 2).flat())).toBeLessThan(1e-5);
    // binary_data: false on the output overrides it.
    const json = await postJson(INFER, {
      inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: cases.inputs[0] }],
      outputs: [{ name: "output", parameters: { binary_data: false } }],
      parameters: { binary_data_output: true },
    });
    expect(((await json.json()) as ResponseHeader).outputs[0]!.data).toHaveLength(10);
  });

  it("converts FP16 input exactly: the same answer, bit for bit, as those values in FP32", async () => {
    // Seed inputs rounded to 1/256: every one is exactly an FP16 value.
    const rows = cases.inputs.slice(0, 8).map((row) => row.map((v) => Math.round(v * 256) / 256));
    const header = (datatype: string, size: number) => ({
      inputs: [{ name: "input", shape: [8, 10], datatype, parameters: { binary_data_size: size } }],
      outputs: [{ name: "output", parameters: { binary_data: true } }],
    });
    const half = binaryBody(header("FP16", 160), fp16Bytes(rows.flat()));
    const single = binaryBody(header("FP32", 320), fp32Bytes(rows.flat()));
    const fromHalf = await readBinary(await postBinary(INFER, half.body, half.headerLength));
    const fromSingle = await readBinary(await postBinary(INFER, single.body, single.headerLength));
    expect(fromHalf.tensors[0]).toEqual(fromSingle.tensors[0]);
    // And close to PyTorch's answer for the unrounded inputs (the rounding is at most 1/512).
    expect(maxDiff(fromHalf.tensors[0]!, cases.expected.slice(0, 8).flat())).toBeLessThan(0.05);
  });

  it("answers a raw binary request (header length 0): the body is the one input, outputs binary", async () => {
    const rows = cases.inputs.slice(0, 3);
    const response = await postBinary(INFER, fp32Bytes(rows.flat()), 0);
    expect(response.status).toBe(200);
    const { header, tensors } = await readBinary(response);
    expect(header.outputs[0]).toMatchObject({ name: "output", shape: [3, 10] });
    expect(maxDiff(tensors[0]!, cases.expected.slice(0, 3).flat())).toBeLessThan(1e-5);
  });
});

describe("the decode phase", () => {
  const timingOf = (response: Response) => response.headers.get("server-timing") ?? "";

  it("reports decode in Server-Timing for binary and JSON inferences", async () => {
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          {
            name: "input",
            shape: [1, 10],
            datatype: "FP32",
            parameters: { binary_data_size: 40 },
          },
        ],
      },
      fp32Bytes(cases.inputs[0]!),
    );
    const binary = await postBinary(INFER, body, headerLength);
    expect(binary.status).toBe(200);
    const json = await postJson(INFER, {
      inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: cases.inputs[0] }],
    });
    expect(json.status).toBe(200);
    for (const response of [binary, json]) {
      expect(timingOf(response)).toMatch(
        /^resolve;dur=[\d.]+, decode;dur=[\d.]+, load;dur=[\d.]+, compute;dur=[\d.]+, total;dur=[\d.]+$/,
      );
    }
  });

  it("reports decode on a request whose body does not parse, too", async () => {
    const response = await api(INFER, { method: "POST", body: "{oops" });
    expect(response.status).toBe(400);
    expect(timingOf(response)).toMatch(/decode;dur=[\d.]+/);
  });

  it("ignores ?repeat_decode unless a benchmark enables it (PINION_BENCH_REPEAT_MAX)", async () => {
    const response = await postJson(`${INFER}?repeat_decode=1000`, {
      inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: cases.inputs[0] }],
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-pinion-decode-repeat")).toBeNull();
  });
});

describe("FP16 outputs", () => {
  /** FP16 bits to the number they are (written independently of the server's table). */
  const fromHalf = (h: number) => {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    return exponent === 0
      ? sign * mantissa * 2 ** -24
      : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  };

  it("returns an FP32 output as FP16 when asked, binary or JSON, within FP16 rounding of PyTorch", async () => {
    const rows = cases.inputs.slice(0, 10);
    const request = (binary: boolean) =>
      postJson(INFER, {
        inputs: [{ name: "input", shape: [10, 10], datatype: "FP32", data: rows }],
        outputs: [{ name: "output", parameters: { datatype: "FP16", binary_data: binary } }],
      });
    const response = await request(true);
    expect(response.status).toBe(200);
    const headerLength = Number(response.headers.get("inference-header-content-length"));
    const body = new Uint8Array(await response.arrayBuffer());
    const header = JSON.parse(
      new TextDecoder().decode(body.subarray(0, headerLength)),
    ) as ResponseHeader;
    expect(header.outputs[0]).toEqual({
      name: "output",
      datatype: "FP16",
      shape: [10, 10],
      parameters: { binary_data_size: 200 },
    });
    expect(body.length).toBe(headerLength + 200);
    const view = new DataView(body.buffer, body.byteOffset + headerLength, 200);
    const halves = Array.from({ length: 100 }, (_, i) => fromHalf(view.getUint16(i * 2, true)));
    const expected = cases.expected.slice(0, 10).flat();
    halves.forEach((v, i) => {
      // FP16 keeps 11 significant bits: half an ulp is |x| * 2^-11 (plus the model's own 1e-5).
      expect(Math.abs(v - expected[i]!)).toBeLessThanOrEqual(
        Math.abs(expected[i]!) * 2 ** -11 + 1e-5,
      );
    });
    const json = (await (await request(false)).json()) as ResponseHeader;
    expect(json.outputs[0]!.datatype).toBe("FP16");
    expect(json.outputs[0]!.data).toEqual(halves);
  });

  it("refuses a datatype an output cannot be returned in", async () => {
    const response = await postJson(INFER, {
      inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: cases.inputs[0] }],
      outputs: [{ name: "output", parameters: { datatype: "INT8" } }],
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(
      /output 'output' is FP32; it can be asked for as FP32 or FP16, not INT8/,
    );
  });
});

describe("binary framing errors are 400s that say what is wrong", () => {
  const input = (size: number, extra: object = {}) => ({
    inputs: [
      {
        name: "input",
        shape: [1, 10],
        datatype: "FP32",
        parameters: { binary_data_size: size },
        ...extra,
      },
    ],
  });
  const row = fp32Bytes(Array.from({ length: 10 }, (_, i) => i / 10));

  async function expect400(response: Response, message: RegExp) {
    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: string };
    expect(error).toMatch(message);
  }

  it("refuses a header length beyond the body, or a huge one", async () => {
    const { body } = binaryBody(input(40), row);
    await expect400(
      await postBinary(INFER, body, body.length + 1),
      /Inference-Header-Content-Length is \d+ but the body has only \d+ bytes/,
    );
    await expect400(
      await postBinary(INFER, body, "9".repeat(15)),
      /is 999999999999999 but the body has only/,
    );
    await expect400(await postBinary(INFER, body, "1e3"), /an integer >= 0/);
  });

  it("refuses a truncated body and a lying size", async () => {
    const { body, headerLength } = binaryBody(input(40), row);
    await expect400(
      await postBinary(INFER, body.subarray(0, body.length - 1), headerLength),
      /binary_data_size 40 but only 39 bytes of binary data remain/,
    );
    const lying = binaryBody(input(36), row);
    await expect400(
      await postBinary(INFER, lying.body, lying.headerLength),
      /4 bytes after the inference header/,
    );
    const short = binaryBody(input(36), row.subarray(0, 36));
    await expect400(
      await postBinary(INFER, short.body, short.headerLength),
      /has 36 bytes of binary data, but shape \[1, 10\] of FP32 is 40 bytes/,
    );
  });

  it("refuses binary_data_size without a header length, and a header that is not JSON", async () => {
    const { body } = binaryBody(input(40), row);
    await expect400(
      await api(INFER, { method: "POST", body: JSON.stringify(input(40)) }),
      /binary_data_size but the request has no Inference-Header-Content-Length header/,
    );
    await expect400(await postBinary(INFER, body, 5), /first 5 bytes.*is not valid JSON/);
  });

  it("refuses a datatype the model does not take, and a raw body of the wrong size", async () => {
    const ints = binaryBody(
      {
        inputs: [
          {
            name: "input",
            shape: [1, 10],
            datatype: "INT32",
            parameters: { binary_data_size: 40 },
          },
        ],
      },
      new Uint8Array(40),
    );
    await expect400(
      await postBinary(INFER, ints.body, ints.headerLength),
      /input 'input' has datatype INT32; the model expects FP32/,
    );
    await expect400(
      await postBinary(INFER, new Uint8Array(41), 0),
      /raw binary request for bin-simple@1 has 41 bytes.*needs a multiple of 40/,
    );
  });
});
