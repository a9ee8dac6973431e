/**
 * @module
 * `npm run bench:text`: transformer encoders on Pinion's int8 text plans against
 * onnxruntime-web fp32, in the same worker (`wrangler dev`), on the same
 * versions (each published with `--quantize int8` and forced to either runtime
 * with `?runtime=`), at batch 1:
 *
 *   - `text-small` (the fixture: 1 layer, d 32, 8 tokens): in-worker compute
 *     per request (target ≥ 4×) and top-1 agreement with fp32 on its 200 cases;
 *   - a MiniLM-L6-shaped sentence encoder generated here
 *     (`scripts/lib/minilm.ts`: 6 layers, d 384, 12 heads, ff 1536, vocabulary
 *     30522, synthetic weights, the node patterns torch.onnx.export writes) at
 *     sequence 128 (`BENCH_SEQUENCE`): in-worker compute (target ≥ 2×), the
 *     weight GEMMs' GOP/s over the whole model's time and their share of the
 *     `pmaddwd` peak, and the pooled output's cosine with fp32 (target ≥ 0.99)
 *     over sequences of several lengths, padded with attention_mask 0;
 *   - the MiniLM int8 version's placement (where `pinion publish` puts it by
 *     default: the edge when the plan fits the edge budget; the bench serves it
 *     at the edge either way) and its cold first answer: a fresh `wrangler dev`
 *     per sample (fresh isolate: nothing loaded), once `/v2/health/ready`
 *     answers, time from sending the first inference to its answer — reading
 *     the plan from local R2, loading it and computing (target ≤ 150 ms);
 *     median of `BENCH_COLD_SAMPLES`, at sequence 128 and for a 16-token
 *     sentence (nearly all load); then what this machine charges for writing
 *     memory for the first time, times the kernel memory the loaded model
 *     holds: the part of any cold load here that no loader can avoid.
 *
 * Compute samples alternate between the runtimes, each rerunning the model
 * `?repeat=N` times inside one request so it lasts about `BENCH_SAMPLE_MS`
 * (workerd's clock ticks in whole milliseconds). Where a model does not compile
 * to int8, the bench still measures onnxruntime and prints the compiler's
 * reason in place of the int8 figures (and records nothing). Where the worker
 * refuses the int8 plan under its default model budget, the refusal is printed
 * and the cold samples run with the budget raised (and say so).
 *
 * The table goes into docs/benchmarks.md (section bench:text; see `report.ts`).
 */
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadProgram } from "../../core/runtimes/int8/int8-runtime";
import { pmaddwdPeakGops } from "../lib/cpu-peak";
import { startDevServer, type DevServer, type DevServerPorts } from "../lib/dev-server";
import { loadKernelsModule } from "../lib/kernels-node";
import { MINILM_L6, OUTPUT_NAME, sentenceEncoder } from "../lib/minilm";
import { recordBench } from "./report";

// Only the worker is measured: no GPU origin process competing for the CPU.
process.env.PINION_ORIGIN = "off";
process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
process.env.WRANGLER_SEND_METRICS ??= "false";

const SAMPLE_MS = Number(process.env.BENCH_SAMPLE_MS ?? 100);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 15);
const MINILM_SAMPLES = Number(process.env.BENCH_MINILM_SAMPLES ?? 7);
const COLD_SAMPLES = Number(process.env.BENCH_COLD_SAMPLES ?? 3);
const SEQUENCE = Number(process.env.BENCH_SEQUENCE ?? 128);
// BENCH_PORT, +1 and +2: the server, its inspector and the (idle) origin's port.
const BASE_PORT = Number(process.env.BENCH_PORT ?? 0);
const PORTS: DevServerPorts | undefined = BASE_PORT
  ? { server: BASE_PORT, inspector: BASE_PORT + 1, origin: BASE_PORT + 2 }
  : undefined;
const REPEAT_MAX = 1_000_000;
const RUNTIMES = ["int8", "ort"] as const;
type RuntimeName = (typeof RUNTIMES)[number];

interface Feed {
  name: string;
  rows: number[][];
}
/** An OIP request body of INT64 inputs, one row per sample. */
const requestBody = (feeds: Feed[]) =>
  JSON.stringify({
    inputs: feeds.map(({ name, rows }) => ({
      name,
      shape: [rows.length, rows[0]!.length],
      datatype: "INT64",
      data: rows.flat(),
    })),
  });

