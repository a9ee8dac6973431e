/**
 * @module
 * The local R2 emulation `wrangler dev` uses, opened from Node through
 * Miniflare with the same persistence directory and bucket name, so what the
 * scripts publish is exactly what the local worker serves.
 */
import { Miniflare } from "miniflare";
import { resolve } from "node:path";
import type { ObjectStore } from "../../core/registry/store";
import { retryTransient } from "../../core/registry/transient";

/** wrangler dev's default: `.wrangler/state`, R2 under `v3/r2`. */
export const DEFAULT_PERSIST_TO = ".wrangler/state";
export const BUCKET_NAME = "pinion-models";

export interface LocalR2 {
  store: ObjectStore;
  dispose(): Promise<void>;
}

export async function openLocalR2(persistTo = DEFAULT_PERSIST_TO): Promise<LocalR2> {
  const mf = new Miniflare({
    modules: true,
    script: "export default { fetch() { return new Response(null, { status: 404 }); } }",
    r2Buckets: { MODELS: BUCKET_NAME },
    r2Persist: resolve(persistTo, "v3", "r2"),
  });
  const bucket = (await mf.getR2Bucket("MODELS")) as unknown as ObjectStore;
  const store: ObjectStore = {
    get: (key) => retryTransient(() => bucket.get(key)),
    head: (key) => retryTransient(() => bucket.head(key)),
    list: (options) => retryTransient(() => bucket.list(options)),
    // Miniflare's Node proxy revives views by constructor name inside workerd,
    // where Node's Buffer does not exist: hand it plain Uint8Arrays.
    put: (key, value, options) =>
      retryTransient(() =>
        bucket.put(
          key,
          value instanceof Uint8Array && value.constructor !== Uint8Array
            ? new Uint8Array(value)
            : value,
          options,
        ),
      ),
  };
  return { store, dispose: () => mf.dispose() };
}
