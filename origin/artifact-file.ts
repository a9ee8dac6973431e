/**
 * @module
 * Brings a version's artifact from the object store to a temporary file,
 * streamed: the bytes go through a SHA-256 hash on their way to disk, so a
 * model of gigabytes never sits in memory (onnxruntime-node then reads the file
 * itself). A file whose size or digest is not what the manifest says is deleted
 * and refused; the caller deletes a good one once it is loaded.
 */
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { PinionError, unavailable } from "../core/errors";
import type { ArtifactRole, Manifest } from "../core/registry/manifest";
import type { ModelRegistry } from "../core/registry/registry";

/**
 * An error message fit for clients: the temporary file's path (which says
 * where this host keeps its files) replaced by what it is. The full message
 * stays in the error's cause, for the server's log.
 */
export function withoutPath(message: string, path: string): string {
  return message.replaceAll(path, "the model file").replaceAll(dirname(path), "the temp directory");
}

export interface ArtifactFile {
  path: string;
  bytes: number;
}

export async function downloadArtifact(
  registry: ModelRegistry,
  manifest: Manifest,
  role: ArtifactRole,
  directory: string,
  maxBytes: number,
): Promise<ArtifactFile> {
  const { artifact, object } = await registry.openArtifact(manifest, role, maxBytes);
  const label = `${role} artifact of ${manifest.name}@${manifest.version}`;
  const path = join(directory, `${artifact.sha256}-${randomUUID()}.${role}`);
  const hash = createHash("sha256");
  let received = 0;
  const measure = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.byteLength;
      if (received > artifact.bytes) {
        done(unavailable(`${label} is longer than the ${artifact.bytes} bytes the manifest says`));
        return;
      }
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(object.body as NodeReadableStream<Uint8Array>),
      measure,
      createWriteStream(path, { flags: "wx" }),
    );
    if (received !== artifact.bytes) {
      throw unavailable(`${label} is ${received} bytes, the manifest says ${artifact.bytes}`);
    }
    registry.checkDigest(manifest, role, hash.digest("hex"));
  } catch (error) {
    await rm(path, { force: true });
    if (error instanceof PinionError) throw error;
    throw unavailable(
      `could not fetch the ${label}: ${withoutPath((error as Error).message, path)}`,
      error,
    );
  }
  return { path, bytes: received };
}