interface Published {
  model: string;
  version: string;
  runtime: string;
  placement: string;
  planBytes?: number;
  /** The kernels' memory the loaded int8 plan holds (weights as the GEMM reads them, arena). */
  heldBytes?: number;
  onnxBytes: number;
  int8NotCompiled?: string;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
/** One decimal below 100, none above (so the columns stay apart). */
const fixed = (value: number) => value.toFixed(value < 100 ? 1 : 0);
const range = (r: { min: number; max: number } | undefined, unit = 1) =>
  r ? `${fixed(r.min / unit)}–${fixed(r.max / unit)}` : "-";
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

function phase(header: string | null, name: string): number {
  const match = new RegExp(`${name};dur=([\\d.]+)`).exec(header ?? "");
  return match ? Number(match[1]) : NaN;
}

async function post(server: DevServer, url: string, body: string) {
  const response = await fetch(server.base + url, {
    method: "POST",
    body,
    headers: { "content-type": "application/json" },
  });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  const json = (await response.json()) as { outputs: { name: string; data: number[] }[] };
  return { response, json };
}

const inferPath = (p: Published, runtime: RuntimeName, extra = "") =>
  `/v2/models/${p.model}/versions/${p.version}/infer?runtime=${runtime}${extra}`;

/**
 * Publishes `file` with --quantize int8 into local R2 at `persistTo`, served at
 * the edge whatever its size (so the worker runs it on both runtimes), and says
 * where `pinion publish` would place it by default.
 */
async function publish(
  persistTo: string,
  model: string,
  file: string,
  maxSequence?: number,
): Promise<Published> {
  const { openLocalR2 } = await import("../../origin/stores/local-r2");
  const { ModelRegistry } = await import("../../core/registry/registry");
  const { prepareVersion, DEFAULT_EDGE_BUDGET_BYTES } = await import("../lib/prepare");
  const r2 = await openLocalR2(persistTo);
  try {
    const registry = new ModelRegistry(r2.store);
    const prepared = await prepareVersion(file, {
      quantize: "int8",
      placement: "edge",
      ...(maxSequence ? { maxSequence } : {}),
    });
    // publish's `auto` placement: the origin when what the edge would hold exceeds the budget.
    const served = (prepared.artifacts.int8 ?? prepared.artifacts.onnx).bytes.byteLength;
    const manifest = await registry.publish({
      name: model,
      ...prepared.fields,
      artifacts: prepared.artifacts,
    });
    return {
      model,
      version: String(manifest.version),
      runtime: prepared.fields.runtime,
      placement: served > DEFAULT_EDGE_BUDGET_BYTES ? "origin" : "edge",
      ...(prepared.artifacts.int8
        ? {
            planBytes: prepared.artifacts.int8.bytes.byteLength,
            heldBytes: (await loadProgram(await loadKernelsModule(), prepared.artifacts.int8.bytes))
              .bytesHeld,
          }
        : {}),
      onnxBytes: prepared.artifacts.onnx.bytes.byteLength,
      ...(prepared.int8NotCompiled ? { int8NotCompiled: prepared.int8NotCompiled } : {}),
    };
  } finally {
    await r2.dispose();
  }
}

/** Runs `work` against a fresh `wrangler dev` over a copy of the published `store`. */
async function withServer<T>(
  store: string,
  work: (server: DevServer) => Promise<T>,
  vars: string[] = [],
) {
  const persistTo = await mkdtemp(join(tmpdir(), "pinion-bench-text-run-"));
  try {
    await cp(store, persistTo, { recursive: true });
    const server = await startDevServer(
      persistTo,
      ["--var", `PINION_BENCH_REPEAT_MAX:${REPEAT_MAX}`, ...vars.flatMap((v) => ["--var", v])],
      PORTS,
    );
    try {
      return await work(server);
    } finally {
      await server.stop();
    }
  } finally {
    await rm(persistTo, { recursive: true, force: true });
  }
}

type Compute = Record<RuntimeName, { us: number; min: number; max: number; repeat: number }>;

/**
 * In-worker compute per request at batch 1 on each runtime the version runs,
 * samples alternating, each sized from a probe to last about SAMPLE_MS.
 */
async function computeSamples(
  server: DevServer,
  p: Published,
  body: string,
  samples: number,
): Promise<Partial<Compute>> {
  const runtimes = RUNTIMES.filter((r) => r === "ort" || p.runtime === "int8");
  const repeat: Partial<Record<RuntimeName, number>> = {};
  for (const runtime of runtimes) {
    await post(server, inferPath(p, runtime), body); // load, warm
    let probe = 1;
    for (;;) {
      const { response } = await post(server, inferPath(p, runtime, `&repeat=${probe}`), body);
      const ms = phase(response.headers.get("server-timing"), "compute");
      if (ms >= SAMPLE_MS / 5 || probe >= REPEAT_MAX) {
        repeat[runtime] = Math.max(1, Math.min(REPEAT_MAX, Math.round((probe * SAMPLE_MS) / ms)));
        break;
      }
      probe = Math.min(REPEAT_MAX, probe * 10);
    }
  }
  const us: Partial<Record<RuntimeName, number[]>> = {};
  for (let i = 0; i < samples; i++) {
    for (const runtime of runtimes) {
      const n = repeat[runtime]!;
      const { response } = await post(server, inferPath(p, runtime, `&repeat=${n}`), body);
      (us[runtime] ??= []).push(
        (phase(response.headers.get("server-timing"), "compute") / n) * 1000,
      );
    }
  }
  return Object.fromEntries(
    runtimes.map((runtime) => [
      runtime,
      {
        us: median(us[runtime]!),
        min: Math.min(...us[runtime]!),
        max: Math.max(...us[runtime]!),
        repeat: repeat[runtime]!,
      },
    ]),
  );
}

/** Both runtimes' outputs for one request, as float arrays. */
async function answers(server: DevServer, p: Published, body: string, output: string) {
  const out: Partial<Record<RuntimeName, number[]>> = {};
  for (const runtime of RUNTIMES) {
    const { json } = await post(server, inferPath(p, runtime), body);
    out[runtime] = json.outputs.find((o) => o.name === output)!.data;
  }
  return out as Record<RuntimeName, number[]>;
}

/** Milliseconds per MB to write memory never touched before (median of 5 × 64 MB). */
function freshMemoryMsPerMb(): number {
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    new Uint8Array(64e6).fill(1);
    times.push((performance.now() - start) / 64);
  }
  return median(times);
}

