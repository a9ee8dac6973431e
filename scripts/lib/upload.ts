/**
 * @module
 * Uploading one artifact through the admin API as an R2 multipart upload:
 * fixed-size parts, a progress callback, and resumption — the upload id and the
 * parts already sent are kept in `.pinion/uploads/`, so running the same
 * publish again after an interruption sends only what is missing (R2 discards
 * multipart uploads left incomplete for 7 days). The worker verifies the whole
 * object's sha256 when the upload completes.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { RemoteTarget } from "./targets";

export type UploadProgress = (event: { sha256: string; sent: number; total: number }) => void;

interface UploadState {
  uploadId: string;
  key: string;
  partBytes: number;
  parts: { partNumber: number; etag: string }[];
}

/** Where interrupted uploads are remembered (`PINION_STATE_DIR` overrides `.pinion`). */
const stateDir = () => join(process.env.PINION_STATE_DIR || ".pinion", "uploads");

const statePath = (target: RemoteTarget, sha256: string) =>
  join(stateDir(), `${target.host.replace(/[^a-zA-Z0-9.-]/g, "_")}-${sha256}.json`);

async function loadState(path: string): Promise<UploadState | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as UploadState;
  } catch {
    return undefined;
  }
}

export async function uploadArtifact(
  target: RemoteTarget,
  name: string,
  bytes: Uint8Array,
  sha256: string,
  mediaType: string,
  progress?: UploadProgress,
): Promise<{ key: string }> {
  const path = statePath(target, sha256);
  if (await loadState(path)) {
    try {
      return await send(target, name, bytes, sha256, mediaType, path, progress);
    } catch {
      // The saved upload is gone on the server (completed, aborted or expired): start afresh.
      await rm(path, { force: true });
    }
  }
  return send(target, name, bytes, sha256, mediaType, path, progress);
}

async function send(
  target: RemoteTarget,
  name: string,
  bytes: Uint8Array,
  sha256: string,
  mediaType: string,
  path: string,
  progress?: UploadProgress,
): Promise<{ key: string }> {
  const model = encodeURIComponent(name);
  let state = await loadState(path);
  if (!state) {
    const started = await target.json<{
      exists: boolean;
      key: string;
      uploadId?: string;
      partBytes?: number;
    }>(`models/${model}/uploads`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ sha256, bytes: bytes.byteLength, mediaType }),
    });
    if (started.exists) {
      progress?.({ sha256, sent: bytes.byteLength, total: bytes.byteLength });
      return { key: started.key };
    }
    state = {
      uploadId: started.uploadId!,
      key: started.key,
      partBytes: started.partBytes!,
      parts: [],
    };
    await mkdir(stateDir(), { recursive: true });
    await writeFile(path, JSON.stringify(state));
  }

  const count = Math.ceil(bytes.byteLength / state.partBytes);
  const done = new Set(state.parts.map((p) => p.partNumber));
  let sent = state.parts.length * state.partBytes;
  progress?.({ sha256, sent: Math.min(sent, bytes.byteLength), total: bytes.byteLength });
  for (let partNumber = 1; partNumber <= count; partNumber++) {
    if (done.has(partNumber)) continue;
    const part = bytes.subarray((partNumber - 1) * state.partBytes, partNumber * state.partBytes);
    const uploaded = await target.json<{ partNumber: number; etag: string }>(
      `models/${model}/uploads/${encodeURIComponent(state.uploadId)}/parts/${partNumber}?sha256=${sha256}`,
      { method: "PUT", body: part as Uint8Array<ArrayBuffer> },
    );
    state.parts.push(uploaded);
    await writeFile(path, JSON.stringify(state));
    sent += part.byteLength;
    progress?.({ sha256, sent, total: bytes.byteLength });
  }

  state.parts.sort((a, b) => a.partNumber - b.partNumber);
  await target.json(`models/${model}/uploads/${encodeURIComponent(state.uploadId)}/complete`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sha256, parts: state.parts }),
  });
  await rm(path, { force: true });
  return { key: state.key };
}
