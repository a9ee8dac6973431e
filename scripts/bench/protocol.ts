/**
 * @module
 * `npm run bench:protocol`: the binary tensor data extension against JSON, in
 * one run of one `wrangler dev`, on one request: a [64, 3, 32, 32] FP32 batch
 * (786,432 bytes as binary tensor data, about 2 MB as JSON), sent to a small
 * model made here (GlobalAveragePool → Flatten → Gemm to 10 classes, so the
 * compute is tiny and the request format is what is measured):
 *
 *   - server-side decode per request: Server-Timing's `decode` phase (the body
 *     parsed — UTF-8 and JSON.parse, or the binary framing — and the input
 *     decoded into a typed array), averaged over `?repeat_decode=N` decodes in
 *     one request, since workerd's clock only ticks in whole milliseconds (N is
 *     chosen per format so a sample lasts about BENCH_SAMPLE_MS); samples
 *     alternate between the formats;
 *   - end-to-end requests/s through wrangler dev on loopback (autocannon), in
 *     alternating rounds per format.
 *
 * Both formats ask for the same JSON answer (10 logits per row), which must be
 * identical. Targets, printed as pass/fail (a miss does not fail the run):
 * binary decode at least 10× faster than JSON, binary requests/s at least 2×
 * JSON's. The run fails (non-zero exit) when a request fails or answers wrongly.
 *
 * Knobs (environment): BENCH_SAMPLES (15), BENCH_SAMPLE_MS (100),
 * BENCH_LOAD_SECONDS (5 per round), BENCH_ROUNDS (2), BENCH_CONNECTIONS (8).
 *
 * The table goes into docs/benchmarks.md (section bench:protocol; see `report.ts`).
 */
import autocannon from "autocannon";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildModel, ElemType } from "../../convert/onnx";
import { ModelRegistry } from "../../core/registry/registry";
import { openLocalR2 } from "../../origin/stores/local-r2";
import { startDevServer, type DevServer } from "../lib/dev-server";
import { prepareVersion } from "../lib/prepare";
import { recordBench } from "./report";

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 15);
const SAMPLE_MS = Number(process.env.BENCH_SAMPLE_MS ?? 100);
const LOAD_SECONDS = Number(process.env.BENCH_LOAD_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const REPEAT_MAX = 100_000;
// Only the worker is measured: no GPU origin process competing for the CPU.
process.env.PINION_ORIGIN = "off";

const MODEL = "protocol-bench";
const SHAPE = [64, 3, 32, 32];
const ELEMENTS = SHAPE.reduce((a, b) => a * b, 1);
const CLASSES = 10;
const PATH = `/v2/models/${MODEL}/versions/1/infer`;
const FORMATS = ["binary", "json"] as const;
type Format = (typeof FORMATS)[number];

/** GlobalAveragePool → Flatten → Gemm: [N, 3, 32, 32] → [N, 10], a few µs of compute per row. */
function protocolModel(): Uint8Array {
  const weights = Float32Array.from({ length: CLASSES * 3 }, (_, i) => ((i % 7) - 3) / 4);
  const bias = Float32Array.from({ length: CLASSES }, (_, i) => i / 8);
  return buildModel(
    [
      { op: "GlobalAveragePool", inputs: ["input"], outputs: ["pooled"] },
      { op: "Flatten", inputs: ["pooled"], outputs: ["flat"], attributes: { axis: 1 } },
      {
        op: "Gemm",
        inputs: ["flat", "W", "B"],
        outputs: ["logits"],
        attributes: { transB: 1 },
      },
    ],
    [{ name: "input", type: ElemType.FLOAT, dims: ["N", 3, 32, 32] }],
    [{ name: "logits", type: ElemType.FLOAT, dims: ["N", CLASSES] }],
    13,
    [
      { name: "W", type: ElemType.FLOAT, dims: [CLASSES, 3], data: weights },
      { name: "B", type: ElemType.FLOAT, dims: [CLASSES], data: bias },
    ],
  );
}

/** Publishes the model into the local R2 under `persistTo`, as `pinion publish` would. */
async function publishModel(persistTo: string): Promise<void> {
  const file = join(persistTo, `${MODEL}.onnx`);
  await writeFile(file, protocolModel());
  const r2 = await openLocalR2(persistTo);
  try {
    const prepared = await prepareVersion(file);
    const registry = new ModelRegistry(r2.store);
    await registry.publish({ name: MODEL, ...prepared.fields, artifacts: prepared.artifacts });
  } finally {
    await r2.dispose();
  }
}

/** The request's values: pseudo-random in [-1, 1] with 6 decimals (≈ 10 characters each in JSON). */
function inputValues(): number[] {
  let state = 12345;
  return Array.from({ length: ELEMENTS }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return Math.round((state / 4294967296) * 2e6 - 1e6) / 1e6;
  });
}

