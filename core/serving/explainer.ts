/**
 * @module
 * Black-box explanations of one prediction: per-input-element attributions
 * for one output value (the `target`), computed only by evaluating the model,
 * in batches, through whatever `Evaluate` is given — the data plane passes the
 * runtime that serves the version, so the explanation explains what is served.
 *
 * - `shap`: KernelSHAP. Coalitions S of the features that differ from the
 *   background; v(S) = mean over background rows b of f(x on S, b elsewhere).
 *   The Shapley values are the weighted least-squares fit of v over coalitions
 *   with the Shapley kernel weights, with the efficiency constraint
 *   Σφ = f(x) − E[f(b)] imposed exactly by eliminating the last feature. With
 *   few features every coalition is enumerated (exact Shapley values); with
 *   more, coalitions are sampled by size in proportion to the kernel, each with
 *   its complement (paired sampling), from a PRNG seeded by `seed`.
 * - `occlusion`: a window slid over the input's last two axes (or its only
 *   axis) is replaced by the baseline; each element gets the mean drop of the
 *   target over the windows that covered it.
 * - `integrated_gradients`: the path integral of the gradient from the
 *   baseline to x, by the midpoint rule over `samples` steps, each partial
 *   derivative by a central finite difference (no gradients needed).
 *
 * Pure TypeScript: no I/O, no Workers or Node globals. Work is bounded before
 * anything is allocated: the number of model evaluations is computed from the
 * parameters and refused past the configured budget.
 */
import { echoJson, invalid } from "../errors";
import type { Parameters } from "../protocol/types";

export const EXPLAIN_METHODS = ["shap", "occlusion", "integrated_gradients"] as const;
export type ExplainMethod = (typeof EXPLAIN_METHODS)[number];

/** KernelSHAP coalitions when the request names none (shap's own default is 2M + 2048). */
export const DEFAULT_SHAP_SAMPLES = 2048;
/** Integrated-gradients steps when the request names none. */
export const DEFAULT_IG_STEPS = 32;
/** Every coalition is enumerated up to this many varying features (2^14 − 2 coalitions at most). */
export const MAX_EXACT_FEATURES = 14;
/**
 * KernelSHAP solves a (features − 1)² linear system: past this many varying
 * features, occlusion or integrated gradients fit better.
 */
export const MAX_SHAP_FEATURES = 256;
/** Rows handed to the runtime per call (the int8 kernels' block size). */
export const EXPLAIN_BATCH_ROWS = 256;
/**
 * Most values (input or output) one batch may hold, so large inputs run in
 * fewer rows per call: 1M floats, 4 MB each way, well inside an isolate.
 */
export const MAX_BATCH_VALUES = 1024 * 1024;

/** Runs `rows` inputs (row-major, one model input each) and returns their output rows. */
export type Evaluate = (inputs: Float32Array, rows: number) => Promise<Float32Array>;

/** Where the reference input comes from. */
export type BaselineChoice =
  | { kind: "default" }
  | { kind: "background" }
  | { kind: "golden" }
  | { kind: "zeros" }
  | { kind: "value"; value: number };

/** An explanation request's parameters, checked. */
export interface ExplainSettings {
  method: ExplainMethod;
  baseline: BaselineChoice;
  /** Coalitions (shap) or path steps (integrated_gradients) asked for; undefined = default. */
  samples?: number;
  /** The output value explained (its index in one output row); undefined = the top one. */
  target?: number;
  seed: number;
  /** Occlusion window and stride over the last two axes: [rows, columns]. */
  window?: [number, number];
  stride?: [number, number];
}

/** The reference input rows an explanation compares x with, and what they are. */
export interface Baseline {
  /** `rows × features` values. */
  rows: Float32Array;
  count: number;
  /** How the baseline was chosen, as the answer reports it. */
  description: string;
}

