/**
 * @module
 * The int8 plan: a compiled dense network the int8 runtime executes on the
 * WASM kernels. A documented, versioned binary format that loads with no
 * parsing beyond its header:
 *
 *   offset  size  content
 *   0       8     magic "PINT8PLN"
 *   8       4     format version, u32 little-endian (2; 1 is still read)
 *   12      4     metadata length L, u32 little-endian
 *   16      L     metadata, UTF-8 JSON (`PlanMetadata`), padded with spaces to
 *                 a multiple of 16
 *   16+L'   …     blobs, each starting on a 16-byte boundary, at the offsets
 *                 (from the start of the file) the metadata gives
 *
 * Per layer the blobs are: the weights already packed for `gemmI16` (i16,
 * zero point 0, in the kernels' panel layout — copied into WASM memory as they
 * are), the f32 per-output-channel weight scales, and the optional f32 bias.
 *
 * The version changes whenever the packed layout does. Version 1 packed
 * column pairs 8 k values at a time (the kernels' layout until they moved to
 * 16-column panels of k-pairs); such a plan still loads: its weights are
 * unpacked with `unpackV1Weights` and packed anew, once, at load.
 */
import { z } from "zod";
import { invalid } from "../../errors";

export const PLAN_MAGIC = "PINT8PLN";
export const PLAN_FORMAT_VERSION = 2;
/** Graph plans (convolutional networks and other DAGs): see `graph-plan.ts`. */
export const GRAPH_PLAN_VERSION = 3;
/** Text plans (transformer encoders, sizes polynomial in the sequence length): see `text-plan.ts`. */
export const TEXT_PLAN_VERSION = 4;
/** Older versions this build still reads (see `unpackV1Weights`). */
const READABLE_VERSIONS = [1, PLAN_FORMAT_VERSION];
export const PLAN_HEADER_BYTES = 16;
const HEADER_BYTES = PLAN_HEADER_BYTES;
const ALIGN = 16;

/** Activations applied after a layer (ReLU fused in WASM; the others in JS). */
export const PLAN_ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh", "gelu"] as const;
export type PlanActivation = (typeof PLAN_ACTIVATIONS)[number];

const blobSchema = z.object({
  offset: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
});
export type BlobRef = z.infer<typeof blobSchema>;

const layerSchema = z.object({
  /** The ONNX node(s) this layer came from, for reports. */
  name: z.string(),
  k: z.number().int().positive(),
  n: z.number().int().positive(),
  packedWeights: blobSchema,
  scales: blobSchema,
  bias: blobSchema.nullable(),
  activation: z.enum(PLAN_ACTIVATIONS),
  /** LeakyRelu's slope. */
  alpha: z.number().optional(),
  /** Weight quantisation quality: signal-to-quantisation-noise ratio, dB. */
  sqnrDb: z.number(),
  /** The same with plain absmax scales, for comparison. */
  absmaxSqnrDb: z.number(),
});
export type PlanLayer = z.infer<typeof layerSchema>;

export const planMetadataSchema = z.object({
  input: z.object({ name: z.string(), shape: z.array(z.number().int()) }),
  output: z.object({ name: z.string(), shape: z.array(z.number().int()) }),
  layers: z.array(layerSchema).min(1),
  /** Softmax over the last axis after the last layer. */
  softmax: z.boolean(),
});
export type PlanMetadata = z.infer<typeof planMetadataSchema> & {
  /** The file's format version, which says how `packedWeights` are laid out. */
  formatVersion: number;
};

export interface PlanBlobs {
  packedWeights: Uint8Array;
  scales: Float32Array;
  bias: Float32Array | null;
}

const pad = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/** A typed array's bytes, as a view (no copy). */
export function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Writes a plan file: header, the metadata `describe` returns given where each
 * blob lands (16-byte aligned, in the order given), then the blobs. Every plan
 * format version shares this container.
 */
export function encodeContainer(
  version: number,
  blobs: readonly Uint8Array[],
  describe: (refs: BlobRef[]) => unknown,
): Uint8Array {
  // Blob offsets depend on the metadata length, which depends on the offsets'
  // digits: lay out with a generous placeholder, then fix the header size.
  const layout = (start: number) => {
    let at = start;
    const refs = blobs.map((blob) => {
      const ref = { offset: at, bytes: blob.byteLength };
      at = pad(at + blob.byteLength);
      return ref;
    });
    return { refs, end: at };
  };
  let start = pad(HEADER_BYTES + 256);
  let json = "";
  let placed: ReturnType<typeof layout>;
  for (;;) {
    placed = layout(start);
    json = JSON.stringify(describe(placed.refs));
    const needed = pad(HEADER_BYTES + new TextEncoder().encode(json).byteLength);
    if (needed <= start) break;
    start = needed;
  }
  const out = new Uint8Array(placed.end);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(PLAN_MAGIC), 0);
  view.setUint32(8, version, true);
  const metaBytes = new TextEncoder().encode(json.padEnd(start - HEADER_BYTES, " "));
  view.setUint32(12, metaBytes.byteLength, true);
  out.set(metaBytes, HEADER_BYTES);
  blobs.forEach((blob, i) => out.set(blob, placed.refs[i]!.offset));
  return out;
}

/**
 * Checks a plan file's magic and that its format version is one of
 * `readable`; returns the version. Reads only the fixed header.
 */
function readVersion(bytes: Uint8Array, readable: readonly number[]): number {
  if (
    bytes.byteLength < HEADER_BYTES ||
    new TextDecoder().decode(bytes.subarray(0, 8)) !== PLAN_MAGIC
  ) {
    throw invalid("not an int8 plan (bad magic)");
  }
  const version = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  if (!readable.includes(version)) {
    throw invalid(
      `int8 plan format version ${version} is not supported (this build reads ${readable.join(", ")})`,
    );
  }
  return version;
}

