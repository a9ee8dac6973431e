/** How the console writes sizes, times, splits and numbers. */
import type { AliasEntry } from "./types";

/** Split weights are basis points (docs/promotion.md). */
export const WEIGHT_TOTAL = 10_000;

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export const percent = (weight: number): string =>
  `${Number(((weight / WEIGHT_TOTAL) * 100).toFixed(2))}%`;

/** `1 (90%) + 2 (10%), shadow 2 (100%)`, as `pinion aliases` prints it. */
export function splitText(entry: AliasEntry | null | undefined): string {
  if (!entry) return "(none)";
  const split =
    entry.split.length === 1
      ? `v${entry.split[0]!.version}`
      : entry.split.map((s) => `v${s.version} (${percent(s.weight)})`).join(" + ");
  const shadow = entry.shadow
    ? `, shadow v${entry.shadow.version} (${Number((entry.shadow.fraction * 100).toFixed(2))}%)`
    : "";
  return split + shadow;
}

export function when(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? iso
    : date.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

/** A number as the API gave it, trimmed only when long. */
export function number(value: unknown): string {
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(8)));
}
