/**
 * @module
 * Shadow traffic: after a response has been sent (the caller awaits none of
 * this), the same request runs on the alias's shadow version and the two
 * answers are compared. Totals accumulate per isolate and are written to the
 * registry at most every `flushMs`, and at the latest `flushMs` after a
 * sample. Nothing here throws: a failing candidate is counted, never surfaced.
 */
import type { InferenceRequest, InferenceResponse } from "../protocol/types";
import { emptyTotals, type ShadowStatsStore, type ShadowTotals } from "../registry/shadow-stats";
import { argmaxRows } from "./gates";
import type { ShadowSample } from "./metrics";
import type { Resolution } from "./resolver";

/** Answers a request on another version of the same model, wherever that version is served. */
export type VersionAnswerer = (
  version: number,
  request: InferenceRequest,
) => Promise<InferenceResponse>;

interface Divergence {
  maxAbsDiff: number;
  meanAbsDiff: number;
  top1Rows: number;
  top1Disagreements: number;
}

/** Compares two answers output by output (numeric outputs, and classifications by top-1). */
export function divergence(primary: InferenceResponse, candidate: InferenceResponse): Divergence {
  let maxAbsDiff = 0;
  let sumAbs = 0;
  let count = 0;
  let top1Rows = 0;
  let top1Disagreements = 0;
  for (const ours of primary.outputs) {
    const theirs = candidate.outputs.find((o) => o.name === ours.name);
    const a = ours.data as unknown[];
    const b = theirs?.data as unknown[] | undefined;
    if (ours.datatype === "BYTES" && theirs?.datatype === "BYTES" && b?.length === a.length) {
      // Classification strings ("score:index[:label]", best first): each row's top-1 class.
      const k = ours.shape.at(-1) ?? 0;
      for (let row = 0; k > 0 && row * k < a.length; row++) {
        top1Rows++;
        const top = (data: unknown[]) => String(data[row * k]).split(":")[1];
        if (top(a) !== top(b)) top1Disagreements++;
      }
      continue;
    }
    if (!b || a.length !== b.length || typeof a[0] !== "number") {
      // A differently shaped or missing output is as divergent as it gets.
      maxAbsDiff = Infinity;
      continue;
    }
    const x = a as number[];
    const y = b as number[];
    for (let i = 0; i < x.length; i++) {
      const d = Math.abs(x[i]! - y[i]!);
      maxAbsDiff = Math.max(maxAbsDiff, Number.isNaN(d) ? Infinity : d);
      sumAbs += d;
      count++;
    }
    if (ours.shape.length === 2 && ours.shape[1]! > 1) {
      const rows = ours.shape[0]!;
      const theirsTop = argmaxRows(y, rows);
      argmaxRows(x, rows).forEach((top, r) => {
        top1Rows++;
        if (top !== theirsTop[r]) top1Disagreements++;
      });
    }
  }
  return { maxAbsDiff, meanAbsDiff: count ? sumAbs / count : 0, top1Rows, top1Disagreements };
}

export class ShadowRecorder {
  /** Names this isolate's totals objects. */
  readonly reporter = crypto.randomUUID();
  private readonly totals = new Map<string, { model: string; totals: ShadowTotals }>();
  private readonly dirty = new Set<string>();
  private lastFlush = -Infinity;
  private trailing: Promise<void> | undefined;

  constructor(
    private readonly stats: ShadowStatsStore,
    private readonly flushMs: number,
    private readonly now: () => number = Date.now,
    /** Also counts each run in the live metrics (its promise is that flush). */
    private readonly onSample?: (sample: ShadowSample) => Promise<void>,
  ) {}

  /** Runs `request` on the resolution's shadow version and records how its answer differs. */
  async mirror(
    resolution: Resolution,
    request: InferenceRequest,
    primary: InferenceResponse,
    answer: VersionAnswerer,
  ): Promise<void> {
    const { manifest, alias, revision, shadowVersion } = resolution;
    if (shadowVersion === undefined || alias === undefined || revision === undefined) return;
    const id = `${manifest.name}/${alias}/${revision}`;
    let entry = this.totals.get(id);
    if (!entry) {
      entry = { model: manifest.name, totals: emptyTotals(alias, revision, shadowVersion) };
      this.totals.set(id, entry);
    }
    const t = entry.totals;
    let counted: Promise<void> | undefined;
    const sample = { model: manifest.name, alias, version: shadowVersion };
    try {
      // The candidate runs on its own default runtime: shadowing compares versions as they would serve.
      const { runtime: _ignored, ...parameters } = request.parameters ?? {};
      const d = divergence(primary, await answer(shadowVersion, { ...request, parameters }));
      t.samples += 1;
      t.maxAbsDiff = Math.max(
        t.maxAbsDiff,
        d.maxAbsDiff === Infinity ? Number.MAX_VALUE : d.maxAbsDiff,
      );
      t.sumMeanAbsDiff += d.meanAbsDiff;
      t.top1Rows += d.top1Rows;
      t.top1Disagreements += d.top1Disagreements;
      counted = this.onSample?.({ ...sample, divergence: d });
    } catch (error) {
      t.errors += 1;
      counted = this.onSample?.(sample);
      console.warn(
        JSON.stringify({
          event: "shadow_failure",
          model: manifest.name,
          alias,
          candidate: shadowVersion,
          error: (error as Error).message,
        }),
      );
    }
    if (!t.primaries.includes(manifest.version)) {
      t.primaries = [...t.primaries, manifest.version].sort((a, b) => a - b);
    }
    t.updatedAt = new Date(this.now()).toISOString();
    this.dirty.add(id);
    // Throttled with a trailing write: totals reach the registry within flushMs
    // of any sample, even when traffic stops (the wait runs inside this
    // request's waitUntil; Workers allow 30 s there).
    const wait = this.lastFlush + this.flushMs - this.now();
    if (wait <= 0) {
      await this.flush();
    } else if (!this.trailing) {
      this.trailing = new Promise<void>((resolve) => setTimeout(resolve, wait)).then(() => {
        this.trailing = undefined;
        return this.flush();
      });
      await this.trailing;
    }
    await counted;
  }

  /** Writes every changed total; failures are logged and retried on the next flush. */
  async flush(): Promise<void> {
    this.lastFlush = this.now();
    const ids = [...this.dirty];
    this.dirty.clear();
    await Promise.all(
      ids.map(async (id) => {
        const entry = this.totals.get(id)!;
        try {
          await this.stats.write(entry.model, this.reporter, { ...entry.totals });
        } catch (error) {
          this.dirty.add(id);
          console.error(
            JSON.stringify({ event: "shadow_flush_failure", id, error: String(error) }),
          );
        }
      }),
    );
  }
}
