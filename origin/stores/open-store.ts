/**
 * @module
 * Opens the store the configuration names. Local R2 is imported only when
 * chosen: it starts a Miniflare (workerd) instance over wrangler's state.
 */
import type { ObjectStore } from "../../core/registry/store";
import type { StoreConfig } from "../config";
import { DirectoryStore } from "./directory-store";
import { S3Store } from "./s3-store";

export interface OpenStore {
  store: ObjectStore;
  description: string;
  close(): Promise<void>;
}

export async function openStore(config: StoreConfig): Promise<OpenStore> {
  switch (config.kind) {
    case "dir":
      return {
        store: new DirectoryStore(config.path),
        description: `directory ${config.path}`,
        close: async () => {},
      };
    case "s3": {
      const store = new S3Store(config);
      return { store, description: store.description, close: async () => {} };
    }
    case "local-r2": {
      const { openLocalR2, DEFAULT_PERSIST_TO } = await import("./local-r2");
      const r2 = await openLocalR2(config.persistTo);
      return {
        store: r2.store,
        description: `local R2 (${config.persistTo ?? DEFAULT_PERSIST_TO}, bucket pinion-models)`,
        close: () => r2.dispose(),
      };
    }
  }
}