export interface Explanation {
  method: ExplainMethod;
  /** One per input element, in the input's order. */
  attributions: Float32Array;
  /** f(x): the model's output row for x, from the same runtime. */
  prediction: Float32Array;
  target: number;
  /** The reference value the attributions account for: E[f(background)] or f(baseline). */
  baseValue: number;
  /** Coalitions (shap), windows (occlusion) or path steps (integrated_gradients) used. */
  samples: number;
  /** Model evaluations (input rows run). */
  evaluations: number;
  /** shap: every coalition was enumerated, so the values are exact Shapley values. */
  exact?: boolean;
  /** integrated_gradients: Σφ − (f(x) − f(baseline)), how far the path sum is from complete. */
  convergenceDelta?: number;
  window?: [number, number];
  stride?: [number, number];
}

const integer = (name: string, value: unknown, min: number, max: number): number => {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(
      `explain parameter '${name}' is ${echoJson(value)}; it must be an integer from ${min} to ${max}`,
    );
  }
  return value;
};

/** A window or stride: one integer (square, as a number or "3") or "rows x columns" ("3x2", "3,2"). */
function pair(name: string, value: unknown): [number, number] {
  if (typeof value === "number") {
    const n = integer(name, value, 1, 65_536);
    return [n, n];
  }
  const match = typeof value === "string" ? /^\s*(\d+)\s*(?:[x×,]\s*(\d+)\s*)?$/.exec(value) : null;
  if (!match) {
    throw invalid(
      `explain parameter '${name}' is ${echoJson(value)}; give an integer or "rows x columns", e.g. "2x2"`,
    );
  }
  const rows = integer(name, Number(match[1]), 1, 65_536);
  return [rows, match[2] === undefined ? rows : integer(name, Number(match[2]), 1, 65_536)];
}

/** Reads an explain request's parameters (all optional); anything unknown or malformed is a 400. */
export function parseExplainSettings(parameters: Parameters | undefined): ExplainSettings {
  const p = parameters ?? {};
  const method = p.method ?? "shap";
  if (typeof method !== "string" || !(EXPLAIN_METHODS as readonly string[]).includes(method)) {
    throw invalid(
      `explain parameter 'method' is ${echoJson(method)}; use one of ${EXPLAIN_METHODS.join(", ")}`,
    );
  }
  let baseline: BaselineChoice = { kind: "default" };
  if (p.baseline !== undefined) {
    if (typeof p.baseline === "number") {
      if (!Number.isFinite(p.baseline))
        throw invalid("explain parameter 'baseline' must be finite");
      baseline = { kind: "value", value: p.baseline };
    } else if (
      p.baseline === "background" ||
      p.baseline === "golden" ||
      p.baseline === "zeros" ||
      p.baseline === "default"
    ) {
      baseline = { kind: p.baseline };
    } else {
      throw invalid(
        `explain parameter 'baseline' is ${echoJson(p.baseline)}; use "background", "golden", "zeros", "default" or a number`,
      );
    }
  }
  const settings: ExplainSettings = {
    method: method as ExplainMethod,
    baseline,
    seed: p.seed === undefined ? 0 : integer("seed", p.seed, 0, 0xffff_ffff),
  };
  if (p.samples !== undefined) settings.samples = integer("samples", p.samples, 2, 1e9);
  if (p.target !== undefined) settings.target = integer("target", p.target, 0, 1e9);
  if (p.window !== undefined) settings.window = pair("window", p.window);
  if (p.stride !== undefined) settings.stride = pair("stride", p.stride);
  if (settings.method !== "occlusion" && (settings.window || settings.stride)) {
    throw invalid("explain parameters 'window' and 'stride' apply to method occlusion only");
  }
  if (settings.method === "occlusion" && settings.samples !== undefined) {
    throw invalid("method occlusion takes 'window' and 'stride', not 'samples'");
  }
  const known = new Set(["method", "baseline", "samples", "target", "seed", "window", "stride"]);
  // Request parameters the data plane itself reads are not explain parameters' business.
  const passed = new Set(["alias", "runtime"]);
  for (const key of Object.keys(p)) {
    if (!known.has(key) && !passed.has(key)) {
      throw invalid(`unknown explain parameter ${echoJson(key)}; known: ${[...known].join(", ")}`);
    }
  }
  return settings;
}

