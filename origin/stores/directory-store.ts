/**
 * @module
 * An object store in a plain directory, for development and tests: each key is
 * a file path under the root (`models/seed/versions/1/manifest.json`). Writes
 * go to a hidden temporary file first and are then linked (create-only) or
 * renamed into place, so a reader never sees half an object. Keys are checked
 * before they become paths: no `..`, no absolute paths, no hidden segments.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { link, mkdir, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { invalid } from "../../core/errors";
import type {
  ListOptions,
  ListResult,
  ObjectStore,
  PutOptions,
  StoredObject,
  StoredObjectInfo,
} from "../../core/registry/store";

const DEFAULT_LIST_LIMIT = 1000;

export class DirectoryStore implements ObjectStore {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** The file behind a key; refuses keys that could leave the root. */
  pathOf(key: string): string {
    const segments = key.split("/");
    const bad = segments.some(
      (s) => s === "" || s.startsWith(".") || s.includes("\\") || s.includes("\0"),
    );
    if (key.length === 0 || key.length > 1024 || bad) {
      throw invalid(`object key ${JSON.stringify(key.slice(0, 100))} is not a safe relative path`);
    }
    return join(this.root, ...segments);
  }

  private async info(key: string): Promise<StoredObjectInfo | null> {
    try {
      const s = await stat(this.pathOf(key));
      if (!s.isFile()) return null;
      return { key, size: s.size, etag: `"${s.size.toString(16)}-${s.mtimeMs.toString(16)}"` };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw error;
    }
  }

  head(key: string): Promise<StoredObjectInfo | null> {
    return this.info(key);
  }

  async get(key: string): Promise<StoredObject | null> {
    const info = await this.info(key);
    if (!info) return null;
    const path = this.pathOf(key);
    return {
      ...info,
      // Opened on first use: a caller that reads the whole object never opens a stream.
      get body() {
        return Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array>;
      },
      arrayBuffer: async () => new Uint8Array(await readFile(path)).buffer,
      text: () => readFile(path, "utf8"),
    };
  }

  async put(
    key: string,
    value: ArrayBuffer | Uint8Array | string,
    options: PutOptions = {},
  ): Promise<StoredObjectInfo | null> {
    const path = this.pathOf(key);
    const bytes =
      typeof value === "string"
        ? new TextEncoder().encode(value)
        : value instanceof Uint8Array
          ? value
          : new Uint8Array(value);
    if (options.sha256 !== undefined) {
      const actual = createHash("sha256").update(bytes).digest("hex");
      if (actual !== options.sha256) {
        throw invalid(`the bytes for ${key} have sha256 ${actual}, not ${options.sha256}`);
      }
    }
    const { etagMatches, etagDoesNotMatch } = options.onlyIf ?? {};
    if (etagMatches !== undefined && (await this.info(key))?.etag !== etagMatches) return null;
    if (etagDoesNotMatch !== undefined && etagDoesNotMatch !== "*") {
      if ((await this.info(key))?.etag === etagDoesNotMatch) return null;
    }
    await mkdir(dirname(path), { recursive: true });
    const temporary = join(dirname(path), `.tmp-${randomUUID()}`);
    await writeFile(temporary, bytes);
    try {
      if (etagDoesNotMatch === "*") {
        // link() fails when the target exists: create-only, atomically.
        try {
          await link(temporary, path);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "EEXIST") return null;
          throw error;
        }
      } else {
        await rename(temporary, path);
      }
    } finally {
      await rm(temporary, { force: true });
    }
    return this.info(key);
  }

  async list(options: ListOptions = {}): Promise<ListResult> {
    const prefix = options.prefix ?? "";
    const delimiter = options.delimiter;
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    // Walk only the directory the prefix points into.
    const base = prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : "";
    const keys = (await this.walk(base)).filter((k) => k.startsWith(prefix)).sort();

    // Objects and delimited prefixes, in key order, each listed once.
    const entries: ({ kind: "object"; key: string } | { kind: "prefix"; key: string })[] = [];
    for (const key of keys) {
      const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
      if (cut >= 0) {
        const group = key.slice(0, cut + delimiter!.length);
        if (entries.at(-1)?.key !== group) entries.push({ kind: "prefix", key: group });
      } else {
        entries.push({ kind: "object", key });
      }
    }
    const start = options.cursor ? entries.findIndex((e) => e.key > options.cursor!) : 0;
    const page = start < 0 ? [] : entries.slice(start, start + limit);
    const truncated = start >= 0 && start + limit < entries.length;
    const objects: StoredObjectInfo[] = [];
    for (const entry of page) {
      if (entry.kind !== "object") continue;
      const info = await this.info(entry.key);
      if (info) objects.push(info);
    }
    return {
      objects,
      delimitedPrefixes: page.filter((e) => e.kind === "prefix").map((e) => e.key),
      truncated,
      ...(truncated ? { cursor: page.at(-1)!.key } : {}),
    };
  }

  /** Keys of every file under `base` (a key prefix ending before a `/`), hidden files left out. */
  private async walk(base: string): Promise<string[]> {
    const keys: string[] = [];
    const visit = async (directory: string, keyPrefix: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(directory, { withFileTypes: true });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") return;
        throw error;
      }
      for (const entry of entries) {
        if (entry.name.startsWith(".")) continue;
        const key = keyPrefix + entry.name;
        if (entry.isDirectory()) await visit(join(directory, entry.name), `${key}/`);
        else if (entry.isFile()) keys.push(key);
      }
    };
    if (base === "") {
      await visit(this.root, "");
    } else {
      await visit(this.pathOf(base), `${base}/`);
    }
    return keys;
  }
}
