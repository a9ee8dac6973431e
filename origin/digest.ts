/**
 * @module
 * Node's incremental SHA-256, for artifacts the registry streams into place.
 */
import { createHash } from "node:crypto";
import type { IncrementalDigest } from "../core/registry/digest";

export function nodeSha256(): IncrementalDigest {
  const hash = createHash("sha256");
  return {
    update: (chunk) => void hash.update(chunk),
    hex: async () => hash.digest("hex"),
  };
}
