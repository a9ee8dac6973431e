/**
 * One model: its versions (with the int8 accuracy report), its aliases drawn
 * as splits, live traffic per version, shadow divergence per alias revision
 * and the history timeline from the audit log.
 */
import { admin, path } from "./api";
import { ErrorBox, Loading, PageHeading, TableScroll, useLoad } from "./common";
import { LiveCharts } from "./charts";
import { bytes, number, splitText, when } from "./format";
import { ModelNav } from "./model-nav";
import { SplitBar } from "./split-bar";
import type { AliasDocument, AuditRecord, ShadowReport, VersionSummary } from "./types";

export function ModelPage({ name }: { name: string }) {
  const model = `models/${path(name)}`;
  const versions = useLoad(
    () => admin<{ versions: VersionSummary[] }>(`${model}/versions`),
    [name],
  );
  const aliases = useLoad(() => admin<AliasDocument>(`${model}/aliases`), [name]);
  const history = useLoad(() => admin<{ records: AuditRecord[] }>(`${model}/history`), [name]);
  const shadow = useLoad(() => admin<{ reports: ShadowReport[] }>(`${model}/shadow`), [name]);

  return (
    <section>
      <PageHeading>{name}</PageHeading>
      <ModelNav name={name} current="model" />

      <h2 id="versions">Versions</h2>
      <ErrorBox error={versions.error} />
      {versions.data ? (
        <VersionsTable versions={versions.data.versions} />
      ) : versions.error ? null : (
        <Loading what="versions" />
      )}

      <h2 id="aliases">Aliases</h2>
      <ErrorBox error={aliases.error} />
      {aliases.data ? (
        Object.keys(aliases.data.aliases).length === 0 ? (
          <p data-testid="no-aliases">
            No aliases: unpinned requests get the latest version. Promote a version to create{" "}
            <code>production</code>.
          </p>
        ) : (
          <div class="aliases">
            <p class="muted">At revision {aliases.data.revision}.</p>
            {Object.entries(aliases.data.aliases)
              .sort(([a], [b]) => a.localeCompare(b))
              .map(([alias, entry]) => (
                <SplitBar name={alias} entry={entry} />
              ))}
          </div>
        )
      ) : null}

      <h2 id="traffic">Live traffic</h2>
      <LiveCharts name={name} />

      <h2 id="shadow">Shadow divergence</h2>
      <ErrorBox error={shadow.error} />
      {shadow.data ? <ShadowTable reports={shadow.data.reports} /> : null}

      <h2 id="history">History</h2>
      <ErrorBox error={history.error} />
      {history.data ? <Timeline records={history.data.records} /> : null}
    </section>
  );
}

function VersionsTable({ versions }: { versions: VersionSummary[] }) {
  return (
    <TableScroll label="Versions">
      <table data-testid="versions">
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Created</th>
            <th scope="col">Size</th>
            <th scope="col">sha256</th>
            <th scope="col">Runtime</th>
            <th scope="col">Placement</th>
            <th scope="col">Source</th>
            <th scope="col">int8 accuracy</th>
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr data-version={v.version}>
              <th scope="row">v{v.version}</th>
              <td>{when(v.createdAt)}</td>
              <td>{bytes(v.bytes)}</td>
              <td>
                <code title={v.sha256}>{v.sha256.slice(0, 12)}</code>
              </td>
              <td>{v.runtime}</td>
              <td>{v.placement}</td>
              <td>{v.source ?? "—"}</td>
              <td>
                <AccuracyReport version={v} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </TableScroll>
  );
}

