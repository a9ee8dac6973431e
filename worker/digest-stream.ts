/**
 * @module
 * workerd's native incremental SHA-256 (`crypto.DigestStream`), for artifacts
 * the registry streams into place: the runtime is never handed a whole copy to
 * hash with WebCrypto's one-shot digest.
 */
import { hexOf, type IncrementalDigest } from "../core/registry/digest";

export function digestStreamSha256(): IncrementalDigest {
  const stream = new crypto.DigestStream("SHA-256");
  const writer = stream.getWriter();
  return {
    // Resolves once the bytes are hashed, so the caller may reuse the chunk's buffer.
    update: (chunk) => writer.write(chunk),
    async hex() {
      await writer.close();
      return hexOf(await stream.digest);
    },
  };
}
