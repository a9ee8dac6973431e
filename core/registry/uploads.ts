/**
 * @module
 * Artifact uploads for the admin API: multipart uploads assembled under a
 * staging key of their own, verified, and only then placed at their
 * content-addressed blob key, create-only — so an upload never writes where
 * verified bytes may already be, and a failed one deletes only its own staging
 * object. The object store's multipart and digest operations sit behind the
 * `UploadStore` port (R2 at the edge: `worker/r2-uploads.ts`), so neither this
 * module nor the HTTP layer holds a bucket.
 */
import { conflict, echo, invalid, lengthRequired, notFound, tooLarge } from "../errors";
import { blobKey, stagingKey } from "./layout";

/** Every part but the last has exactly this size (R2 needs equal parts of at least 5 MiB). */
export const PART_BYTES = 8 * 1024 * 1024;
export const MAX_PARTS = 10_000;
/**
 * The largest artifact: verified bytes reach their blob key in one create-only
 * put, and R2 takes at most 5 GiB − 5 MiB in one put (an ONNX file is at most 2 GiB).
 */
export const MAX_ARTIFACT_BYTES = 5 * 1024 ** 3 - 5 * 1024 ** 2;
export const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** An object's size and, when the store recorded it, its sha256. */
export interface StoredBlob {
  key: string;
  size: number;
  sha256?: string;
}

export interface UploadedPart {
  partNumber: number;
  etag: string;
}

/** What uploads need from an object store beyond `ObjectStore`: multipart writes, digests, copies. */
export interface UploadStore {
  describe(key: string): Promise<StoredBlob | null>;
  /** Starts a multipart upload at `key`; answers its upload id. */
  createMultipart(key: string, contentType: string): Promise<string>;
  uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: ReadableStream<Uint8Array>,
  ): Promise<UploadedPart>;
  completeMultipart(key: string, uploadId: string, parts: UploadedPart[]): Promise<void>;
  abortMultipart(key: string, uploadId: string): Promise<void>;
  /** Streams the object through SHA-256 (never held whole); null when it does not exist. */
  digest(key: string): Promise<{ sha256: string; size: number } | null>;
  /**
   * Copies `from` to `to` only if `to` does not exist, recording `sha256` (which
   * the store checks); answers what is at `to` afterwards, either way.
   */
  copyCreateOnly(from: string, to: string, sha256: string): Promise<StoredBlob | null>;
  delete(key: string): Promise<void>;
}

export type UploadStart =
  | { exists: true; key: string }
  | { exists: false; key: string; uploadId: string; partBytes: number };

/**
 * The upload id the client sees is `{staging id}.{store upload id}`: the
 * staging key is recovered from it on every later call (so resuming needs
 * nothing else), and is always one the server generated, never a key the
 * client names.
 */
const UPLOAD_ID = /^([0-9a-f]{32})\.(.+)$/s;

export class ArtifactUploads {
  constructor(private readonly store: UploadStore) {}

  /** Starts the upload of one artifact, or skips it when its blob is already stored. */
  async start(
    name: string,
    artifact: { sha256: string; bytes: number; mediaType: string },
  ): Promise<UploadStart> {
    const key = blobKey(name, artifact.sha256);
    const existing = await this.store.describe(key);
    if (existing) {
      refuseOtherBytes(existing, artifact.sha256, artifact.bytes);
      return { exists: true, key };
    }
    const id = crypto.randomUUID().replaceAll("-", "");
    const uploadId = await this.store.createMultipart(stagingKey(name, id), artifact.mediaType);
    return { exists: false, key, uploadId: `${id}.${uploadId}`, partBytes: PART_BYTES };
  }

  /** Streams one part into the store; its size must be declared (the store needs it up front). */
  async putPart(
    name: string,
    uploadId: string,
    partNumber: number,
    body: ReadableStream<Uint8Array> | null,
    declaredLength: number | undefined,
  ): Promise<UploadedPart> {
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
      throw invalid(`part number must be an integer from 1 to ${MAX_PARTS}`);
    }
    if (declaredLength === undefined || !Number.isInteger(declaredLength) || declaredLength <= 0) {
      throw lengthRequired("a part needs a Content-Length header");
    }
    if (declaredLength > PART_BYTES) throw tooLarge(`a part is at most ${PART_BYTES} bytes`);
    if (!body) throw lengthRequired("a part needs a body");
    const staged = this.staged(name, uploadId);
    try {
      return await this.store.uploadPart(staged.key, staged.uploadId, partNumber, body);
    } catch (error) {
      throw invalid(`upload part ${partNumber} was refused: ${echo((error as Error).message)}`);
    }
  }

  /**
   * Assembles the parts, checks the whole object's sha256, and places verified
   * bytes at the blob key (create-only). The staging object is deleted whatever
   * happens; the blob key never is.
   */
  async complete(
    name: string,
    uploadId: string,
    sha256: string,
    parts: UploadedPart[],
  ): Promise<{ key: string; bytes: number; sha256: string }> {
    const key = blobKey(name, sha256);
    const staged = this.staged(name, uploadId);
    try {
      await this.store.completeMultipart(staged.key, staged.uploadId, parts);
    } catch (error) {
      throw invalid(`the upload could not be completed: ${echo((error as Error).message)}`);
    }
    try {
      const uploaded = await this.store.digest(staged.key);
      if (!uploaded) throw invalid("the completed upload is not in the bucket");
      if (uploaded.sha256 !== sha256) {
        throw invalid(
          `the uploaded bytes have sha256 ${uploaded.sha256}, not ${sha256}; the object was deleted`,
        );
      }
      const stored = await this.store.copyCreateOnly(staged.key, key, sha256);
      if (!stored) {
        throw conflict(`${key} was deleted while the upload was stored; upload it again`);
      }
      if (stored.size !== uploaded.size) {
        throw conflict(
          `${key} already holds ${stored.size} bytes, not the ${uploaded.size} uploaded; published bytes are never replaced`,
        );
      }
      return { key, bytes: stored.size, sha256 };
    } finally {
      // Only this upload's own object: the blob key is never deleted.
      await this.store.delete(staged.key);
    }
  }

  /** Aborts an upload; aborting one that is already gone is fine. */
  async abort(name: string, uploadId: string): Promise<void> {
    const staged = this.staged(name, uploadId);
    await this.store.abortMultipart(staged.key, staged.uploadId).catch(() => undefined);
  }

  private staged(name: string, uploadId: string): { key: string; uploadId: string } {
    const match = UPLOAD_ID.exec(uploadId);
    if (!match) throw notFound("no such upload: start it again");
    return { key: stagingKey(name, match[1]!), uploadId: match[2]! };
  }
}

/** Refuses a start when the blob key holds bytes that cannot be the ones announced. */
function refuseOtherBytes(existing: StoredBlob, sha256: string, bytes: number): void {
  const digest = existing.sha256;
  if (existing.size === bytes && (digest === undefined || digest === sha256)) return;
  throw conflict(
    `${existing.key} already holds ${existing.size} bytes with sha256 ${digest ?? sha256}; an upload of ${bytes} bytes cannot have that digest, and published bytes are never replaced`,
  );
}
