/**
 * @module
 * Where things live in the bucket.
 *
 *   models/{name}/versions/{version}/manifest.json   one per published version, create-only
 *   models/{name}/blobs/sha256/{hex}                 artifacts, content-addressed
 *
 * A version exists exactly when its manifest exists; the manifest is written
 * last, with a create-only condition, so it is the commit point of a publish.
 * Artifacts are addressed by their digest, so a concurrent or failed publish can
 * never overwrite bytes a published manifest points to, and identical artifacts
 * are stored once per model.
 */

export const versionsPrefix = (name: string) => `models/${name}/versions/`;
export const manifestKey = (name: string, version: number) =>
  `models/${name}/versions/${version}/manifest.json`;
export const blobKey = (name: string, sha256: string) => `models/${name}/blobs/sha256/${sha256}`;

/** Parses `models/{name}/versions/{version}/` back to its version number. */
export function versionFromPrefix(prefix: string): number | undefined {
  const match = /\/versions\/([1-9][0-9]{0,8})\/$/.exec(prefix);
  return match ? Number(match[1]) : undefined;
}
