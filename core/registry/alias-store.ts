/**
 * @module
 * Alias state and its audit log in the object store, changed only by
 * conditional writes so that concurrent promotions never lose an update.
 *
 * A change is committed by *creating* its audit record `audit/{revision}`
 * (create-only, revision = current + 1): exactly one writer can take each
 * revision, so the log is the serial order of all changes. The record carries
 * the complete alias state after the change, which is then published to
 * `aliases.json` with compare-and-swap on its etag. Readers (the worker) read
 * only `aliases.json`. A writer that finds a record newer than `aliases.json`
 * (its author is between the two writes, or died there) publishes it first —
 * rolls forward — so the view can lag the log but never diverge from it.
 */
import { conflict, internal } from "../errors";
import { aliasDocumentSchema, ALIASES_FORMAT, emptyAliases, type AliasDocument } from "./aliases";
import { aliasesKey, auditKey, auditPrefix } from "./layout";
import { checkModelName } from "./names";
import {
  applyChange,
  auditRecordSchema,
  AUDIT_FORMAT,
  type AliasChange,
  type AuditRecord,
} from "./promotion";
import { listKeys, type ObjectStore } from "./store";

/** Attempts before a commit gives up with a conflict (each one re-reads and re-plans). */
const COMMIT_ATTEMPTS = 12;

export interface AliasSnapshot {
  document: AliasDocument;
  /** null while the model has no aliases.json yet. */
  etag: string | null;
}

/** What a commit adds to a change to make its audit record. */
export interface ChangeDetails {
  actor: string;
  reason?: string;
  forced: boolean;
  gates: AuditRecord["gates"];
  at?: Date;
}

function parseJson<T>(text: string, schema: { parse(v: unknown): T }, what: string): T {
  try {
    return schema.parse(JSON.parse(text));
  } catch (error) {
    throw internal(`${what} is corrupt: ${(error as Error).message}`, error);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class AliasStore {
  constructor(private readonly store: ObjectStore) {}

  async read(model: string): Promise<AliasSnapshot> {
    checkModelName(model);
    const object = await this.store.get(aliasesKey(model));
    if (!object) return { document: emptyAliases(model), etag: null };
    const document = parseJson(await object.text(), aliasDocumentSchema, `${aliasesKey(model)}`);
    return { document, etag: object.etag };
  }

  /**
   * The committed state: aliases.json plus any records not yet published to it
   * (applied in memory; nothing is written). What dry runs plan against.
   */
  async current(model: string): Promise<AliasSnapshot> {
    let snapshot = await this.read(model);
    for (;;) {
      const next = await this.record(model, snapshot.document.revision + 1);
      if (!next) return snapshot;
      snapshot = {
        document: { ...snapshot.document, revision: next.revision, aliases: next.aliases },
        etag: snapshot.etag,
      };
    }
  }

  async record(model: string, revision: number): Promise<AuditRecord | null> {
    const object = await this.store.get(auditKey(model, revision));
    if (!object) return null;
    return parseJson(await object.text(), auditRecordSchema, auditKey(model, revision));
  }

  /** The audit log, oldest first (`limit` keeps the newest that many). */
  async history(model: string, limit?: number): Promise<AuditRecord[]> {
    checkModelName(model);
    const keys = await listKeys(this.store, auditPrefix(model));
    keys.sort();
    const wanted = limit === undefined ? keys : keys.slice(-limit);
    const records: AuditRecord[] = [];
    // A few reads in flight at a time: histories are long-lived but small.
    for (let i = 0; i < wanted.length; i += 16) {
      const batch = await Promise.all(
        wanted.slice(i, i + 16).map(async (key) => {
          const object = await this.store.get(key);
          return object ? parseJson(await object.text(), auditRecordSchema, key) : undefined;
        }),
      );
      for (const record of batch) if (record) records.push(record);
    }
    return records;
  }

  /**
   * Reads the current state (rolled forward to the log), asks `plan` for the
   * change against it, and commits that change. On losing a race the state is
   * re-read and `plan` asked again, so the change always applies to the state
   * it was planned against. Resolves to the record written, or null when the
   * plan is a no-op. Throws a conflict after repeated lost races.
   */
  async commit(
    model: string,
    plan: (snapshot: AliasSnapshot) => Promise<{ change: AliasChange; details: ChangeDetails }>,
  ): Promise<{ change: AliasChange; record: AuditRecord | null }> {
    for (let attempt = 1; attempt <= COMMIT_ATTEMPTS; attempt++) {
      const snapshot = await this.rollForward(model, await this.read(model));
      const { change, details } = await plan(snapshot);
      if (change.noop) return { change, record: null };
      const revision = snapshot.document.revision + 1;
      const record: AuditRecord = {
        format: AUDIT_FORMAT,
        model,
        revision,
        at: (details.at ?? new Date()).toISOString(),
        actor: details.actor,
        action: change.action,
        alias: change.alias,
        from: change.from,
        to: change.to,
        ...(details.reason ? { reason: details.reason } : {}),
        forced: details.forced,
        gates: details.gates,
        ...(change.undoes !== undefined ? { undoes: change.undoes } : {}),
        ...(change.rollout !== undefined ? { rollout: change.rollout } : {}),
        aliases: applyChange(snapshot.document, change),
      };
      const created = await this.store.put(auditKey(model, revision), JSON.stringify(record), {
        onlyIf: { etagDoesNotMatch: "*" },
        httpMetadata: { contentType: "application/json" },
      });
      if (created) {
        try {
          await this.publish(model, record, snapshot);
        } catch (error) {
          // Committed all the same: the next writer (or reader of `current`) rolls it forward.
          console.warn(
            JSON.stringify({
              event: "alias_publish_deferred",
              model,
              revision,
              error: String(error),
            }),
          );
        }
        return { change, record };
      }
      // Another writer took this revision: back off a little, then re-plan on its state.
      await sleep(Math.random() * 20 * attempt);
    }
    throw conflict(
      `could not change the aliases of '${model}': ${COMMIT_ATTEMPTS} concurrent changes won the race; try again`,
    );
  }

  /** Publishes records newer than the snapshot to aliases.json, oldest first. */
  private async rollForward(model: string, snapshot: AliasSnapshot): Promise<AliasSnapshot> {
    let current = snapshot;
    for (;;) {
      const next = await this.record(model, current.document.revision + 1);
      if (!next) return current;
      await this.publish(model, next, current);
      current = await this.read(model);
    }
  }

  /**
   * Moves aliases.json from `base` to `record`'s state. Losing the swap is
   * fine as long as someone else moved it at least as far.
   */
  private async publish(model: string, record: AuditRecord, base: AliasSnapshot): Promise<void> {
    let snapshot = base;
    while (snapshot.document.revision < record.revision) {
      const document: AliasDocument = {
        format: ALIASES_FORMAT,
        model,
        revision: record.revision,
        aliases: record.aliases,
      };
      const written = await this.store.put(aliasesKey(model), JSON.stringify(document), {
        onlyIf: snapshot.etag ? { etagMatches: snapshot.etag } : { etagDoesNotMatch: "*" },
        httpMetadata: { contentType: "application/json" },
      });
      if (written) return;
      snapshot = await this.read(model);
      if (snapshot.document.revision < record.revision - 1) {
        // Behind by more than this record: publish the ones in between first.
        snapshot = await this.rollForward(model, snapshot);
      }
    }
  }
}
