/**
 * @module
 * Per-step timing of the CNN fixtures' graph plans in Node at batch 1 (or
 * `BATCH`): each fixture compiled with `compileInt8`, loaded on a
 * `GraphExecutor`, then `run(x, batch)` and each step alone, timed over many
 * repetitions (minimum of `ROUNDS` rounds of `REPS` calls, in µs per call).
 * `npx tsx scripts/bench/graph-steps.ts`
 */
import { readFileSync } from "node:fs";
import { compileInt8 } from "../../convert/int8-compiler";
import { GraphExecutor } from "../../core/runtimes/int8/graph-executor";
import type { GraphStep } from "../../core/runtimes/int8/graph-plan";
import { loadKernels, loadKernelsModule } from "../lib/kernels-node";

const BATCH = Number(process.env.BATCH ?? 1);
const ROUNDS = Number(process.env.ROUNDS ?? 30);
const REPS = Number(process.env.REPS ?? 2000);

const FIXTURES: [string, string][] = [
  ["digits-cnn", "fixtures/digits-cnn/digits_cnn.onnx"],
  ["cnn-small", "fixtures/cnn-small/cnn_small.onnx"],
];

/** Minimum over rounds of the mean µs per call within a round. */
function time(fn: () => unknown): number {
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < REPS; i++) fn();
    const us = Number(process.hrtime.bigint() - t0) / 1000 / REPS;
    best = Math.min(best, us);
  }
  return best;
}

function describeStep(step: GraphStep): string {
  switch (step.op) {
    case "conv":
      return `conv ${step.h}×${step.w}×${step.c} k${step.kh}x${step.kw} s${step.strideH}→${step.cout}`;
    case "depthwise":
      return `depthwise ${step.h}×${step.w}×${step.c} k${step.kh} s${step.strideH}`;
    case "maxPool":
    case "averagePool":
      return `${step.op} ${step.h}×${step.w}×${step.c} ${step.kh}×${step.kw} s${step.strideH}`;
    case "dense":
      return `dense ${step.k}→${step.n}`;
    case "toNhwc":
    case "toNchw":
      return `${step.op} ${step.c}×${step.hw}`;
    default:
      return step.op;
  }
}

/** The executor's per-step callables for a block of `samples` (whichever internal form it has). */
function stepRunners(executor: GraphExecutor, samples: number): (() => void)[] {
  const ex = executor as unknown as {
    prepared?: (samples: number) => { calls: (() => void)[] };
    step?: (resident: unknown, n: number, at: (b: number) => number) => void;
    resident?: unknown[];
    arena: number;
  };
  if (ex.prepared) return ex.prepared(samples).calls;
  const at = (buffer: number) => ex.arena + executor.plan.buffers[buffer]!.offset * samples * 4;
  return ex.resident!.map((resident) => () => ex.step!.call(executor, resident, samples, at));
}

const module = await loadKernelsModule();
const kernels = await loadKernels();
for (const [name, path] of FIXTURES) {
  const outcome = compileInt8(new Uint8Array(readFileSync(path)), kernels);
  if (!outcome.ok) throw new Error(`${name}: ${outcome.reason}`);
  const executor = await GraphExecutor.instantiate(module, outcome.plan);
  const x = new Float32Array(BATCH * executor.inputWidth);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37) * 1.5;
  const runUs = time(() => executor.run(x, BATCH));
  executor.run(x, BATCH); // leave the arena holding this input's activations
  const runners = stepRunners(executor, BATCH);
  let sum = 0;
  console.log(`${name} (batch ${BATCH}): run ${runUs.toFixed(2)} µs`);
  executor.plan.steps.forEach((step, i) => {
    const us = time(runners[i]!);
    sum += us;
    console.log(`  ${describeStep(step).padEnd(36)} ${us.toFixed(3)} µs`);
  });
  console.log(
    `  ${"sum of steps".padEnd(36)} ${sum.toFixed(3)} µs; run − steps ${(runUs - sum).toFixed(2)} µs`,
  );
}
