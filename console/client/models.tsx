/** The models list: versions, what production serves, traffic (when metrics exist), last change. */
import { admin, path } from "./api";
import { ErrorBox, Loading, PageHeading, TableScroll, useLoad } from "./common";
import { splitText, when } from "./format";
import { readStats } from "./metrics";
import type { AliasDocument, AuditRecord, VersionSummary } from "./types";

interface ModelRow {
  name: string;
  versions: VersionSummary[];
  aliases: AliasDocument;
  last: AuditRecord | undefined;
  inferences: number | null;
}

async function loadRows(): Promise<ModelRow[]> {
  const { models } = await admin<{ models: string[] }>("models");
  return Promise.all(
    models.map(async (name) => {
      const [versions, aliases, history, stats] = await Promise.all([
        admin<{ versions: VersionSummary[] }>(`models/${path(name)}/versions`),
        admin<AliasDocument>(`models/${path(name)}/aliases`),
        admin<{ records: AuditRecord[] }>(`models/${path(name)}/history?limit=1`),
        readStats(name).catch(() => null),
      ]);
      return {
        name,
        versions: versions.versions,
        aliases,
        last: history.records.at(-1),
        inferences: stats ? stats.reduce((sum, s) => sum + s.inferenceCount, 0) : null,
      };
    }),
  );
}

function lastChange(row: ModelRow): string {
  const newest = row.versions.reduce<VersionSummary | undefined>(
    (a, v) => (!a || v.createdAt > a.createdAt ? v : a),
    undefined,
  );
  if (row.last && (!newest || row.last.at >= newest.createdAt)) {
    return `${when(row.last.at)}: ${row.last.action} ${row.last.alias} → ${splitText(row.last.to)} by ${row.last.actor}`;
  }
  return newest ? `${when(newest.createdAt)}: published v${newest.version}` : "—";
}

export function ModelsPage() {
  const rows = useLoad(loadRows, []);
  return (
    <section>
      <PageHeading>Models</PageHeading>
      <ErrorBox error={rows.error} />
      {!rows.data && !rows.error ? <Loading what="models" /> : null}
      {rows.data && rows.data.length === 0 ? (
        <p>
          No models yet: publish one with <code>pinion publish</code>.
        </p>
      ) : null}
      {rows.data && rows.data.length > 0 ? (
        <TableScroll label="Models">
          <table data-testid="models">
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Versions</th>
                <th scope="col">Production</th>
                <th scope="col">Traffic</th>
                <th scope="col">Last change</th>
              </tr>
            </thead>
            <tbody>
              {rows.data.map((row) => {
                const production = row.aliases.aliases.production;
                const latest = Math.max(...row.versions.map((v) => v.version));
                return (
                  <tr data-model={row.name}>
                    <th scope="row">
                      <a href={`#/models/${encodeURIComponent(row.name)}`}>{row.name}</a>
                    </th>
                    <td>{row.versions.length}</td>
                    <td>
                      {production ? (
                        splitText(production)
                      ) : (
                        <span>
                          v{latest} <span class="muted">(latest; no production alias)</span>
                        </span>
                      )}
                    </td>
                    <td>
                      {row.inferences === null ? (
                        <span class="muted">no metrics</span>
                      ) : (
                        `${row.inferences} inferences`
                      )}
                    </td>
                    <td>{lastChange(row)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </TableScroll>
      ) : null}
    </section>
  );
}