/**
 * Reads a plan file's header: its format version (one of `readable`) and
 * metadata JSON (parsed, unchecked).
 */
export function decodeContainer(
  bytes: Uint8Array,
  readable: readonly number[] = READABLE_VERSIONS,
): { version: number; metadata: unknown } {
  const version = readVersion(bytes, readable);
  const end = metadataEnd(bytes);
  if (end > bytes.byteLength) throw invalid("int8 plan is truncated (metadata)");
  try {
    const text = new TextDecoder().decode(bytes.subarray(HEADER_BYTES, end));
    return { version, metadata: JSON.parse(text) };
  } catch (error) {
    throw invalid(`int8 plan metadata is invalid: ${(error as Error).message.slice(0, 200)}`);
  }
}

/**
 * Where a plan file's metadata ends (its blobs may start), once the fixed
 * header is in `head`; before that, the fixed header's length. Lets a reader
 * of a streamed plan know how much of its start to collect.
 */
export function metadataEnd(head: Uint8Array): number {
  if (head.byteLength < HEADER_BYTES) return HEADER_BYTES;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  return HEADER_BYTES + view.getUint32(12, true);
}

/** The format version of a plan file, from its fixed header (the metadata is left to the decoders). */
export function planFormatVersion(bytes: Uint8Array): number {
  return readVersion(bytes, [...READABLE_VERSIONS, GRAPH_PLAN_VERSION, TEXT_PLAN_VERSION]);
}

/** Checks that a blob lies inside the file, 16-byte aligned. */
export function checkBlob(ref: BlobRef, totalBytes: number, what: string): void {
  if (ref.offset % ALIGN !== 0 || ref.offset + ref.bytes > totalBytes) {
    throw invalid(`int8 plan ${what} points outside the file`);
  }
}

/** Writes a plan: `layers` in metadata order, each with its blobs. */
export function encodePlan(
  meta: Omit<PlanMetadata, "layers" | "formatVersion"> & {
    layers: Omit<PlanLayer, "packedWeights" | "scales" | "bias">[];
  },
  blobs: PlanBlobs[],
): Uint8Array {
  const files = blobs.flatMap((b) => [
    b.packedWeights,
    bytesOf(b.scales),
    ...(b.bias ? [bytesOf(b.bias)] : []),
  ]);
  return encodeContainer(PLAN_FORMAT_VERSION, files, (refs) => {
    let next = 0;
    const layers = meta.layers.map((layer, i) => ({
      ...layer,
      packedWeights: refs[next++]!,
      scales: refs[next++]!,
      bias: blobs[i]!.bias ? refs[next++]! : null,
    }));
    return planMetadataSchema.parse({ ...meta, layers });
  });
}

/**
 * Reads and checks a plan's header and metadata; blobs stay where they are.
 * `totalBytes` is the whole plan's size when `bytes` holds only its head.
 */
export function decodePlanHeader(
  bytes: Uint8Array,
  totalBytes: number = bytes.byteLength,
): PlanMetadata {
  const { version, metadata: json } = decodeContainer(bytes);
  let metadata: PlanMetadata;
  try {
    metadata = { ...planMetadataSchema.parse(json), formatVersion: version };
  } catch (error) {
    throw invalid(`int8 plan metadata is invalid: ${(error as Error).message.slice(0, 200)}`);
  }
  for (const layer of metadata.layers) {
    const refs = [layer.packedWeights, layer.scales, ...(layer.bias ? [layer.bias] : [])];
    for (const ref of refs) checkBlob(ref, totalBytes, `layer ${layer.name}`);
    if (layer.scales.bytes !== layer.n * 4 || (layer.bias && layer.bias.bytes !== layer.n * 4)) {
      throw invalid(`int8 plan layer ${layer.name} has scales or bias of the wrong size`);
    }
  }
  return metadata;
}

/**
 * The K×N int8 weights (row-major) of a version-1 plan's packed blob: column
 * pairs (N padded to 4, K to 8), inside a pair 8 k values of one column then
 * the same 8 of the other, as i16.
 */
export function unpackV1Weights(packed: Uint8Array, k: number, n: number): Int8Array {
  const kp = Math.ceil(k / 8) * 8;
  const expected = Math.ceil(n / 4) * 4 * kp * 2;
  if (packed.byteLength !== expected) {
    throw invalid(
      `version-1 packed weights for ${k}×${n} are ${expected} bytes, not ${packed.byteLength}`,
    );
  }
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  const weights = new Int8Array(k * n);
  for (let col = 0; col < n; col++) {
    const base = (col & ~1) * kp * 2 + (col & 1) * 16;
    for (let i = 0; i < k; i++) {
      weights[i * n + col] = view.getInt16(base + (i >> 3) * 32 + (i & 7) * 2, true);
    }
  }
  return weights;
}

/** A blob as a typed view into the plan (no copy). */
export function blobView(bytes: Uint8Array, ref: BlobRef): Uint8Array {
  return bytes.subarray(ref.offset, ref.offset + ref.bytes);
}

export function f32Blob(bytes: Uint8Array, ref: BlobRef): Float32Array {
  // Blobs are 16-byte aligned in the file; copy if the file itself is not aligned in memory.
  const view = blobView(bytes, ref);
  return view.byteOffset % 4 === 0
    ? new Float32Array(view.buffer, view.byteOffset, view.byteLength / 4)
    : new Float32Array(view.slice().buffer);
}
