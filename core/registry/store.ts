/**
 * @module
 * The slice of an object store the registry needs. An R2 bucket binding
 * satisfies it as is; so does Miniflare's R2 emulation in Node, which is how the
 * scripts publish to local R2, and the origin server's S3 and directory stores
 * implement it. Declared here, rather than importing Workers types, so the
 * registry runs anywhere.
 */

export interface StoredObjectInfo {
  key: string;
  size: number;
  etag: string;
}

/** An object's contents, to be read once: as a stream, or whole. */
export interface StoredObject extends StoredObjectInfo {
  /** The bytes as a stream, for objects too large to hold in memory. */
  readonly body: ReadableStream<Uint8Array>;
  arrayBuffer(): Promise<ArrayBuffer>;
  text(): Promise<string>;
}

export interface PutOptions {
  /** `etagDoesNotMatch: "*"` makes a put create-only. */
  onlyIf?: { etagMatches?: string; etagDoesNotMatch?: string };
  /** The store verifies the body against this digest (hex) and rejects a mismatch. */
  sha256?: string;
  httpMetadata?: { contentType?: string };
}

export interface ListOptions {
  prefix?: string;
  delimiter?: string;
  cursor?: string;
  limit?: number;
}

export interface ListResult {
  objects: StoredObjectInfo[];
  delimitedPrefixes: string[];
  truncated: boolean;
  cursor?: string;
}

export interface ObjectStore {
  get(key: string): Promise<StoredObject | null>;
  head(key: string): Promise<StoredObjectInfo | null>;
  /** Resolves to null when an `onlyIf` condition failed and nothing was written. */
  put(
    key: string,
    value: ArrayBuffer | Uint8Array | string,
    options?: PutOptions,
  ): Promise<StoredObjectInfo | null>;
  list(options?: ListOptions): Promise<ListResult>;
}

/** Every page of a listing, following its cursors. */
export async function* listPages(
  store: ObjectStore,
  options: Omit<ListOptions, "cursor">,
): AsyncGenerator<ListResult> {
  let cursor: string | undefined;
  do {
    const page = await store.list({ ...options, ...(cursor ? { cursor } : {}) });
    yield page;
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
}

/** The keys of every object under `prefix`. */
export async function listKeys(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const page of listPages(store, { prefix }))
    keys.push(...page.objects.map((o) => o.key));
  return keys;
}
