/**
 * @module
 * An object store over the S3 API, as R2 offers it
 * (`https://<account>.r2.cloudflarestorage.com`): path-style URLs, requests
 * signed with SigV4 by aws4fetch. What the registry needs and no more: GET (the
 * body streamed), HEAD, PUT (create-only through `If-None-Match: *`, the body
 * checked by the store against `x-amz-content-sha256`) and ListObjectsV2.
 */
import { AwsClient } from "aws4fetch";
import { unavailable } from "../../core/errors";
import type {
  ListOptions,
  ListResult,
  ObjectStore,
  PutOptions,
  StoredObject,
  StoredObjectInfo,
} from "../../core/registry/store";

export interface S3StoreOptions {
  /** The S3 endpoint, e.g. `https://<account>.r2.cloudflarestorage.com`. */
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** R2 takes `auto`; other S3 services need their region. */
  region?: string;
  /** Retries of a request answered with 5xx or 429, with exponential backoff. */
  retries?: number;
}

/** RFC 3986 encoding of each key segment, as SigV4's canonical URI expects. */
function encodeKey(key: string): string {
  return key
    .split("/")
    .map((segment) =>
      encodeURIComponent(segment).replace(
        /[!'()*]/g,
        (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
      ),
    )
    .join("/");
}

const XML_ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

function decodeXml(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, entity: string) => {
    if (entity[0] === "#") {
      const code =
        entity[1] === "x" || entity[1] === "X"
          ? parseInt(entity.slice(2), 16)
          : parseInt(entity.slice(1), 10);
      return String.fromCodePoint(code);
    }
    return XML_ENTITIES[entity.toLowerCase()] ?? whole;
  });
}

/** Text of every `<tag>…</tag>` directly inside `xml` (ListObjectsV2 answers nest two deep at most). */
function elements(xml: string, tag: string): string[] {
  const pattern = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g");
  return [...xml.matchAll(pattern)].map((m) => m[1]!);
}

function element(xml: string, tag: string): string | undefined {
  const value = elements(xml, tag)[0];
  return value === undefined ? undefined : decodeXml(value);
}

export class S3Store implements ObjectStore {
  private readonly client: AwsClient;
  private readonly base: string;

  constructor(private readonly options: S3StoreOptions) {
    this.client = new AwsClient({
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      service: "s3",
      region: options.region ?? "auto",
      retries: options.retries ?? 2,
    });
    this.base = `${options.endpoint.replace(/\/+$/, "")}/${encodeURIComponent(options.bucket)}`;
  }

  get description(): string {
    return `S3 ${this.options.endpoint} bucket ${this.options.bucket}`;
  }

  private async request(
    what: string,
    url: string,
    init: RequestInit,
    expected: (status: number) => boolean = (s) => s >= 200 && s < 300,
  ): Promise<Response> {
    let response: Response;
    try {
      response = await this.client.fetch(url, init);
    } catch (cause) {
      throw unavailable(`object store unreachable (${what}): ${(cause as Error).message}`, cause);
    }
    if (!expected(response.status)) {
      const text = init.method === "HEAD" ? "" : await response.text().catch(() => "");
      const code = element(text, "Code") ?? "";
      const message = element(text, "Message") ?? "";
      throw unavailable(
        `object store refused ${what}: ${response.status} ${code} ${message}`.trim(),
      );
    }
    return response;
  }

  private infoFrom(key: string, response: Response): StoredObjectInfo {
    return {
      key,
      size: Number(response.headers.get("content-length") ?? 0),
      etag: response.headers.get("etag") ?? "",
    };
  }

  async head(key: string): Promise<StoredObjectInfo | null> {
    const response = await this.request(
      `HEAD ${key}`,
      `${this.base}/${encodeKey(key)}`,
      { method: "HEAD" },
      (s) => s === 404 || (s >= 200 && s < 300),
    );
    return response.status === 404 ? null : this.infoFrom(key, response);
  }

  async get(key: string): Promise<StoredObject | null> {
    const response = await this.request(
      `GET ${key}`,
      `${this.base}/${encodeKey(key)}`,
      { method: "GET" },
      (s) => s === 404 || (s >= 200 && s < 300),
    );
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    const body = response.body ?? new Response(new Uint8Array(0)).body!;
    return {
      ...this.infoFrom(key, response),
      body,
      arrayBuffer: () => response.arrayBuffer(),
      text: () => response.text(),
    };
  }

  async put(
    key: string,
    value: ArrayBuffer | Uint8Array | string,
    options: PutOptions = {},
  ): Promise<StoredObjectInfo | null> {
    const headers = new Headers();
    if (options.httpMetadata?.contentType) {
      headers.set("content-type", options.httpMetadata.contentType);
    }
    // The payload hash is signed, so S3 rejects a body whose digest differs.
    if (options.sha256) headers.set("x-amz-content-sha256", options.sha256);
    if (options.onlyIf?.etagDoesNotMatch)
      headers.set("if-none-match", options.onlyIf.etagDoesNotMatch);
    if (options.onlyIf?.etagMatches) headers.set("if-match", options.onlyIf.etagMatches);
    const body =
      typeof value === "string"
        ? value
        : ((value instanceof Uint8Array
            ? value
            : new Uint8Array(value)) as Uint8Array<ArrayBuffer>);
    const response = await this.request(
      `PUT ${key}`,
      `${this.base}/${encodeKey(key)}`,
      { method: "PUT", headers, body },
      (s) => s === 412 || (s >= 200 && s < 300),
    );
    await response.body?.cancel();
    if (response.status === 412) return null;
    const size =
      typeof body === "string" ? new TextEncoder().encode(body).byteLength : body.byteLength;
    return { key, size, etag: response.headers.get("etag") ?? "" };
  }

  async list(options: ListOptions = {}): Promise<ListResult> {
    const query = new URLSearchParams({ "list-type": "2" });
    if (options.prefix) query.set("prefix", options.prefix);
    if (options.delimiter) query.set("delimiter", options.delimiter);
    if (options.cursor) query.set("continuation-token", options.cursor);
    if (options.limit !== undefined) query.set("max-keys", String(options.limit));
    const response = await this.request(`LIST ${options.prefix ?? ""}`, `${this.base}?${query}`, {
      method: "GET",
    });
    const xml = await response.text();
    const objects = elements(xml, "Contents").map((entry) => ({
      key: element(entry, "Key") ?? "",
      size: Number(element(entry, "Size") ?? 0),
      etag: element(entry, "ETag") ?? "",
    }));
    const delimitedPrefixes = elements(xml, "CommonPrefixes").map(
      (entry) => element(entry, "Prefix") ?? "",
    );
    const truncated = element(xml, "IsTruncated") === "true";
    const cursor = element(xml, "NextContinuationToken");
    return { objects, delimitedPrefixes, truncated, ...(truncated && cursor ? { cursor } : {}) };
  }
}