/** The spatial layout occlusion slides over: channels × height × width of one input row. */
function spatialLayout(rowShape: readonly number[]): { channels: number; h: number; w: number } {
  if (rowShape.length === 0) return { channels: 1, h: 1, w: 1 };
  if (rowShape.length === 1) return { channels: 1, h: 1, w: rowShape[0]! };
  const h = rowShape.at(-2)!;
  const w = rowShape.at(-1)!;
  const channels = rowShape.slice(0, -2).reduce((a, d) => a * d, 1);
  return { channels, h, w };
}

/** Window origins along one axis: every `stride`, and the last one flush with the edge. */
function origins(size: number, window: number, stride: number): number[] {
  const out: number[] = [];
  for (let at = 0; at + window <= size; at += stride) out.push(at);
  if (out.at(-1) !== size - window) out.push(size - window);
  return out;
}

/** Occlusion's window and stride for an input row (defaults: 2×2, stride 1; 1-D inputs 1, 1). */
function occlusionGeometry(
  settings: ExplainSettings,
  rowShape: readonly number[],
): { window: [number, number]; stride: [number, number]; positions: number } {
  const { h, w } = spatialLayout(rowShape);
  const flat = rowShape.length < 2;
  const window: [number, number] = [...(settings.window ?? (flat ? [1, 1] : [2, 2]))];
  if (
    flat &&
    settings.window &&
    settings.window[0] !== 1 &&
    settings.window[0] !== settings.window[1]
  ) {
    throw invalid(`this input has one axis; give occlusion a window of columns, e.g. 4`);
  }
  if (flat) window[0] = 1;
  const stride: [number, number] = [...(settings.stride ?? [1, 1])];
  if (flat) stride[0] = 1;
  if (window[0] > h || window[1] > w) {
    throw invalid(
      `occlusion window ${window[0]}x${window[1]} is larger than the input's ${h}x${w}`,
    );
  }
  const positions =
    origins(h, window[0], stride[0]).length * origins(w, window[1], stride[1]).length;
  return { window, stride, positions };
}

/**
 * The most evaluations an explanation can take with these settings, computed
 * before anything is allocated, and the samples it will use: explicit samples
 * past the budget are refused; default ones shrink to fit it.
 */
export function plannedWork(
  settings: ExplainSettings,
  rowShape: readonly number[],
  backgroundRows: number,
  budget: number,
): { evaluations: number; samples: number } {
  const features = rowShape.reduce((a, d) => a * d, 1);
  const tooMany = (evaluations: number, what: string) =>
    invalid(
      `this explanation needs ${evaluations} model evaluations (${what}); this server allows ${budget} (MAX_EXPLAIN_EVALUATIONS): ask for fewer samples${settings.method === "shap" ? " or use a smaller background" : ""}`,
    );
  switch (settings.method) {
    case "shap": {
      // x, the background rows, then each coalition over every background row.
      const fixed = 1 + backgroundRows;
      const fit = Math.floor((budget - fixed) / backgroundRows);
      const samples = settings.samples ?? Math.min(DEFAULT_SHAP_SAMPLES, fit);
      const evaluations = fixed + samples * backgroundRows;
      if (samples < 2 || evaluations > budget) {
        throw tooMany(
          fixed + Math.max(samples, 2) * backgroundRows,
          `${Math.max(samples, 2)} coalitions × ${backgroundRows} background rows`,
        );
      }
      return { evaluations, samples };
    }
    case "occlusion": {
      const { positions } = occlusionGeometry(settings, rowShape);
      const evaluations = 1 + positions;
      if (evaluations > budget) throw tooMany(evaluations, `${positions} windows`);
      return { evaluations, samples: positions };
    }
    case "integrated_gradients": {
      const perStep = 2 * features;
      const fit = Math.floor((budget - 2) / perStep);
      const samples = settings.samples ?? Math.min(DEFAULT_IG_STEPS, fit);
      const evaluations = 2 + samples * perStep;
      if (samples < 1 || evaluations > budget) {
        throw tooMany(
          2 + Math.max(samples, 1) * perStep,
          `${Math.max(samples, 1)} steps × 2 × ${features} elements`,
        );
      }
      return { evaluations, samples };
    }
  }
}

