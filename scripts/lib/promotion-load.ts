/**
 * @module
 * Promotion under load, measured: autocannon drives `POST /v2/models/{model}/infer`
 * (no version, so the `production` alias answers) while the admin API flips
 * `production` between two versions — through their gates, never forced —
 * and finally rolls it back. Every response is checked as it arrives: status
 * 200, a version that is one of the two, headers that agree with the body, and
 * outputs exactly equal to what that version answers when pinned. After the
 * rollback has had the worker's alias TTL to propagate, every response must
 * come from the version it restored.
 *
 * `npm run bench:promotion` and `test/e2e/promotion-load.test.ts` run this
 * against `wrangler dev`.
 */
import autocannon from "autocannon";
import type { IncomingHttpHeaders } from "node:http";
import type { AliasEntry } from "../../core/registry/aliases";
import type { InferenceResponse } from "../../core/protocol/types";
import type { PromotionOutcome } from "../../core/serving/promoter";
import { RemoteTarget } from "./targets";

export interface PromotionLoadOptions {
  /** The worker, e.g. `http://127.0.0.1:8787`. */
  base: string;
  /** An admin token the worker accepts. */
  token: string;
  model: string;
  /** `production` starts on the first and flips to the second, then back, and so on. */
  versions: readonly [number, number];
  connections: number;
  /** At least this long under load; longer if the flips and the rollback need it. */
  seconds: number;
  /** Promotions of `production` (alternating between the two versions), spread over `seconds`. */
  flips: number;
  /** The worker's ALIAS_TTL_MS: after the rollback, the load goes on this long (plus a margin) before "settled" responses are counted. */
  aliasTtlMs?: number;
  /** Passed to every flip: a top-1 agreement gate against the version being replaced. */
  minAgreement?: number;
  /** Per-request timeout, seconds (autocannon counts a timeout as an error). */
  timeoutSeconds?: number;
  /** How many violation and flip-failure messages to keep. */
  maxExamples?: number;
  /** Progress lines (setup, every tenth flip, the rollback). */
  log?: (line: string) => void;
}

export interface RollbackFigures {
  status: PromotionOutcome["status"] | "error";
  /** The version `production` serves after it (null when it failed or removed the alias). */
  to: number | null;
  revision: number | null;
  error?: string;
}

export interface PromotionLoadFigures {
  model: string;
  versions: [number, number];
  connections: number;
  /** Seconds the load ran. */
  durationSeconds: number;
  /** Completed responses, as autocannon counts them. */
  requests: number;
  /** Responses the per-request hook checked (equals `requests` when every one was seen). */
  checked: number;
  non2xx: number;
  /** Connection errors, timeouts included. */
  errors: number;
  timeouts: number;
  /** non2xx + errors: requests that did not get a successful answer. */
  failed: number;
  /** Responses that broke a rule (any status other than 200 is one too). */
  violations: number;
  violationExamples: string[];
  /** Responses per `model_version` (as the body states it; unexpected values included). */
  served: Record<string, number>;
  /** Mean requests per second over the run. */
  requestsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  flipsDone: number;
  flipsFailed: number;
  flipFailures: string[];
  /** Mean and worst wall time of one flip through the admin API (gates included), ms. */
  flipMeanMs: number;
  flipMaxMs: number;
  rollback: RollbackFigures;
  /** Responses received once the rollback had `aliasTtlMs` + 1 s to reach the worker's isolates… */
  settledResponses: number;
  /** …and how many of them did not come from the version the rollback restored. */
  staleAfterSettle: number;
  /** Audit records of the model after the run. */
  historyLength: number;
  /** Whether the two versions answer the fixed input differently (so outputs identify the version). */
  outputsDiffer: boolean;
}

interface ModelMetadata {
  inputs: { name: string; datatype: string; shape: number[] }[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One request the model accepts: its first input at batch 1, filled with a fixed pattern. */
export function fixedRequestBody(metadata: ModelMetadata): string {
  const input = metadata.inputs[0];
  if (!input) throw new Error("the model declares no inputs");
  const shape = input.shape.map((d) => (d < 0 ? 1 : d));
  const size = shape.reduce((a, b) => a * b, 1);
  return JSON.stringify({
    inputs: [
      {
        name: input.name,
        shape,
        datatype: input.datatype,
        data: Array.from({ length: size }, (_, i) => (i % 17) / 16),
      },
    ],
  });
}

async function postJson(url: string, body: string) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`POST ${url}: ${response.status} ${text}`);
  return { response, body: JSON.parse(text) as InferenceResponse };
}

