/**
 * @module
 * Aliases: named pointers (`production`, `staging`, …) from a model to one
 * version, or to a weighted canary split, optionally mirroring a fraction of
 * their traffic to a shadow version. One document per model holds all of its
 * aliases with a revision number; every change to it has an audit record with
 * the same revision (see `alias-store.ts`). Pure data and functions: no I/O.
 */
import { z } from "zod";
import { invalid } from "../errors";
import { versionSchema } from "./names";

export const ALIAS_NAME_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;
/** The alias `/v2/models/{name}/infer` serves when present. */
export const DEFAULT_ALIAS = "production";
/** Split weights are integers out of this many (basis points: 0.01 % steps). */
export const WEIGHT_TOTAL = 10_000;

export function checkAliasName(alias: string): string {
  if (!ALIAS_NAME_PATTERN.test(alias)) {
    throw invalid(
      `invalid alias ${JSON.stringify(alias.slice(0, 40))}: use 1-32 characters from a-z, 0-9 and '-', starting with a letter`,
    );
  }
  return alias;
}

const version = versionSchema;

export const aliasEntrySchema = z
  .object({
    /** Versions and their weights (sum WEIGHT_TOTAL); one entry when not a canary. */
    split: z
      .array(z.object({ version, weight: z.number().int().min(1).max(WEIGHT_TOTAL) }))
      .min(1)
      .max(8),
    /** Mirror `fraction` of the alias's requests to `version` after answering. */
    shadow: z.object({ version, fraction: z.number().gt(0).max(1) }).optional(),
  })
  .refine((e) => e.split.reduce((sum, s) => sum + s.weight, 0) === WEIGHT_TOTAL, {
    message: `split weights must add up to ${WEIGHT_TOTAL}`,
  })
  .refine((e) => new Set(e.split.map((s) => s.version)).size === e.split.length, {
    message: "a version appears twice in the split",
  });
export type AliasEntry = z.infer<typeof aliasEntrySchema>;

export const ALIASES_FORMAT = "pinion.aliases/1";

export const aliasDocumentSchema = z.object({
  format: z.literal(ALIASES_FORMAT),
  model: z.string(),
  /** The audit record that produced this state; 0 before the first change. */
  revision: z.number().int().nonnegative(),
  aliases: z.record(z.string().regex(ALIAS_NAME_PATTERN), aliasEntrySchema),
});
export type AliasDocument = z.infer<typeof aliasDocumentSchema>;
export type Aliases = AliasDocument["aliases"];

export const emptyAliases = (model: string): AliasDocument => ({
  format: ALIASES_FORMAT,
  model,
  revision: 0,
  aliases: {},
});

export const single = (v: number): AliasEntry => ({
  split: [{ version: v, weight: WEIGHT_TOTAL }],
});

/** The version carrying most of the traffic (the lowest version on a tie): the "current" one. */
export function primaryVersion(entry: AliasEntry): number {
  return [...entry.split].sort((a, b) => b.weight - a.weight || a.version - b.version)[0]!.version;
}

/** `3`, or `2 (90%) + 3 (10%)`, plus `, shadow 4 (20%)`. */
export function describeEntry(entry: AliasEntry | null | undefined): string {
  if (!entry) return "(none)";
  const split =
    entry.split.length === 1
      ? String(entry.split[0]!.version)
      : entry.split.map((s) => `${s.version} (${percent(s.weight / WEIGHT_TOTAL)})`).join(" + ");
  return entry.shadow
    ? `${split}, shadow ${entry.shadow.version} (${percent(entry.shadow.fraction)})`
    : split;
}

const percent = (fraction: number) => `${Number((fraction * 100).toFixed(2))}%`;

export function entriesEqual(a: AliasEntry | null, b: AliasEntry | null): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** FNV-1a over UTF-16 code units: fast, stable everywhere, good enough to spread keys. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  // Final avalanche (murmur3's fmix32) so nearby keys land far apart.
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/**
 * A request key's bucket in [0, WEIGHT_TOTAL), salted by model, alias and
 * purpose so that canary and shadow choices are independent of each other and
 * of other models.
 */
export function bucketOf(key: string, salt: string): number {
  return fnv1a(`${salt}\u0000${key}`) % WEIGHT_TOTAL;
}

/**
 * The version of `entry` that serves `key`: sticky, so the same key lands on
 * the same version for as long as the split is unchanged.
 */
export function pickVersion(entry: AliasEntry, key: string, salt: string): number {
  const bucket = bucketOf(key, `${salt}/split`);
  let edge = 0;
  // Versions in ascending order, so the mapping depends on the split only.
  for (const { version: v, weight } of [...entry.split].sort((a, b) => a.version - b.version)) {
    edge += weight;
    if (bucket < edge) return v;
  }
  return entry.split.at(-1)!.version;
}

/** Whether `key`'s request is mirrored to the alias's shadow version. */
export function isShadowed(entry: AliasEntry, key: string, salt: string): boolean {
  if (!entry.shadow) return false;
  return bucketOf(key, `${salt}/shadow`) < Math.round(entry.shadow.fraction * WEIGHT_TOTAL);
}
