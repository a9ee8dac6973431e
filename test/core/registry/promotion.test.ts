import { describe, expect, it } from "vitest";
import { PinionError } from "../../../core/errors";
import {
  bucketOf,
  emptyAliases,
  isShadowed,
  pickVersion,
  single,
  WEIGHT_TOTAL,
  type AliasDocument,
  type AliasEntry,
} from "../../../core/registry/aliases";
import {
  applyChange,
  planPromotion,
  planRollback,
  type AuditRecord,
} from "../../../core/registry/promotion";

const doc = (aliases: AliasDocument["aliases"] = {}, revision = 0): AliasDocument => ({
  ...emptyAliases("m"),
  revision,
  aliases,
});
const state = (aliases: AliasDocument["aliases"] = {}, revision = 0) => ({
  document: doc(aliases, revision),
  versions: [1, 2, 3],
});

function thrown(work: () => unknown): PinionError {
  try {
    work();
  } catch (error) {
    expect(error).toBeInstanceOf(PinionError);
    return error as PinionError;
  }
  throw new Error("expected an error");
}

describe("planPromotion", () => {
  it("points a new alias at a version, recording from and to", () => {
    const change = planPromotion(state(), { alias: "production", version: 2 });
    expect(change).toMatchObject({ from: null, to: single(2), noop: false, candidate: 2 });
    expect(change.current).toBeUndefined();
  });

  it("a canary splits traffic between the current version and the candidate", () => {
    const change = planPromotion(state({ production: single(1) }), {
      alias: "production",
      version: 3,
      canaryPercent: 10,
    });
    expect(change.to!.split).toEqual([
      { version: 1, weight: 9000 },
      { version: 3, weight: 1000 },
    ]);
    expect(change.current).toBe(1);
  });

  it("a shadow keeps the split and mirrors to the candidate; a full promotion clears both", () => {
    const shadowed = planPromotion(state({ production: single(1) }), {
      alias: "production",
      version: 2,
      shadowPercent: 25,
    });
    expect(shadowed.to).toEqual({ ...single(1), shadow: { version: 2, fraction: 0.25 } });
    const full = planPromotion(state({ production: shadowed.to! }), {
      alias: "production",
      version: 2,
    });
    expect(full.to).toEqual(single(2));
  });

  it("a canary version may also shadow the traffic it does not serve; a version serving everything may not", () => {
    const canary = planPromotion(state({ production: single(1) }), {
      alias: "production",
      version: 2,
      canaryPercent: 10,
    });
    const shadowed = planPromotion(state({ production: canary.to! }), {
      alias: "production",
      version: 2,
      shadowPercent: 100,
    });
    expect(shadowed.to).toEqual({ split: canary.to!.split, shadow: { version: 2, fraction: 1 } });
    expect(
      thrown(() =>
        planPromotion(state({ production: single(1) }), {
          alias: "production",
          version: 1,
          shadowPercent: 5,
        }),
      ).message,
    ).toMatch(/already serves all/);
  });

  it("promoting to the current state is a no-op", () => {
    expect(
      planPromotion(state({ staging: single(2) }), { alias: "staging", version: 2 }).noop,
    ).toBe(true);
  });

  it("refuses missing versions (not found), bad aliases, percentages and combinations", () => {
    expect(thrown(() => planPromotion(state(), { alias: "production", version: 9 })).kind).toBe(
      "not_found",
    );
    expect(
      thrown(() =>
        planPromotion({ document: doc(), versions: [] }, { alias: "production", version: 1 }),
      ).kind,
    ).toBe("not_found");
    for (const alias of ["Prod", "1st", "a".repeat(33), "a/b", ""]) {
      expect(thrown(() => planPromotion(state(), { alias, version: 1 })).kind).toBe(
        "invalid_argument",
      );
    }
    const current = state({ production: single(1) });
    for (const canaryPercent of [0, 100, -5, 150, NaN]) {
      expect(
        thrown(() => planPromotion(current, { alias: "production", version: 2, canaryPercent }))
          .message,
      ).toMatch(/--canary/);
    }
    expect(
      thrown(() => planPromotion(current, { alias: "production", version: 1, canaryPercent: 5 }))
        .message,
    ).toMatch(/already sends/);
    expect(
      thrown(() => planPromotion(state(), { alias: "production", version: 2, canaryPercent: 5 }))
        .message,
    ).toMatch(/does not exist yet/);
    expect(
      thrown(() =>
        planPromotion(current, {
          alias: "production",
          version: 2,
          canaryPercent: 5,
          shadowPercent: 5,
        }),
      ).message,
    ).toMatch(/not both/);
  });
});