/** mulberry32: a small, fast, well-mixed 32-bit PRNG; the same seed gives the same stream. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs rows through `evaluate` in batches and keeps the target value of each. */
class BatchedTarget {
  evaluations = 0;
  private readonly buffer: Float32Array;
  /** Rows per call: EXPLAIN_BATCH_ROWS, fewer when a row is large. */
  private readonly batchRows: number;

  constructor(
    private readonly evaluate: Evaluate,
    private readonly features: number,
    private readonly outputWidth: number,
    private readonly target: number,
  ) {
    this.batchRows = Math.max(
      1,
      Math.min(EXPLAIN_BATCH_ROWS, Math.floor(MAX_BATCH_VALUES / Math.max(features, outputWidth))),
    );
    this.buffer = new Float32Array(this.batchRows * features);
  }

  /** `fill(i, row)` writes input row i of `count`; returns the target output of each. */
  async run(count: number, fill: (i: number, row: Float32Array) => void): Promise<Float64Array> {
    const values = new Float64Array(count);
    for (let start = 0; start < count; start += this.batchRows) {
      const rows = Math.min(this.batchRows, count - start);
      for (let i = 0; i < rows; i++) {
        fill(start + i, this.buffer.subarray(i * this.features, (i + 1) * this.features));
      }
      const out = await this.evaluate(this.buffer.subarray(0, rows * this.features), rows);
      if (out.length !== rows * this.outputWidth) {
        throw invalid(
          `the model answered ${out.length / rows} values per row for ${rows} rows; explanations need a fixed-size output row`,
        );
      }
      for (let i = 0; i < rows; i++) values[start + i] = out[i * this.outputWidth + this.target]!;
      this.evaluations += rows;
    }
    return values;
  }
}

/**
 * Explains f at x. `rowShape` is one input row's shape (no batch axis);
 * `baseline` the reference rows (shap averages over all of them; occlusion and
 * integrated gradients use their mean); `samples` comes from `plannedWork`.
 */
export async function explain(
  settings: ExplainSettings,
  x: Float32Array,
  rowShape: readonly number[],
  baseline: Baseline,
  samples: number,
  evaluate: Evaluate,
): Promise<Explanation> {
  const features = x.length;
  // f(x) first: it fixes the output width and, by default, the target (the top output).
  const prediction = Float32Array.from(await evaluate(x, 1));
  const outputWidth = prediction.length;
  if (outputWidth === 0) throw invalid("the model's output is empty: there is nothing to explain");
  let target = settings.target;
  if (target === undefined) {
    target = 0;
    for (let i = 1; i < outputWidth; i++) if (prediction[i]! > prediction[target]!) target = i;
  } else if (target >= outputWidth) {
    throw invalid(
      `explain target ${target} is out of range: the output row has ${outputWidth} values`,
    );
  }
  const runner = new BatchedTarget(evaluate, features, outputWidth, target);
  runner.evaluations = 1;
  const fx = prediction[target]!;
  const common = { prediction, target, samples };
  switch (settings.method) {
    case "shap":
      return {
        method: "shap",
        ...common,
        ...(await kernelShap(x, fx, baseline, samples, settings.seed, runner)),
      };
    case "occlusion":
      return {
        method: "occlusion",
        ...common,
        ...(await occlusion(settings, x, fx, rowShape, meanRow(baseline, features), runner)),
      };
    case "integrated_gradients":
      return {
        method: "integrated_gradients",
        ...common,
        ...(await integratedGradients(x, fx, meanRow(baseline, features), samples, runner)),
      };
  }
}

function meanRow(baseline: Baseline, features: number): Float32Array {
  const mean = new Float64Array(features);
  for (let r = 0; r < baseline.count; r++) {
    for (let j = 0; j < features; j++) mean[j]! += baseline.rows[r * features + j]!;
  }
  return Float32Array.from(mean, (v) => v / baseline.count);
}

