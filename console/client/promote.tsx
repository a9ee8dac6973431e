/**
 * Promote / roll back through the admin API: the form first asks for a dry
 * run (the plan and every gate's result, nothing written), then the same
 * request is confirmed. Errors are shown as the API gives them (422 gate
 * failed, 409 conflict, 401 auth, …).
 */
import { useState } from "hono/jsx/dom";
import { admin, path, ApiError } from "./api";
import { ErrorBox, PageHeading, useLoad } from "./common";
import { splitText } from "./format";
import { ModelNav } from "./model-nav";
import { SplitBar } from "./split-bar";
import type { AliasDocument, GateResult, PromotionOutcome, VersionSummary } from "./types";

interface Planned {
  kind: "promotion" | "rollback";
  request: Record<string, unknown>;
  outcome: PromotionOutcome;
}

export function PromotePage({ name }: { name: string }) {
  const model = `models/${path(name)}`;
  const versions = useLoad(
    () => admin<{ versions: VersionSummary[] }>(`${model}/versions`),
    [name],
  );
  const aliases = useLoad(() => admin<AliasDocument>(`${model}/aliases`), [name]);

  const [alias, setAlias] = useState("production");
  const [version, setVersion] = useState("");
  const [mode, setMode] = useState<"full" | "canary" | "shadow">("full");
  const [canary, setCanary] = useState("10");
  const [shadow, setShadow] = useState("100");
  const [minAgreement, setMinAgreement] = useState("");
  const [reason, setReason] = useState("");
  const [planned, setPlanned] = useState<Planned | undefined>(undefined);
  const [applied, setApplied] = useState<PromotionOutcome | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [busy, setBusy] = useState(false);

  const chosenVersion = version || String(versions.data?.versions.at(-1)?.version ?? "");
  // Any edit discards the plan (it was for other values) and the last answer.
  const invalidate = () => {
    setPlanned(undefined);
    setApplied(undefined);
    setError(undefined);
  };
  const choose = (next: typeof mode) => {
    setMode(next);
    invalidate();
  };

  function promotionRequest(): Record<string, unknown> {
    return {
      alias,
      version: Number(chosenVersion),
      ...(mode === "canary" ? { canary: Number(canary) } : {}),
      ...(mode === "shadow" ? { shadow: Number(shadow) } : {}),
      ...(minAgreement !== "" ? { minAgreement: Number(minAgreement) / 100 } : {}),
      ...(reason ? { reason } : {}),
    };
  }

  async function send(kind: Planned["kind"], request: Record<string, unknown>, dryRun: boolean) {
    setBusy(true);
    setError(undefined);
    try {
      const outcome = await admin<PromotionOutcome>(
        `${model}/${kind === "promotion" ? "promotions" : "rollbacks"}`,
        {
          method: "POST",
          body: { ...request, dryRun },
        },
      );
      if (dryRun) {
        setPlanned({ kind, request, outcome });
        setApplied(undefined);
      } else {
        setPlanned(undefined);
        setApplied(outcome);
        aliases.reload();
      }
    } catch (reason) {
      setError(reason as Error);
      if (!dryRun) setPlanned(undefined);
    } finally {
      setBusy(false);
    }
  }

  const aliasNames = Object.keys(aliases.data?.aliases ?? {}).sort();
  return (
    <section>
      <PageHeading>{name}: promote or roll back</PageHeading>
      <ModelNav name={name} current="promote" />
      <ErrorBox error={versions.error ?? aliases.error} />

      <h2>Now</h2>
      {aliases.data ? (
        aliasNames.length === 0 ? (
          <p>No aliases yet.</p>
        ) : (
          <div class="aliases" data-testid="current-aliases">
            {aliasNames.map((a) => (
              <SplitBar name={a} entry={aliases.data!.aliases[a]!} />
            ))}
          </div>
        )
      ) : null}

      <div class="columns">
        <form
          class="card"
          aria-labelledby="promote-title"
          onSubmit={(e: Event) => {
            e.preventDefault();
            void send("promotion", promotionRequest(), true);
          }}
        >
          <h2 id="promote-title">Promote</h2>
          <label for="promote-alias">Alias</label>
          <input
            id="promote-alias"
            list="alias-names"
            value={alias}
            required
            pattern="[a-z][a-z0-9\-]{0,31}"
            onInput={(e: Event) => {
              setAlias((e.target as HTMLInputElement).value);
              invalidate();
            }}
          />
          <datalist id="alias-names">
            {[
              "production",
              "staging",
              ...aliasNames.filter((a) => a !== "production" && a !== "staging"),
            ].map((a) => (
              <option value={a} />
            ))}
          </datalist>
          <label for="promote-version">Version</label>
          <select
            id="promote-version"
            value={chosenVersion}
            onChange={(e: Event) => {
              setVersion((e.target as HTMLSelectElement).value);
              invalidate();
            }}
          >
            {versions.data?.versions.map((v) => (
              <option value={String(v.version)}>
                version {v.version} ({v.runtime}, {v.placement})
              </option>
            ))}
          </select>
          <fieldset>
            <legend>Traffic</legend>
            <label class="inline">
              <input
                type="radio"
                name="mode"
                value="full"
                checked={mode === "full"}
                onChange={() => choose("full")}
              />{" "}
              all of the alias (ends any canary and shadow)
            </label>
            <label class="inline">
              <input
                type="radio"
                name="mode"
                value="canary"
                checked={mode === "canary"}
                onChange={() => choose("canary")}
              />{" "}
              a canary: a share of the alias's traffic
            </label>
            <label class="inline">
              <input
                type="radio"
                name="mode"
                value="shadow"
                checked={mode === "shadow"}
                onChange={() => choose("shadow")}
              />{" "}
              a shadow: mirror a share of its traffic, still answering from the current split
            </label>
            <label for="promote-canary">Canary share (%)</label>
            <input
              id="promote-canary"
              type="number"
              min="0.01"
              max="99.99"
              step="0.01"
              value={canary}
              disabled={mode !== "canary"}
              onInput={(e: Event) => {
                setCanary((e.target as HTMLInputElement).value);
                invalidate();
              }}
            />
            <label for="promote-shadow">Shadow share (%)</label>
            <input
              id="promote-shadow"
              type="number"
              min="0.01"
              max="100"
              step="0.01"
              value={shadow}
              disabled={mode !== "shadow"}
              onInput={(e: Event) => {
                setShadow((e.target as HTMLInputElement).value);
                invalidate();
              }}
            />
          </fieldset>
          <label for="promote-agreement">
            Minimum top-1 agreement with the current version (%, optional)
          </label>
          <input
            id="promote-agreement"
            type="number"
            min="0"
            max="100"
            step="0.01"
            value={minAgreement}
            onInput={(e: Event) => {
              setMinAgreement((e.target as HTMLInputElement).value);
              invalidate();
            }}
          />
          <label for="promote-reason">Reason (goes into the audit log)</label>
          <input
            id="promote-reason"
            value={reason}
            maxLength={1000}
            onInput={(e: Event) => {
              setReason((e.target as HTMLInputElement).value);
              invalidate();
            }}
          />
          <button type="submit" disabled={busy || !chosenVersion}>
            Plan promotion (dry run)
          </button>
        </form>

        <form
          class="card"
          aria-labelledby="rollback-title"
          onSubmit={(e: Event) => {
            e.preventDefault();
            const form = e.target as HTMLFormElement;
            const data = new FormData(form);
            const why = String(data.get("reason") ?? "");
            void send(
              "rollback",
              { alias: String(data.get("alias")), ...(why ? { reason: why } : {}) },
              true,
            );
          }}
        >
          <h2 id="rollback-title">Roll back</h2>
          <p class="muted">Returns an alias to its state before its last change.</p>
          <label for="rollback-alias">Alias</label>
          <select id="rollback-alias" name="alias" onChange={invalidate}>
            {(aliasNames.length > 0 ? aliasNames : ["production"]).map((a) => (
              <option value={a}>{a}</option>
            ))}
          </select>
          <label for="rollback-reason">Reason (goes into the audit log)</label>
          <input id="rollback-reason" name="reason" maxLength={1000} onInput={invalidate} />
          <button type="submit" disabled={busy}>
            Plan rollback (dry run)
          </button>
        </form>
      </div>

      <ErrorBox error={error} title={errorTitle(error)} />
      {error instanceof ApiError && Array.isArray(error.details.gates) ? (
        <Gates gates={error.details.gates as unknown as GateResult[]} />
      ) : null}

      {planned ? (
        <section class="plan card" aria-labelledby="plan-title" data-testid="plan">
          <h2 id="plan-title">Plan: {planned.kind}</h2>
          <p>
            <code>{planned.outcome.change.alias}</code>:{" "}
            <span data-testid="plan-from">{splitText(planned.outcome.change.from)}</span> →{" "}
            <strong data-testid="plan-to">{splitText(planned.outcome.change.to)}</strong>
            {planned.outcome.change.noop ? " (no change: already so)" : ""}
            <span class="muted"> at revision {planned.outcome.change.baseRevision}</span>
          </p>
          <Gates gates={planned.outcome.gates} />
          <button
            type="button"
            class="danger"
            disabled={busy || planned.outcome.change.noop}
            onClick={() => void send(planned.kind, planned.request, false)}
          >
            Confirm {planned.kind === "promotion" ? "promotion" : "rollback"}
          </button>{" "}
          <button type="button" class="secondary" onClick={() => setPlanned(undefined)}>
            Cancel
          </button>
        </section>
      ) : null}

      {applied ? (
        <p class="notice" role="status" data-testid="applied">
          {applied.status === "applied"
            ? `Applied: ${applied.change.alias} now serves ${splitText(applied.change.to)} (revision ${applied.record?.revision ?? "?"} by ${applied.record?.actor ?? "?"}).`
            : `Nothing written (${applied.status}).`}{" "}
          <a href={`#/models/${encodeURIComponent(name)}`}>See the model's history</a>
        </p>
      ) : null}
    </section>
  );
}

function errorTitle(error: Error | undefined): string {
  if (!(error instanceof ApiError)) return "Request failed";
  if (error.status === 422) return "Refused by the gates";
  if (error.status === 409) return "Conflict";
  if (error.status === 401) return "Not authorised";
  return "Refused";
}

function Gates({ gates }: { gates: GateResult[] }) {
  if (gates.length === 0) return <p class="muted">No gates ran.</p>;
  return (
    <ul class="gates" data-testid="gates">
      {gates.map((g) => (
        <li class={g.passed ? "ok" : "bad"}>
          <strong>{g.gate}</strong>: {g.skipped ? "skipped" : g.passed ? "passed" : "failed"} —{" "}
          {g.detail}
        </li>
      ))}
    </ul>
  );
}
