/**
 * @module
 * SHA-256 via WebCrypto, available in workerd and in Node alike.
 */

/** Bytes as lowercase hex, two digits each (how digests are written everywhere here). */
export function hexOf(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(bytes: ArrayBuffer | Uint8Array): Promise<string> {
  // Never a SharedArrayBuffer view here; the cast only narrows TypeScript's ArrayBufferLike.
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return hexOf(digest);
}

/**
 * SHA-256 fed in pieces, for artifacts that are placed as they stream in and
 * never held whole. WebCrypto has no incremental digest, so each platform
 * brings its own (workerd's `crypto.DigestStream`, Node's `createHash`); see
 * `bufferedSha256` for the fallback.
 */
export interface IncrementalDigest {
  /** Takes the next bytes; `chunk` may be reused by the caller once this resolves. */
  update(chunk: Uint8Array): void | Promise<void>;
  /** The digest of everything given, as lowercase hex. */
  hex(): Promise<string>;
}

export type DigestFactory = () => IncrementalDigest;

/** An incremental digest with nothing but WebCrypto: keeps a copy of every chunk until the end. */
export function bufferedSha256(): IncrementalDigest {
  const chunks: Uint8Array[] = [];
  let total = 0;
  return {
    update(chunk) {
      chunks.push(chunk.slice());
      total += chunk.byteLength;
    },
    async hex() {
      const all = new Uint8Array(total);
      let at = 0;
      for (const chunk of chunks) {
        all.set(chunk, at);
        at += chunk.byteLength;
      }
      return sha256Hex(all);
    },
  };
}