async function kernelShap(
  x: Float32Array,
  fx: number,
  background: Baseline,
  samples: number,
  seed: number,
  runner: BatchedTarget,
): Promise<Pick<Explanation, "attributions" | "baseValue" | "evaluations" | "exact" | "samples">> {
  const features = x.length;
  const R = background.count;
  const rows = background.rows;
  const onBackground = await runner.run(R, (i, row) =>
    row.set(rows.subarray(i * features, (i + 1) * features)),
  );
  let base = 0;
  for (const v of onBackground) base += v;
  base /= R;
  const delta = fx - base;
  const attributions = new Float32Array(features);
  // Only features where x differs from some background row can matter (the rest get 0).
  const varying: number[] = [];
  for (let j = 0; j < features; j++) {
    for (let r = 0; r < R; r++) {
      if (rows[r * features + j] !== x[j]) {
        varying.push(j);
        break;
      }
    }
  }
  const M = varying.length;
  const done = (exact: boolean, used: number) => ({
    attributions,
    baseValue: base,
    evaluations: runner.evaluations,
    exact,
    samples: used,
  });
  if (M === 0) return done(true, 0);
  if (M === 1) {
    attributions[varying[0]!] = delta;
    return done(true, 0);
  }
  if (M > MAX_SHAP_FEATURES) {
    throw invalid(
      `KernelSHAP explains at most ${MAX_SHAP_FEATURES} varying input elements; this input has ${M}: use method occlusion or integrated_gradients`,
    );
  }
  const exact = M <= MAX_EXACT_FEATURES && 2 ** M - 2 <= samples;
  // The normal equations of the constrained fit: unknowns φ of varying[0..M-2];
  // φ of the last is delta − Σ of the others (efficiency, exactly).
  const n = M - 1;
  // The fit's sums over coalitions z (0/1 over the M varying elements), weight w, value y:
  // G = Σ w z zᵀ and Y = Σ w y z. A coalition with more members than not is added through
  // its complement c (z = 1 − c: z zᵀ = 11ᵀ − 1cᵀ − c1ᵀ + ccᵀ, kept as Σw, Σw c, Σw ccᵀ, and
  // Σwy, Σwy c), so each costs min(|S|, M − |S|)², small for the sizes the kernel favours.
  const gram = new Float64Array(M * M);
  const outer = new Float64Array(M * M);
  const yz = new Float64Array(M);
  const complementSum = new Float64Array(M);
  const complementY = new Float64Array(M);
  let weightSum = 0;
  let weightedY = 0;
  const members = new Int32Array(M);
  const coalitions = exact ? 2 ** M - 2 : samples - (samples % 2);
  const random = seededRandom(seed);
  // Sampling: a coalition's size s with probability ∝ (M−1) / (s (M−s)), its members
  // uniformly; the kernel's C(M,s)⁻¹ is then the chance of each subset, so every
  // sample weighs the same. Enumerating: each subset weighs the kernel itself.
  const sizeWeights = new Float64Array(M);
  let sizeTotal = 0;
  for (let s = 1; s < M; s++) sizeTotal += sizeWeights[s] = (M - 1) / (s * (M - s));
  const order = Int32Array.from(varying.keys());
  const masks: Uint8Array[] = [];
  let previous = new Uint8Array(M);
  const nextMask = (c: number): Uint8Array => {
    const mask = new Uint8Array(M);
    if (exact) {
      const bits = c + 1;
      for (let k = 0; k < M; k++) mask[k] = (bits >>> k) & 1;
      return mask;
    }
    if (c % 2 === 1) {
      // The complement of the coalition drawn just before (paired sampling).
      for (let k = 0; k < M; k++) mask[k] = 1 - previous[k]!;
      return mask;
    }
    let pick = random() * sizeTotal;
    let s = 1;
    while (s < M - 1 && pick >= sizeWeights[s]!) pick -= sizeWeights[s++]!;
    // Partial Fisher–Yates: the first s of a shuffled order are the members.
    for (let k = 0; k < s; k++) {
      const swap = k + Math.floor(random() * (M - k));
      const t = order[k]!;
      order[k] = order[swap]!;
      order[swap] = t;
      mask[order[k]!] = 1;
    }
    previous = mask;
    return mask;
  };
  const binomial = (m: number, k: number) => {
    let value = 1;
    for (let i = 1; i <= k; i++) value = (value * (m - k + i)) / i;
    return value;
  };
  const perBatch = Math.max(1, Math.floor(EXPLAIN_BATCH_ROWS / R));
  for (let first = 0; first < coalitions; first += perBatch) {
    const count = Math.min(perBatch, coalitions - first);
    masks.length = 0;
    for (let c = 0; c < count; c++) masks.push(nextMask(first + c));
    const values = await runner.run(count * R, (i, row) => {
      const mask = masks[Math.floor(i / R)]!;
      const b = i % R;
      row.set(rows.subarray(b * features, (b + 1) * features));
      for (let k = 0; k < M; k++) if (mask[k]) row[varying[k]!] = x[varying[k]!]!;
    });
    for (let c = 0; c < count; c++) {
      const mask = masks[c]!;
      let v = 0;
      for (let b = 0; b < R; b++) v += values[c * R + b]!;
      v = v / R - base;
      let size = 0;
      for (let k = 0; k < M; k++) size += mask[k]!;
      const weight = exact ? (M - 1) / (binomial(M, size) * size * (M - size)) : 1;
      const flip = 2 * size > M;
      let listed = 0;
      for (let k = 0; k < M; k++) if ((mask[k] === 1) !== flip) members[listed++] = k;
      const target = flip ? outer : gram;
      for (let a = 0; a < listed; a++) {
        const row = members[a]! * M;
        for (let b = 0; b < listed; b++) target[row + members[b]!]! += weight;
      }
      if (flip) {
        weightSum += weight;
        weightedY += weight * v;
        for (let a = 0; a < listed; a++) {
          complementSum[members[a]!]! += weight;
          complementY[members[a]!]! += weight * v;
        }
      } else {
        for (let a = 0; a < listed; a++) yz[members[a]!]! += weight * v;
      }
    }
  }
  // G and Y in full, then the constrained normal equations over d = z[0..n) − z[n]·1
  // with target y − z[n]·Δ (efficiency imposed by eliminating the last element).
  for (let r = 0; r < M; r++) {
    yz[r]! += weightedY - complementY[r]!;
    for (let k = 0; k < M; k++) {
      gram[r * M + k]! += weightSum - complementSum[r]! - complementSum[k]! + outer[r * M + k]!;
    }
  }
  const G = (r: number, k: number) => gram[r * M + k]!;
  const ata = new Float64Array(n * n);
  const aty = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    aty[r] = yz[r]! - yz[n]! - delta * (G(r, n) - G(n, n));
    for (let k = 0; k < n; k++) ata[r * n + k] = G(r, k) - G(r, n) - G(n, k) + G(n, n);
  }
  const phi = solveSymmetric(ata, aty, n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    attributions[varying[k]!] = phi[k]!;
    sum += phi[k]!;
  }
  attributions[varying[n]!] = delta - sum;
  return done(exact, coalitions);
}

