/**
 * @module
 * Where things live in the bucket.
 *
 *   models/{name}/versions/{version}/manifest.json   one per published version, create-only
 *   models/{name}/blobs/sha256/{hex}                 artifacts, content-addressed
 *   models/{name}/aliases.json                       the model's aliases, changed by compare-and-swap
 *   models/{name}/audit/{revision}.json              one immutable record per alias change, create-only
 *   models/{name}/shadow/{alias}/r{revision}/{id}.json  shadow divergence totals, one per isolate
 *   models/{name}/rollout.json                       the model's rollout (active or last), compare-and-swap
 *   uploads/{name}/{id}                              an admin API upload, staged until its sha256 is checked
 *
 * A version exists exactly when its manifest exists; the manifest is written
 * last, with a create-only condition, so it is the commit point of a publish.
 * Artifacts are addressed by their digest, so a concurrent or failed publish can
 * never overwrite bytes a published manifest points to, and identical artifacts
 * are stored once per model. Uploads are assembled outside `models/` (so no
 * listing sees them) and copied to their blob key, create-only, once verified:
 * nothing unverified is ever written where a blob may live. Alias changes are
 * committed by creating their audit record (create-only, numbered), then
 * published to aliases.json; see `alias-store.ts`.
 */
import { VERSION_PATTERN } from "./names";

export const versionsPrefix = (name: string) => `models/${name}/versions/`;
export const manifestKey = (name: string, version: number) =>
  `models/${name}/versions/${version}/manifest.json`;
export const blobKey = (name: string, sha256: string) => `models/${name}/blobs/sha256/${sha256}`;
/** Where one upload is assembled; `id` is random, so concurrent uploads never share a key. */
export const stagingKey = (name: string, id: string) => `uploads/${name}/${id}`;

/** Parses `models/{name}/versions/{version}/` back to its version number. */
export function versionFromPrefix(prefix: string): number | undefined {
  const segment = /\/versions\/([^/]*)\/$/.exec(prefix)?.[1];
  return segment !== undefined && VERSION_PATTERN.test(segment) ? Number(segment) : undefined;
}

export const aliasesKey = (name: string) => `models/${name}/aliases.json`;
export const auditPrefix = (name: string) => `models/${name}/audit/`;
/** Zero-padded so that listing order is revision order. */
export const auditKey = (name: string, revision: number) =>
  `${auditPrefix(name)}${String(revision).padStart(10, "0")}.json`;
export const shadowPrefix = (name: string, alias?: string, revision?: number) =>
  `models/${name}/shadow/${alias === undefined ? "" : `${alias}/${revision === undefined ? "" : `r${revision}/`}`}`;
export const rolloutKey = (name: string) => `models/${name}/rollout.json`;
