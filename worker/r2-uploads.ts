/**
 * @module
 * The core's `UploadStore` port over an R2 bucket binding: multipart uploads,
 * SHA-256 streamed through workerd's `DigestStream`, and create-only copies
 * that record the digest in the object's custom metadata.
 */
import { notFound } from "../core/errors";
import { hexOf } from "../core/registry/digest";
import type { StoredBlob, UploadedPart, UploadStore } from "../core/registry/uploads";

function described(object: R2Object): StoredBlob {
  const sha256 =
    object.customMetadata?.sha256 ?? (object.checksums.sha256 && hexOf(object.checksums.sha256));
  return { key: object.key, size: object.size, ...(sha256 ? { sha256 } : {}) };
}

export function r2Uploads(bucket: R2Bucket): UploadStore {
  return {
    async describe(key) {
      const object = await bucket.head(key);
      return object && described(object);
    },
    async createMultipart(key, contentType) {
      const upload = await bucket.createMultipartUpload(key, { httpMetadata: { contentType } });
      return upload.uploadId;
    },
    async uploadPart(key, uploadId, partNumber, body): Promise<UploadedPart> {
      const part = await bucket.resumeMultipartUpload(key, uploadId).uploadPart(partNumber, body);
      return { partNumber: part.partNumber, etag: part.etag };
    },
    async completeMultipart(key, uploadId, parts) {
      await bucket.resumeMultipartUpload(key, uploadId).complete(parts);
    },
    async abortMultipart(key, uploadId) {
      await bucket.resumeMultipartUpload(key, uploadId).abort();
    },
    async digest(key) {
      const object = await bucket.get(key);
      if (!object) return null;
      const stream = new crypto.DigestStream("SHA-256");
      await object.body.pipeTo(stream);
      return { sha256: hexOf(await stream.digest), size: object.size };
    },
    async copyCreateOnly(from, to, sha256) {
      const existing = await bucket.head(to);
      if (existing) return described(existing);
      const source = await bucket.get(from);
      if (!source) throw notFound("the staged upload vanished before it could be stored");
      const written = await bucket.put(to, source.body, {
        onlyIf: { etagDoesNotMatch: "*" },
        sha256,
        customMetadata: { sha256 },
        ...(source.httpMetadata ? { httpMetadata: source.httpMetadata } : {}),
      });
      const placed = written ?? (await bucket.head(to));
      return placed && described(placed);
    },
    async delete(key) {
      await bucket.delete(key);
    },
  };
}