/** The outputs a version answers `body` with when pinned, as canonical JSON (asked twice: they must not change). */
async function expectedOutputs(base: string, model: string, version: number, body: string) {
  const url = `${base}/v2/models/${model}/versions/${version}/infer`;
  const answers: string[] = [];
  for (let i = 0; i < 2; i++) {
    const { response, body: answer } = await postJson(url, body);
    const header = response.headers.get("x-pinion-model");
    if (answer.model_version !== String(version) || header !== `${model}@${version}`) {
      throw new Error(
        `${url} answered as version ${answer.model_version} (x-pinion-model ${header})`,
      );
    }
    answers.push(JSON.stringify(answer.outputs));
  }
  if (answers[0] !== answers[1]) {
    throw new Error(`${model}@${version} answers the same input differently on each request`);
  }
  return answers[0]!;
}

/** The single version an alias entry serves, or null for a split or no entry. */
function singleVersion(entry: AliasEntry | null | undefined): number | null {
  return entry && entry.split.length === 1 ? entry.split[0]!.version : null;
}

function header(headers: Record<string, unknown>, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(", ") : String(value);
  }
  return undefined;
}

const describeError = (error: unknown) => (error instanceof Error ? error.message : String(error));

export async function runPromotionLoad(
  options: PromotionLoadOptions,
): Promise<PromotionLoadFigures> {
  const { base, token, model, connections, seconds, flips } = options;
  const [a, b] = options.versions;
  const aliasTtlMs = options.aliasTtlMs ?? 5000;
  const maxExamples = options.maxExamples ?? 10;
  const log = options.log ?? (() => {});
  const target = new RemoteTarget(new URL(base), token);
  const alias = "production";

  // -- setup: what each version answers, and production on the first --------
  const metadataResponse = await fetch(`${base}/v2/models/${model}`);
  if (!metadataResponse.ok) {
    throw new Error(`GET /v2/models/${model}: ${metadataResponse.status}`);
  }
  const body = fixedRequestBody((await metadataResponse.json()) as ModelMetadata);
  const expected = new Map<string, string>([
    [String(a), await expectedOutputs(base, model, a, body)],
    [String(b), await expectedOutputs(base, model, b, body)],
  ]);
  const setup = await target.promote(model, {
    alias,
    version: a,
    force: true,
    reason: "promotion-load: setup",
  });
  if (setup.status !== "applied" && setup.status !== "noop") {
    throw new Error(`setup: promoting ${model}@${a} to ${alias} answered ${setup.status}`);
  }
  // Wait until the alias route answers from the first version (the isolate's cache may be older).
  const inferUrl = `${base}/v2/models/${model}/infer`;
  const warmDeadline = Date.now() + aliasTtlMs + 10_000;
  for (;;) {
    const { body: answer } = await postJson(inferUrl, body);
    if (answer.model_version === String(a)) break;
    if (Date.now() > warmDeadline) {
      throw new Error(`setup: ${inferUrl} still answers version ${answer.model_version}, not ${a}`);
    }
    await sleep(200);
  }
  log(`production = ${model}@${a}; expected outputs of versions ${a} and ${b} recorded`);

  // -- the per-response checks ----------------------------------------------
  let checked = 0;
  let violations = 0;
  const violationExamples: string[] = [];
  const served: Record<string, number> = {};
  let settleAt = Infinity;
  let settledVersion: string | null = null;
  let settledResponses = 0;
  let staleAfterSettle = 0;
  const violation = (message: string) => {
    violations++;
    if (violationExamples.length < maxExamples) violationExamples.push(message);
  };
  const onResponse = (
    status: number,
    text: string,
    _context: object,
    headers?: IncomingHttpHeaders,
  ) => {
    checked++;
    const received = performance.now();
    if (status !== 200) return violation(`status ${status}: ${text.slice(0, 200)}`);
    let answer: InferenceResponse;
    try {
      answer = JSON.parse(text) as InferenceResponse;
    } catch {
      return violation(`body is not JSON: ${text.slice(0, 200)}`);
    }
    const version = String(answer.model_version);
    served[version] = (served[version] ?? 0) + 1;
    const outputs = expected.get(version);
    if (outputs === undefined)
      return violation(`model_version ${version} is neither ${a} nor ${b}`);
    const h: Record<string, unknown> = headers ?? {};
    const modelHeader = header(h, "x-pinion-model");
    if (modelHeader !== `${model}@${version}`) {
      violation(`x-pinion-model ${modelHeader} but model_version ${version}`);
    } else if (header(h, "x-pinion-alias") !== alias) {
      violation(`x-pinion-alias ${header(h, "x-pinion-alias")}, not ${alias}`);
    } else if (JSON.stringify(answer.outputs) !== outputs) {
      violation(`version ${version} answered outputs that differ from its pinned answer`);
    }
    if (received >= settleAt) {
      settledResponses++;
      if (version !== settledVersion) staleAfterSettle++;
    }
  };

  // -- load ---------------------------------------------------------------------
  const started = performance.now();
  let tracker!: autocannon.Instance;
  const loadDone = new Promise<autocannon.Result>((resolve, reject) => {
    tracker = autocannon(
      {
        url: base,
        connections,
        // An upper bound only: the run is stopped once the flips, the rollback and its settling are done.
        duration: seconds * 4 + (aliasTtlMs / 1000) * 2 + 120,
        timeout: options.timeoutSeconds ?? 10,
        requests: [
          {
            method: "POST",
            path: `/v2/models/${model}/infer`,
            headers: { "content-type": "application/json" },
            body,
            onResponse,
          },
        ],
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
  // Awaited below; until then a failure must not count as an unhandled rejection.
  loadDone.catch(() => {});

  // -- flips, spread over the run, then one rollback -----------------------------
  const interval = (seconds * 1000) / (flips + 2);
  let flipsDone = 0;
  const flipFailures: string[] = [];
  let flipsFailed = 0;
  const flipTimes: number[] = [];
  let state: number = a;
  let rollback: RollbackFigures = { status: "error", to: null, revision: null };
  const script = (async () => {
    for (let i = 1; i <= flips; i++) {
      const wait = started + i * interval - performance.now();
      if (wait > 0) await sleep(wait);
      const version = state === a ? b : a;
      const t0 = performance.now();
      try {
        const outcome = await target.promote(model, {
          alias,
          version,
          reason: `promotion-load: flip ${i} of ${flips}`,
          ...(options.minAgreement !== undefined ? { minAgreement: options.minAgreement } : {}),
        });
        flipTimes.push(performance.now() - t0);
        const record = outcome.record;
        if (outcome.status !== "applied" || !record) {
          const gates = outcome.gates.filter((g) => !g.passed).map((g) => `${g.gate}: ${g.detail}`);
          throw new Error(`${outcome.status}${gates.length ? ` (${gates.join("; ")})` : ""}`);
        }
        if (singleVersion(record.to) !== version || singleVersion(record.from) !== state) {
          throw new Error(
            `record ${record.revision} moved ${JSON.stringify(record.from)} → ${JSON.stringify(record.to)}, not ${state} → ${version}`,
          );
        }
        state = version;
        flipsDone++;
      } catch (error) {
        flipsFailed++;
        if (flipFailures.length < maxExamples) {
          flipFailures.push(`flip ${i} to ${version}: ${describeError(error)}`);
        }
      }
      if (i % 10 === 0) log(`flip ${i}/${flips}: production = ${state} (${flipsFailed} failed)`);
    }
    const wait = started + (flips + 1) * interval - performance.now();
    if (wait > 0) await sleep(wait);
    try {
      const outcome = await target.rollback(model, {
        alias,
        reason: "promotion-load: roll back the last flip",
      });
      rollback = {
        status: outcome.status,
        to: singleVersion(outcome.change.to),
        revision: outcome.record?.revision ?? null,
      };
    } catch (error) {
      rollback = { status: "error", to: null, revision: null, error: describeError(error) };
    }
    log(`rollback: ${rollback.status}, production = ${rollback.to ?? "?"}`);
    // From here on every response must come from the restored version.
    settledVersion = rollback.to === null ? null : String(rollback.to);
    settleAt = performance.now() + aliasTtlMs + 1000;
  })();

  try {
    await script;
    // Keep the load on until the run is long enough and the settled responses span two seconds.
    const until = Math.max(started + seconds * 1000 + 100, settleAt + 2000);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      loadDone,
      new Promise((resolve) => (timer = setTimeout(resolve, until - performance.now()))),
    ]);
    clearTimeout(timer);
  } finally {
    tracker.stop();
  }
  const result = await loadDone;
  const history = await target.history(model);

  const failed = result.non2xx + result.errors;
  return {
    model,
    versions: [a, b],
    connections,
    durationSeconds: result.duration,
    requests: result.requests.total,
    checked,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    failed,
    violations,
    violationExamples,
    served,
    requestsPerSecond: result.requests.total / result.duration,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    latencyMaxMs: result.latency.max,
    flipsDone,
    flipsFailed,
    flipFailures,
    flipMeanMs: flipTimes.length ? flipTimes.reduce((x, y) => x + y, 0) / flipTimes.length : 0,
    flipMaxMs: flipTimes.length ? Math.max(...flipTimes) : 0,
    rollback,
    settledResponses,
    staleAfterSettle,
    historyLength: history.length,
    outputsDiffer: expected.get(String(a)) !== expected.get(String(b)),
  };
}