/**
 * Solves A φ = b for a symmetric positive semi-definite A by Gaussian
 * elimination with partial pivoting. Directions the coalitions never
 * separated (a pivot ~0) get 0, rather than noise.
 */
function solveSymmetric(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const rhs = Float64Array.from(b);
  let scale = 0;
  for (let i = 0; i < n; i++) scale = Math.max(scale, Math.abs(m[i * n + i]!));
  const tiny = scale * 1e-12;
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  const singular = new Uint8Array(n);
  for (let col = 0; col < n; col++) {
    let best = col;
    for (let r = col + 1; r < n; r++) {
      if (Math.abs(m[r * n + col]!) > Math.abs(m[best * n + col]!)) best = r;
    }
    if (best !== col) {
      for (let k = 0; k < n; k++) {
        const t = m[col * n + k]!;
        m[col * n + k] = m[best * n + k]!;
        m[best * n + k] = t;
      }
      const t = rhs[col]!;
      rhs[col] = rhs[best]!;
      rhs[best] = t;
      const p = perm[col]!;
      perm[col] = perm[best]!;
      perm[best] = p;
    }
    const pivot = m[col * n + col]!;
    if (Math.abs(pivot) <= tiny) {
      singular[col] = 1;
      continue;
    }
    for (let r = col + 1; r < n; r++) {
      const factor = m[r * n + col]! / pivot;
      if (factor === 0) continue;
      for (let k = col; k < n; k++) m[r * n + k]! -= factor * m[col * n + k]!;
      rhs[r]! -= factor * rhs[col]!;
    }
  }
  const out = new Float64Array(n);
  for (let col = n - 1; col >= 0; col--) {
    if (singular[col]) continue;
    let v = rhs[col]!;
    for (let k = col + 1; k < n; k++) v -= m[col * n + k]! * out[k]!;
    out[col] = v / m[col * n + col]!;
  }
  return out;
}

