/**
 * @module
 * Shadow divergence statistics in the object store. Each isolate keeps running
 * totals per (alias, alias revision) and overwrites its own object now and
 * then; readers add up all isolates' objects. Eventually consistent by design:
 * a write per mirrored request would cost more than the mirroring.
 */
import { z } from "zod";
import { checkModelName, versionSchema } from "./names";
import { shadowPrefix } from "./layout";
import { listKeys, type ObjectStore } from "./store";

export const shadowTotalsSchema = z.object({
  alias: z.string(),
  /** The alias revision whose shadow setting produced these samples. */
  revision: z.number().int().nonnegative(),
  candidate: versionSchema,
  /** Versions that answered the mirrored requests. */
  primaries: z.array(versionSchema),
  /** Mirrored requests compared. */
  samples: z.number().int().nonnegative(),
  /** Mirrored requests whose candidate run failed (never seen by callers). */
  errors: z.number().int().nonnegative(),
  maxAbsDiff: z.number().nonnegative(),
  /** Sum over samples of each sample's mean absolute difference. */
  sumMeanAbsDiff: z.number().nonnegative(),
  /** Classifier rows compared on their top-1 class, and how many differed. */
  top1Rows: z.number().int().nonnegative(),
  top1Disagreements: z.number().int().nonnegative(),
  updatedAt: z.iso.datetime(),
});
export type ShadowTotals = z.infer<typeof shadowTotalsSchema>;

export interface ShadowReport extends Omit<ShadowTotals, "updatedAt"> {
  meanAbsDiff: number;
  top1Disagreement: number;
  /** Isolates that reported. */
  reporters: number;
  updatedAt: string;
}

export const shadowKey = (model: string, alias: string, revision: number, reporter: string) =>
  `${shadowPrefix(model, alias, revision)}${reporter}.json`;

export function emptyTotals(alias: string, revision: number, candidate: number): ShadowTotals {
  return {
    alias,
    revision,
    candidate,
    primaries: [],
    samples: 0,
    errors: 0,
    maxAbsDiff: 0,
    sumMeanAbsDiff: 0,
    top1Rows: 0,
    top1Disagreements: 0,
    updatedAt: new Date(0).toISOString(),
  };
}

export class ShadowStatsStore {
  constructor(private readonly store: ObjectStore) {}

  async write(model: string, reporter: string, totals: ShadowTotals): Promise<void> {
    await this.store.put(
      shadowKey(model, totals.alias, totals.revision, reporter),
      JSON.stringify(totals),
      { httpMetadata: { contentType: "application/json" } },
    );
  }

  /** Every (alias, revision) with shadow samples, newest revision first, all isolates added up. */
  async report(model: string): Promise<ShadowReport[]> {
    checkModelName(model);
    const keys = await listKeys(this.store, shadowPrefix(model));
    const groups = new Map<string, ShadowReport>();
    for (const key of keys) {
      const object = await this.store.get(key);
      if (!object) continue;
      const parsed = shadowTotalsSchema.safeParse(JSON.parse(await object.text()));
      if (!parsed.success) continue; // a torn or foreign object: skip it rather than fail the report
      const t = parsed.data;
      const id = `${t.alias}/${t.revision}`;
      const group = groups.get(id);
      if (!group) {
        groups.set(id, { ...t, meanAbsDiff: 0, top1Disagreement: 0, reporters: 1 });
        continue;
      }
      group.primaries = [...new Set([...group.primaries, ...t.primaries])].sort((a, b) => a - b);
      group.samples += t.samples;
      group.errors += t.errors;
      group.maxAbsDiff = Math.max(group.maxAbsDiff, t.maxAbsDiff);
      group.sumMeanAbsDiff += t.sumMeanAbsDiff;
      group.top1Rows += t.top1Rows;
      group.top1Disagreements += t.top1Disagreements;
      group.reporters += 1;
      if (t.updatedAt > group.updatedAt) group.updatedAt = t.updatedAt;
    }
    return [...groups.values()]
      .map((g) => ({
        ...g,
        meanAbsDiff: g.samples > 0 ? g.sumMeanAbsDiff / g.samples : 0,
        top1Disagreement: g.top1Rows > 0 ? g.top1Disagreements / g.top1Rows : 0,
      }))
      .sort((a, b) => b.revision - a.revision || a.alias.localeCompare(b.alias));
  }
}