function AccuracyReport({ version }: { version: VersionSummary }) {
  const q = version.quantization;
  if (!q) return <span class="muted">not int8</span>;
  const a = q.accuracy;
  return (
    <details>
      <summary>
        {a ? `cosine ${number(a.cosine)}` : "report"}
        {a?.top1Agreement !== undefined ? `, top-1 ${(a.top1Agreement * 100).toFixed(2)}%` : ""}
      </summary>
      {a ? (
        <dl class="report">
          <dt>golden cases</dt>
          <dd>{a.cases}</dd>
          <dt>mean cosine</dt>
          <dd>{number(a.cosine)}</dd>
          <dt>min cosine</dt>
          <dd>{number(a.minCosine)}</dd>
          <dt>max abs error</dt>
          <dd>{number(a.maxAbsError)}</dd>
          <dt>SQNR</dt>
          <dd>{number(a.sqnrDb)} dB</dd>
          {a.top1Agreement !== undefined ? (
            <>
              <dt>top-1 agreement with fp32</dt>
              <dd>{(a.top1Agreement * 100).toFixed(2)}%</dd>
            </>
          ) : null}
          {a.fp32Accuracy !== undefined && a.int8Accuracy !== undefined ? (
            <>
              <dt>accuracy fp32 → int8</dt>
              <dd>
                {(a.fp32Accuracy * 100).toFixed(2)}% → {(a.int8Accuracy * 100).toFixed(2)}%
              </dd>
            </>
          ) : null}
        </dl>
      ) : (
        <p>No golden cases were given at publish, so no accuracy was measured.</p>
      )}
      <p class="muted">
        {q.layers.length} quantised layers; weakest weight SQNR{" "}
        {number(Math.min(...q.layers.map((l) => l.sqnrDb)))} dB
      </p>
    </details>
  );
}

function ShadowTable({ reports }: { reports: ShadowReport[] }) {
  if (reports.length === 0) {
    return (
      <p class="muted">
        No shadow traffic recorded: promote with a shadow percentage to compare a version unseen.
      </p>
    );
  }
  return (
    <TableScroll label="Shadow divergence">
      <table data-testid="shadow">
        <thead>
          <tr>
            <th scope="col">Alias</th>
            <th scope="col">Revision</th>
            <th scope="col">Candidate</th>
            <th scope="col">Against</th>
            <th scope="col">Samples</th>
            <th scope="col">Errors</th>
            <th scope="col">Mean |Δ|</th>
            <th scope="col">Max |Δ|</th>
            <th scope="col">Top-1 disagreement</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {reports.map((r) => (
            <tr>
              <td>{r.alias}</td>
              <td>{r.revision}</td>
              <td>v{r.candidate}</td>
              <td>{r.primaries.map((p) => `v${p}`).join(", ")}</td>
              <td>{r.samples}</td>
              <td>{r.errors}</td>
              <td>{number(r.meanAbsDiff)}</td>
              <td>{number(r.maxAbsDiff)}</td>
              <td>{r.top1Rows > 0 ? `${(r.top1Disagreement * 100).toFixed(2)}%` : "—"}</td>
              <td>{when(r.updatedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </TableScroll>
  );
}

function Timeline({ records }: { records: AuditRecord[] }) {
  if (records.length === 0) return <p class="muted">No promotions or rollbacks yet.</p>;
  return (
    <ol class="timeline" data-testid="history" reversed>
      {[...records].reverse().map((r) => (
        <li data-revision={r.revision}>
          <p class="when">
            <strong>
              #{r.revision} {r.action}
              {r.undoes !== undefined ? ` (undoing #${r.undoes})` : ""}
            </strong>{" "}
            <span class="muted">
              {when(r.at)} by {r.actor}
            </span>
          </p>
          <p>
            <code>{r.alias}</code>: {splitText(r.from)} → {splitText(r.to)}
            {r.forced ? <strong class="bad"> (forced)</strong> : null}
          </p>
          {r.gates.length > 0 ? (
            <ul class="gates">
              {r.gates.map((g) => (
                <li class={g.passed ? "ok" : "bad"}>
                  {g.gate}: {g.skipped ? "skipped" : g.passed ? "passed" : "failed"} — {g.detail}
                </li>
              ))}
            </ul>
          ) : null}
          {r.reason ? <p class="reason">“{r.reason}”</p> : null}
        </li>
      ))}
    </ol>
  );
}