async function occlusion(
  settings: ExplainSettings,
  x: Float32Array,
  fx: number,
  rowShape: readonly number[],
  baseline: Float32Array,
  runner: BatchedTarget,
): Promise<Pick<Explanation, "attributions" | "baseValue" | "evaluations" | "window" | "stride">> {
  const { channels, h, w } = spatialLayout(rowShape);
  const { window, stride } = occlusionGeometry(settings, rowShape);
  const rowsAt = origins(h, window[0], stride[0]);
  const colsAt = origins(w, window[1], stride[1]);
  const plane = h * w;
  const windows = rowsAt.flatMap((r) => colsAt.map((c) => [r, c] as const));
  const values = await runner.run(windows.length, (i, row) => {
    row.set(x);
    const [r0, c0] = windows[i]!;
    for (let ch = 0; ch < channels; ch++) {
      for (let r = r0; r < r0 + window[0]; r++) {
        const start = ch * plane + r * w + c0;
        row.set(baseline.subarray(start, start + window[1]), start);
      }
    }
  });
  const total = new Float64Array(x.length);
  const covered = new Uint32Array(x.length);
  windows.forEach((origin, i) => {
    const drop = fx - values[i]!;
    const [r0, c0] = origin;
    for (let ch = 0; ch < channels; ch++) {
      for (let r = r0; r < r0 + window[0]; r++) {
        for (let c = c0; c < c0 + window[1]; c++) {
          const index = ch * plane + r * w + c;
          total[index]! += drop;
          covered[index]!++;
        }
      }
    }
  });
  const attributions = Float32Array.from(total, (v, i) => (covered[i] ? v / covered[i]! : 0));
  // The fully occluded input is not evaluated; the reference is the prediction itself.
  return { attributions, baseValue: fx, evaluations: runner.evaluations, window, stride };
}

async function integratedGradients(
  x: Float32Array,
  fx: number,
  baseline: Float32Array,
  steps: number,
  runner: BatchedTarget,
): Promise<Pick<Explanation, "attributions" | "baseValue" | "evaluations" | "convergenceDelta">> {
  const features = x.length;
  const [fBase] = await runner.run(1, (_, row) => row.set(baseline));
  const diff = Float64Array.from(x, (v, j) => v - baseline[j]!);
  const moving: number[] = [];
  for (let j = 0; j < features; j++) if (diff[j] !== 0) moving.push(j);
  const phi = new Float64Array(features);
  const point = new Float32Array(features);
  for (let step = 0; step < steps; step++) {
    // The midpoint of step `step` on the straight path, and ± half a step along each moving axis:
    // f(p + h/2 eⱼ) − f(p − h/2 eⱼ) ≈ ∂ⱼf(p) · hⱼ with hⱼ = (xⱼ − x'ⱼ) / steps.
    const alpha = (step + 0.5) / steps;
    for (let j = 0; j < features; j++) point[j] = baseline[j]! + alpha * diff[j]!;
    const values = await runner.run(2 * moving.length, (i, row) => {
      row.set(point);
      const j = moving[i >> 1]!;
      const half = diff[j]! / steps / 2;
      row[j] = point[j]! + (i & 1 ? -half : half);
    });
    moving.forEach((j, k) => (phi[j]! += values[2 * k]! - values[2 * k + 1]!));
  }
  const attributions = Float32Array.from(phi);
  let sum = 0;
  for (const v of phi) sum += v;
  return {
    attributions,
    baseValue: fBase!,
    evaluations: runner.evaluations,
    convergenceDelta: sum - (fx - fBase!),
  };
}
