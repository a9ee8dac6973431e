/**
 * @module
 * The local R2 emulation `wrangler dev` uses, opened from Node through
 * Miniflare with the same persistence directory and bucket name, so what the
 * scripts publish is exactly what the local worker serves.
 */
import { Miniflare } from "miniflare";
import { resolve } from "node:path";
import type { ObjectStore } from "../../core/registry/store";

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
    get: (key) => retryBusy(() => bucket.get(key)),
    head: (key) => retryBusy(() => bucket.head(key)),
    list: (options) => retryBusy(() => bucket.list(options)),
    // Miniflare's Node proxy revives views by constructor name inside workerd,
    // where Node's Buffer does not exist: hand it plain Uint8Arrays.
    put: (key, value, options) =>
      retryBusy(() =>
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

/**
 * Every process that opens the same persistence directory (`wrangler dev`,
 * `pinion` commands, the origin) shares one SQLite database of object
 * metadata, which takes one writer at a time. Now and then (seen with
 * concurrent `pinion publish` runs) an operation fails inside the emulator and
 * reaches us as R2's bare 500, "Unspecified error (0)". The emulator commits a
 * put's metadata in one transaction and drops the new blob when it fails, so
 * nothing was written, and every value the registry puts is bytes it still
 * holds: the operation is tried again after a short, jittered wait.
 */
export async function retryBusy<T>(operation: () => Promise<T>, attempts = 8): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (attempt >= attempts || !/Unspecified error \(0\)/.test(String(error))) throw error;
      await new Promise((r) => setTimeout(r, 10 * 2 ** attempt * (0.5 + Math.random())));
    }
  }
}