describe("sticky canary choice", () => {
  const entry: AliasEntry = {
    split: [
      { version: 1, weight: 9000 },
      { version: 2, weight: 1000 },
    ],
  };

  it("the same key always gets the same version; keys spread by weight", () => {
    const counts = new Map<number, number>();
    for (let i = 0; i < 20_000; i++) {
      const key = `user-${i}`;
      const v = pickVersion(entry, key, "m/production");
      expect(pickVersion(entry, key, "m/production")).toBe(v);
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    const share = counts.get(2)! / 20_000;
    expect(share).toBeGreaterThan(0.09);
    expect(share).toBeLessThan(0.11);
  });

  it("buckets are uniform enough and independent between aliases", () => {
    let same = 0;
    for (let i = 0; i < 10_000; i++) {
      const b = bucketOf(`k${i}`, "m/production");
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThan(WEIGHT_TOTAL);
      if (Math.floor(b / 1000) === Math.floor(bucketOf(`k${i}`, "m/staging") / 1000)) same++;
    }
    // Independent tenths agree about a tenth of the time.
    expect(same / 10_000).toBeLessThan(0.13);
  });

  it("shadows the given fraction of keys", () => {
    const shadowed = { ...single(1), shadow: { version: 2, fraction: 0.3 } };
    let hits = 0;
    for (let i = 0; i < 10_000; i++) if (isShadowed(shadowed, `r${i}`, "m/production")) hits++;
    expect(hits / 10_000).toBeGreaterThan(0.27);
    expect(hits / 10_000).toBeLessThan(0.33);
    expect(isShadowed(single(1), "r1", "m/production")).toBe(false);
  });
});

describe("planRollback", () => {
  const record = (
    revision: number,
    from: AliasEntry | null,
    to: AliasEntry | null,
    extra: Partial<AuditRecord> = {},
  ): AuditRecord => ({
    format: "pinion.audit/1",
    model: "m",
    revision,
    at: new Date(0).toISOString(),
    actor: "t",
    action: "promote",
    alias: "production",
    from,
    to,
    forced: false,
    gates: [],
    aliases: to ? { production: to } : {},
    ...extra,
  });

  it("undoes the latest change, then walks further back on repeat", () => {
    const history = [
      record(1, null, single(1)),
      record(2, single(1), single(2)),
      record(3, single(2), single(3)),
    ];
    const first = planRollback(state({ production: single(3) }, 3), history, "production");
    expect(first).toMatchObject({ to: single(2), undoes: 3 });
    const afterFirst = [
      ...history,
      record(4, single(3), single(2), { action: "rollback", undoes: 3 }),
    ];
    const second = planRollback(state({ production: single(2) }, 4), afterFirst, "production");
    expect(second).toMatchObject({ to: single(1), undoes: 2 });
    const afterSecond = [
      ...afterFirst,
      record(5, single(2), single(1), { action: "rollback", undoes: 2 }),
    ];
    // Undoing the very first change removes the alias.
    const third = planRollback(state({ production: single(1) }, 5), afterSecond, "production");
    expect(third).toMatchObject({ to: null, undoes: 1 });
    expect(applyChange(doc({ production: single(1), staging: single(2) }), third)).toEqual({
      staging: single(2),
    });
  });

  it("ignores other aliases and says when there is nothing to undo", () => {
    const history = [record(1, null, single(1), { alias: "staging" })];
    expect(thrown(() => planRollback(state(), history, "production")).message).toMatch(
      /no change left/,
    );
  });
});
