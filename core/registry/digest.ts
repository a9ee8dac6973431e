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