function cosine(a: number[], b: number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

/** Seeded token ids in BERT's layout: [CLS] words… [SEP], then padding (id 0, mask 0) to `padTo`. */
function sentence(seed: number, length: number, padTo: number, vocab: number) {
  let state = seed;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
  const words = Array.from({ length: length - 2 }, () => 1000 + (next() % (vocab - 1000)));
  const ids = [101, ...words, 102];
  return {
    ids: [...ids, ...Array<number>(padTo - length).fill(0)],
    mask: [...ids.map(() => 1), ...Array<number>(padTo - length).fill(0)],
  };
}

async function main(): Promise<void> {
  const printed: string[] = [];
  const say = (line = "") => {
    console.log(line);
    printed.push(line);
  };
  const row = (cells: string[]) =>
    say(cells.map((c, i) => (i === 0 ? c.padEnd(40) : ` ${c}`.padStart(13))).join(""));
  const ratio = (int8: number | undefined, ort: number) =>
    int8 === undefined ? "-" : `${(ort / int8).toFixed(1)}×`;

  const encoder = sentenceEncoder(MINILM_L6);
  // The fp32 MiniLM (90 MB) exceeds the worker's default model budget (64 MiB): the warm server
  // raises it so onnxruntime-web can run the model at all (a deployed isolate's 128 MB would not).
  const bigCache = `MODEL_CACHE_BYTES:${Math.max(256 * 1024 ** 2, 2 * encoder.onnx.byteLength)}`;
  const gemmOps = 2 * encoder.gemmMacs(SEQUENCE);
  const attentionOps = 2 * encoder.attentionMacs(SEQUENCE);
  say(
    `Pinion text benchmark: int8 text plans against onnxruntime-web fp32 at batch 1, wrangler dev on loopback`,
  );
  say(
    `MiniLM-L6-shaped encoder generated here: ${(encoder.parameters / 1e6).toFixed(2)} M parameters, ${mb(encoder.onnx.byteLength)} fp32, sequence ${SEQUENCE}: ${(gemmOps / 1e9).toFixed(2)} GOP in weight GEMMs + ${(attentionOps / 1e9).toFixed(2)} GOP in attention products`,
  );
  say(
    `compute: median of ${SAMPLES} (MiniLM: ${MINILM_SAMPLES}) requests of ~${SAMPLE_MS} ms of in-worker runs each, alternating; cold: median of ${COLD_SAMPLES} fresh wrangler dev starts`,
  );
  say();

  // Publish once into a template store; each server gets a copy of it.
  const template = await mkdtemp(join(tmpdir(), "pinion-bench-text-"));
  try {
    const minilmFile = join(template, "minilm_l6_synthetic.onnx");
    await writeFile(minilmFile, encoder.onnx);
    const textSmallFile = new URL("../../fixtures/text-small/text_small.onnx", import.meta.url)
      .pathname;
    const store = join(template, "store");
    const small = await publish(store, "text-small-int8", textSmallFile);
    const minilm = await publish(store, "minilm-l6", minilmFile, SEQUENCE);
    await rm(minilmFile);

    const testset = JSON.parse(
      await readFile(new URL("../../fixtures/text-small/testset.json", import.meta.url), "utf8"),
    ) as { input_name: string; output_name: string; inputs: number[][]; labels: number[] };
    const smallBody = requestBody([{ name: testset.input_name, rows: [testset.inputs[0]!] }]);
    const minilmFeeds = (cases: { ids: number[]; mask: number[] }[]) =>
      requestBody([
        { name: "input_ids", rows: cases.map((c) => c.ids) },
        { name: "attention_mask", rows: cases.map((c) => c.mask) },
      ]);
    const minilmBody = minilmFeeds([sentence(1, SEQUENCE, SEQUENCE, MINILM_L6.vocab)]);
    // Cosine over sentences of several lengths, each padded to SEQUENCE with mask 0.
    const lengths = [SEQUENCE, SEQUENCE, 96, 64, 40, 17, 8, 3];
    const cosineCases = lengths.map((n, i) => sentence(100 + i, n, SEQUENCE, MINILM_L6.vocab));

    const warm = await withServer(
      store,
      async (server) => {
        const smallCompute = await computeSamples(server, small, smallBody, SAMPLES);
        let agreement: number | undefined;
        if (small.runtime === "int8") {
          const all = requestBody([{ name: testset.input_name, rows: testset.inputs }]);
          const out = await answers(server, small, all, testset.output_name);
          const width = out.ort.length / testset.inputs.length;
          const top = (data: number[], i: number) => {
            const row = data.slice(i * width, (i + 1) * width);
            return row.indexOf(Math.max(...row));
          };
          agreement =
            testset.inputs.filter((_, i) => top(out.int8, i) === top(out.ort, i)).length /
            testset.inputs.length;
        }
        const minilmCompute = await computeSamples(server, minilm, minilmBody, MINILM_SAMPLES);
        let cosines: number[] | undefined;
        if (minilm.runtime === "int8") {
          cosines = [];
          for (const c of cosineCases) {
            const out = await answers(server, minilm, minilmFeeds([c]), OUTPUT_NAME);
            cosines.push(cosine(out.int8, out.ort));
          }
        }
        return { smallCompute, agreement, minilmCompute, cosines };
      },
      [bigCache],
    );

    // Cold: first under the worker's default model budget, as deployed; if the isolate refuses
    // the plan there, again with the budget raised, so the time is still known (and labelled).
    const coldFirstAnswer = (vars: string[], body: string) =>
      withServer(
        store,
        async (server) => {
          const ready = await fetch(`${server.base}/v2/health/ready`);
          if (!ready.ok) throw new Error(`not ready: ${ready.status} ${await ready.text()}`);
          const start = performance.now();
          const { response } = await post(server, inferPath(minilm, "int8"), body);
          const wall = performance.now() - start;
          const timing = response.headers.get("server-timing");
          return { wall, load: phase(timing, "load"), compute: phase(timing, "compute") };
        },
        vars,
      );
    // A short sentence too: its compute is small, so its cold answer is nearly all load.
    const SHORT = 16;
    const shortBody = minilmFeeds([sentence(7, SHORT, SHORT, MINILM_L6.vocab)]);
    type Cold = { wall: number; load: number; compute: number };
    const cold: Cold[] = [];
    const coldShort: Cold[] = [];
    let coldRefused: string | undefined;
    let coldVars: string[] = [];
    if (minilm.runtime === "int8") {
      for (let i = 0; i < COLD_SAMPLES; i++) {
        try {
          cold.push(await coldFirstAnswer(coldVars, minilmBody));
          coldShort.push(await coldFirstAnswer(coldVars, shortBody));
        } catch (error) {
          if (coldRefused !== undefined) throw error;
          coldRefused = error instanceof Error ? error.message : String(error);
          coldVars = [bigCache];
          i--;
        }
      }
    }

    row(["", "int8", "ort fp32", "int8 vs ort", "target"]);
    const s = warm.smallCompute;
    row([
      "text-small compute (µs)",
      s.int8 ? fixed(s.int8.us) : "-",
      fixed(s.ort!.us),
      ratio(s.int8?.us, s.ort!.us),
      "≥ 4×",
    ]);
    row(["  min–max of samples", range(s.int8), range(s.ort), "", ""]);
    if (warm.agreement !== undefined) {
      row([
        "  top-1 agreement, 200 cases",
        `${(100 * warm.agreement).toFixed(1)} %`,
        "",
        "",
        "≥ 99 %",
      ]);
    }
    const m = warm.minilmCompute;
    row([
      `MiniLM-L6 seq ${SEQUENCE} compute (ms)`,
      m.int8 ? (m.int8.us / 1000).toFixed(1) : "-",
      (m.ort!.us / 1000).toFixed(1),
      ratio(m.int8?.us, m.ort!.us),
      "≥ 2×",
    ]);
    row(["  min–max of samples", range(m.int8, 1000), range(m.ort, 1000), "", ""]);
    const gops = (us: number) => gemmOps / (us * 1e3);
    row([
      "  weight-GEMM GOP/s (whole model)",
      m.int8 ? gops(m.int8.us).toFixed(1) : "-",
      gops(m.ort!.us).toFixed(1),
      "",
      "",
    ]);
    const peak = pmaddwdPeakGops();
    if (peak && m.int8) {
      row([
        "  of pmaddwd peak",
        `${((100 * gops(m.int8.us)) / peak.gops).toFixed(0)} %`,
        "",
        `(${peak.gops.toFixed(0)} GOP/s)`,
        "",
      ]);
    }
    if (warm.cosines) {
      row([
        `  pooled cosine, min of ${warm.cosines.length}`,
        Math.min(...warm.cosines).toFixed(4),
        "",
        "",
        "≥ 0.99",
      ]);
    }
    row(["MiniLM-L6 placement", minilm.placement, "", "", "edge"]);
    row([
      "  artifact served",
      minilm.planBytes ? mb(minilm.planBytes) : "-",
      mb(minilm.onnxBytes),
      "",
      "≈ 23 MB",
    ]);
    if (coldRefused) {
      say(`  cold at the default model budget: refused: ${coldRefused}`);
      say(`  so the cold samples below ran with ${bigCache.replace(":", "=")}`);
    }
    if (cold.length) {
      const of = (samples: Cold[], key: keyof Cold) =>
        median(samples.map((c) => c[key])).toFixed(0);
      row([
        coldRefused
          ? `  cold, budget raised, seq ${SEQUENCE} (ms)`
          : `  cold first answer, seq ${SEQUENCE} (ms)`,
        of(cold, "wall"),
        "",
        "",
        "≤ 150",
      ]);
      row(["    of which load (ms)", of(cold, "load"), "", "", ""]);
      row(["    of which compute (ms)", of(cold, "compute"), "", "", ""]);
      row([`  cold first answer, ${SHORT} tokens (ms)`, of(coldShort, "wall"), "", "", ""]);
      row(["    of which load (ms)", of(coldShort, "load"), "", "", ""]);
      // A cold load's cost is mostly memory written for the first time (the page faults of
      // the model's WASM memory); on a VM these can cost far more than on bare metal.
      const perMb = freshMemoryMsPerMb();
      const held = minilm.heldBytes ?? 0;
      const firstWrites = (perMb * held) / 1e6;
      say(
        `  this machine writes fresh memory at ${perMb.toFixed(2)} ms/MB; the loaded model holds ${mb(held)} of kernel memory (i16-packed weights, int8 embeddings, arena), so its cold load spends ≥ ${firstWrites.toFixed(0)} ms in first writes alone here; with one warm seq-${SEQUENCE} compute (${m.int8 ? (m.int8.us / 1000).toFixed(1) : "-"} ms), no cold first answer at seq ${SEQUENCE} can take under ${(firstWrites + (m.int8?.us ?? 0) / 1000).toFixed(0)} ms on this machine`,
      );
    }
    if (warm.cosines) {
      say(
        `pooled cosine per sentence length (${lengths.join(", ")} tokens, padded to ${SEQUENCE}): ${warm.cosines.map((c) => c.toFixed(4)).join(", ")}`,
      );
    }
    if (peak) {
      say(
        `pmaddwd peak: 2 per cycle × 8 MACs × 2 ops at ${peak.mhz} MHz (the CPU clock the OS reports); GOP/s counts the weight GEMMs' ${(gemmOps / 1e9).toFixed(2)} GOP over the whole model's time (attention, LayerNorm, GELU, softmax included), so the GEMMs themselves run faster`,
      );
    }
    const unfit = [small, minilm].filter((p) => p.int8NotCompiled);
    for (const p of unfit) say(`${p.model}: no int8 plan: ${p.int8NotCompiled}`);
    // Recorded whenever both models ran int8, the default budget's refusal included in the table.
    if (unfit.length === 0) await recordBench("text", printed.join("\n"));
    else console.log("\nnot recorded: a model did not compile to int8");
  } finally {
    await rm(template, { recursive: true, force: true });
  }
}

await main();
