import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { AliasStore } from "../../../core/registry/alias-store";
import { single, type AliasDocument } from "../../../core/registry/aliases";
import { aliasesKey, auditKey } from "../../../core/registry/layout";
import { AUDIT_FORMAT, planPromotion } from "../../../core/registry/promotion";

const store = () => new AliasStore(env.MODELS);
const versions = [1, 2, 3, 4, 5, 6, 7, 8];

/** Commits "point `alias` at `version`" the way the promoter does. */
function promote(aliases: AliasStore, model: string, alias: string, version: number, actor = "t") {
  return aliases.commit(model, async (snapshot) => ({
    change: planPromotion({ document: snapshot.document, versions }, { alias, version }),
    details: { actor, forced: false, gates: [], reason: `to ${version}` },
  }));
}

describe("AliasStore (real R2)", () => {
  it("commits a change as an audit record plus the new aliases.json", async () => {
    const aliases = store();
    const { record } = await promote(aliases, "as-basic", "production", 2, "ci");
    expect(record).toMatchObject({ revision: 1, actor: "ci", from: null, to: single(2) });
    const { document, etag } = await aliases.read("as-basic");
    expect(document).toMatchObject({ revision: 1, aliases: { production: single(2) } });
    expect(etag).toBeTruthy();
    const history = await aliases.history("as-basic");
    expect(history.map((r) => r.revision)).toEqual([1]);
    // The record is immutable: a second create at the same revision is refused by R2 itself.
    const again = await env.MODELS.put(auditKey("as-basic", 1), "{}", {
      onlyIf: { etagDoesNotMatch: "*" },
    });
    expect(again).toBeNull();
  });

  it("a no-op writes nothing", async () => {
    const aliases = store();
    await promote(aliases, "as-noop", "staging", 1);
    const { record } = await promote(aliases, "as-noop", "staging", 1);
    expect(record).toBeNull();
    expect((await aliases.history("as-noop")).length).toBe(1);
  });

  it("concurrent commits: every change is in the log once, in one serial order, and the final state is the last", async () => {
    const aliases = store();
    const model = "as-race";
    const targets = [
      ["production", 1],
      ["production", 2],
      ["staging", 3],
      ["production", 4],
      ["canary", 5],
      ["staging", 6],
      ["production", 7],
      ["staging", 8],
    ] as const;
    await Promise.all(
      targets.map(([alias, version], i) =>
        promote(new AliasStore(env.MODELS), model, alias, version, `w${i}`),
      ),
    );
    const history = await aliases.history(model);
    expect(history.map((r) => r.revision)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(new Set(history.map((r) => r.actor)).size).toBe(8);
    // Each record was planned against the state its predecessor produced.
    let state: AliasDocument["aliases"] = {};
    for (const record of history) {
      expect(record.from).toEqual(state[record.alias] ?? null);
      state = { ...state };
      if (record.to) state[record.alias] = record.to;
      expect(record.aliases).toEqual(state);
    }
    const { document } = await aliases.read(model);
    expect(document.revision).toBe(8);
    expect(document.aliases).toEqual(history.at(-1)!.aliases);
  });

  it("rolls forward a change whose writer stopped between the record and aliases.json", async () => {
    const aliases = store();
    const model = "as-forward";
    await promote(aliases, model, "production", 1);
    // A writer that created record 2 and then died before publishing it.
    await env.MODELS.put(
      auditKey(model, 2),
      JSON.stringify({
        format: AUDIT_FORMAT,
        model,
        revision: 2,
        at: new Date().toISOString(),
        actor: "crashed",
        action: "promote",
        alias: "production",
        from: single(1),
        to: single(2),
        forced: false,
        gates: [],
        aliases: { production: single(2) },
      }),
    );
    expect((await aliases.read(model)).document.revision).toBe(1);
    // What dry runs plan against: the committed state, without writing it.
    expect((await aliases.current(model)).document).toMatchObject({
      revision: 2,
      aliases: { production: single(2) },
    });
    expect((await aliases.read(model)).document.revision).toBe(1);
    const { record } = await promote(aliases, model, "staging", 3);
    expect(record!.revision).toBe(3);
    expect(record!.aliases).toEqual({ production: single(2), staging: single(3) });
    expect((await aliases.read(model)).document.aliases).toEqual(record!.aliases);
  });

  it("reports a corrupt aliases.json as an internal error rather than guessing", async () => {
    await env.MODELS.put(aliasesKey("as-corrupt"), "{not json");
    await expect(store().read("as-corrupt")).rejects.toMatchObject({ kind: "internal" });
  });
});
