/**
 * @module
 * The registry's `ObjectStore` over an R2 bucket binding, with R2's transient
 * failures retried (see `core/registry/transient.ts`): a promotion or a
 * publish should not fail because the store hiccuped once.
 */
import type { ObjectStore } from "../core/registry/store";
import { retryTransient } from "../core/registry/transient";

export function r2Store(bucket: R2Bucket): ObjectStore {
  return {
    get: (key) => retryTransient(() => bucket.get(key)),
    head: (key) => retryTransient(() => bucket.head(key)),
    list: (options) => retryTransient(() => bucket.list(options)),
    put: (key, value, options) => retryTransient(() => bucket.put(key, value, options)),
  };
}