interface Body {
  body: Buffer;
  headers: Record<string, string>;
}

function bodies(): Record<Format, Body> {
  const values = inputValues();
  const json = Buffer.from(
    JSON.stringify({
      inputs: [{ name: "input", shape: SHAPE, datatype: "FP32", data: values }],
    }),
  );
  const tensor = Buffer.from(Float32Array.from(values).buffer);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        {
          name: "input",
          shape: SHAPE,
          datatype: "FP32",
          parameters: { binary_data_size: tensor.length },
        },
      ],
    }),
  );
  return {
    json: { body: json, headers: { "content-type": "application/json" } },
    binary: {
      body: Buffer.concat([header, tensor]),
      headers: {
        "content-type": "application/octet-stream",
        "inference-header-content-length": String(header.length),
      },
    },
  };
}

function phase(header: string | null, name: string): number {
  const match = new RegExp(`${name};dur=([\\d.]+)`).exec(header ?? "");
  return match ? Number(match[1]) : NaN;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function post(server: DevServer, request: Body, query = "") {
  const response = await fetch(server.base + PATH + query, {
    method: "POST",
    body: new Uint8Array(request.body),
    headers: request.headers,
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`POST ${PATH}${query}: ${response.status} ${text}`);
  return { response, text };
}

/** Decode time of one request in ms, from `repeat` decodes inside one request. */
async function decodeSample(server: DevServer, request: Body, repeat: number): Promise<number> {
  const { response } = await post(server, request, `?repeat_decode=${repeat}`);
  const echoed = response.headers.get("x-pinion-decode-repeat") ?? "1";
  if (Number(echoed) !== repeat) {
    throw new Error(`asked for ${repeat} decodes, the worker says it ran ${echoed}`);
  }
  const ms = phase(response.headers.get("server-timing"), "decode");
  if (!Number.isFinite(ms)) {
    throw new Error(`no decode phase in Server-Timing: ${response.headers.get("server-timing")}`);
  }
  return ms / repeat;
}

async function load(server: DevServer, request: Body, seconds: number) {
  const result = await autocannon({
    url: server.base + PATH,
    method: "POST",
    headers: request.headers,
    body: request.body,
    connections: CONNECTIONS,
    duration: seconds,
  });
  if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
    throw new Error(
      `${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts under load`,
    );
  }
  return result;
}

async function main(): Promise<void> {
  const requests = bodies();
  console.log(
    `Pinion protocol benchmark: one [${SHAPE.join(", ")}] FP32 request, binary tensor data (${requests.binary.body.length} bytes) vs JSON (${requests.json.body.length} bytes), wrangler dev on loopback`,
  );
  console.log(
    `decode: median of ${SAMPLES} requests of ~${SAMPLE_MS} ms of in-worker decodes each, alternating; load: ${CONNECTIONS} connections, ${ROUNDS} alternating rounds of ${LOAD_SECONDS} s per format\n`,
  );
  const persistTo = await mkdtemp(join(tmpdir(), "pinion-bench-protocol-"));
  try {
    await publishModel(persistTo);
    const server = await startDevServer(persistTo, [
      "--var",
      `PINION_BENCH_REPEAT_MAX:${REPEAT_MAX}`,
    ]);
    try {
      return await measure(server, requests);
    } finally {
      await server.stop();
    }
  } finally {
    await rm(persistTo, { recursive: true, force: true });
  }
}

async function measure(server: DevServer, requests: Record<Format, Body>): Promise<void> {
  // Both formats must be answered, and answered alike.
  const answers: Record<string, string> = {};
  for (const format of FORMATS) {
    const { text } = await post(server, requests[format]);
    const outputs = (JSON.parse(text) as { outputs: { shape: number[]; data: number[] }[] })
      .outputs;
    const shape = outputs[0]?.shape.join(",");
    if (shape !== `${SHAPE[0]},${CLASSES}`) throw new Error(`${format}: output shape ${shape}`);
    answers[format] = JSON.stringify(outputs);
  }
  if (answers.binary !== answers.json)
    throw new Error("binary and JSON requests answer differently");

  // Warm up, then size each format's repeat so a sample lasts about SAMPLE_MS.
  const repeat: Record<string, number> = {};
  for (const format of FORMATS) {
    let probe = format === "json" ? 2 : 50;
    // Warm up with repeated decodes, so the JIT has tiered up before anything is timed.
    for (let i = 0; i < 3; i++) await decodeSample(server, requests[format], probe);
    for (;;) {
      const ms = (await decodeSample(server, requests[format], probe)) * probe;
      if (ms >= 20 || probe * 4 > REPEAT_MAX) break;
      probe *= 4;
    }
    // Sized from the fastest of five probes (a probe can be slowed by a garbage collection or
    // a neighbour on a shared machine), so a sample lasts at least about SAMPLE_MS.
    const probes: number[] = [];
    for (let i = 0; i < 5; i++) probes.push(await decodeSample(server, requests[format], probe));
    repeat[format] = Math.max(
      1,
      Math.min(REPEAT_MAX, Math.round(SAMPLE_MS / Math.max(Math.min(...probes), 1e-3))),
    );
  }
  const samples: Record<string, number[]> = { binary: [], json: [] };
  for (let i = 0; i < SAMPLES; i++) {
    for (const format of FORMATS) {
      samples[format]!.push(await decodeSample(server, requests[format], repeat[format]!));
    }
  }

  const totals: Record<string, { requests: number; seconds: number; p50: number[] }> = {
    binary: { requests: 0, seconds: 0, p50: [] },
    json: { requests: 0, seconds: 0, p50: [] },
  };
  for (let round = 0; round < ROUNDS; round++) {
    for (const format of FORMATS) {
      const result = await load(server, requests[format], LOAD_SECONDS);
      totals[format]!.requests += result.requests.total;
      totals[format]!.seconds += result.duration;
      totals[format]!.p50.push(result.latency.p50);
    }
  }

  const decode = (format: Format) => median(samples[format]!);
  const range = (format: Format) =>
    `${Math.min(...samples[format]!).toFixed(3)}–${Math.max(...samples[format]!).toFixed(3)}`;
  const rps = (format: Format) => totals[format]!.requests / totals[format]!.seconds;
  const decodeRatio = decode("json") / decode("binary");
  const rpsRatio = rps("binary") / rps("json");

  const printed: string[] = [];
  const line = (text: string) => {
    console.log(text);
    printed.push(text.trimEnd()); // docs/benchmarks.md stays Prettier-clean
  };
  const row = (cells: string[]) =>
    line(cells.map((c, i) => (i === 0 ? c.padEnd(26) : c.padStart(15))).join(""));
  row(["", "binary", "JSON", "binary vs JSON"]);
  row([
    "request body (bytes)",
    String(requests.binary.body.length),
    String(requests.json.body.length),
    `${(requests.json.body.length / requests.binary.body.length).toFixed(1)}× smaller`,
  ]);
  row([
    "decode / request (ms)",
    decode("binary").toFixed(3),
    decode("json").toFixed(3),
    `${decodeRatio.toFixed(1)}× faster`,
  ]);
  row(["  min–max of samples", range("binary"), range("json"), ""]);
  row(["  decodes per sample", String(repeat.binary), String(repeat.json), ""]);
  row([
    "requests/s (e2e)",
    rps("binary").toFixed(1),
    rps("json").toFixed(1),
    `${rpsRatio.toFixed(1)}× more`,
  ]);
  row([
    "latency p50 (ms, e2e)",
    String(median(totals.binary!.p50)),
    String(median(totals.json!.p50)),
    "",
  ]);
  line("");
  const target = (what: string, value: number, goal: number) =>
    line(`${value >= goal ? "PASS" : "FAIL"}  ${what}: ${value.toFixed(1)}× (target ≥ ${goal}×)`);
  target("binary decode vs JSON decode", decodeRatio, 10);
  target("binary requests/s vs JSON requests/s", rpsRatio, 2);
  await recordBench("protocol", printed.join("\n"));
}

try {
  await main();
} catch (error) {
  console.error(
    `\nbench:protocol failed: ${error instanceof Error ? error.message : String(error)}`,
  );
  process.exit(1);
}
