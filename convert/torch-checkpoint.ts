/**
 * @module
 * Reads the tensors out of a `torch.save(model.state_dict())` file without
 * Python, so that a `.pth` can be converted where only JavaScript runs.
 * Both layouts torch has written are understood: the zip archive (default
 * since PyTorch 1.6) and the older stream of pickles followed by raw storages.
 * Checkpoints are untrusted input: the pickle goes through the restricted
 * unpickler in `./pickle`, the zip's directory is checked before anything is
 * extracted, and every shape, stride and offset is checked against the bytes
 * actually present before a tensor is allocated.
 */

import { Inflate } from "fflate";
import { invalid, PinionError } from "../core/errors";
import {
  describe,
  PickleCall,
  PickleDict,
  PickleExternal,
  PickleGlobal,
  PickleTuple,
  readPickle,
  unpickle,
  type PickleValue,
} from "./pickle";

export type TorchDtype =
  | "float32"
  | "float16"
  | "bfloat16"
  | "float64"
  | "int64"
  | "int32"
  | "int16"
  | "int8"
  | "uint8"
  | "bool";

export interface TorchTensor {
  dtype: TorchDtype;
  shape: number[];
  /** contiguous row-major values; float16/bfloat16 widened to Float32Array */
  data:
    Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;
}

/** Tensors by state_dict key, in the order they were stored. */
export type TorchStateDict = Map<string, TorchTensor>;

export interface ReadStateDictOptions {
  /**
   * Largest tensor, in bytes of its dtype (numel × element size), and largest
   * zip entry the reader will materialise. Default 2 GiB.
   */
  maxTensorBytes?: number;
  /**
   * Most bytes the deflate-compressed entries of a zip checkpoint may inflate
   * to, all together, by their declared sizes; checked before inflating.
   * torch.save writes its entries uncompressed, so only re-zipped files
   * inflate at all, and a small file cannot demand gigabytes. Default 256 MiB.
   */
  maxInflatedBytes?: number;
}

/** Default of `maxInflatedBytes`. */
export const DEFAULT_MAX_INFLATED_BYTES = 256 * 1024 ** 2;

/**
 * Reads every tensor of a state_dict checkpoint. Keys that name the same
 * tensor object (tied weights) map to the same `TorchTensor`. Throws an
 * "invalid_argument" `PinionError` that says what is wrong with the file.
 */
export function readStateDict(
  bytes: Uint8Array,
  options: ReadStateDictOptions = {},
): TorchStateDict {
  const maxTensorBytes = options.maxTensorBytes ?? 2 ** 31;
  if (!(maxTensorBytes > 0)) throw invalid("maxTensorBytes must be a positive number");
  const maxInflatedBytes = options.maxInflatedBytes ?? DEFAULT_MAX_INFLATED_BYTES;
  if (!(maxInflatedBytes >= 0)) throw invalid("maxInflatedBytes must be a non-negative number");
  if (bytes.length === 0) throw invalid("empty file: expected a PyTorch checkpoint (.pth)");
  // "PK\3\4" opens a zip with entries, "PK\5\6" an empty one.
  if (bytes[0] === 0x50 && bytes[1] === 0x4b && (bytes[2] === 3 || bytes[2] === 5)) {
    return readZipCheckpoint(bytes, { maxTensorBytes, maxInflatedBytes });
  }
  // PROTO: every pickle torch writes opens with it (protocol 2 by default).
  if (bytes[0] === 0x80) return readLegacyCheckpoint(bytes, maxTensorBytes);
  const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
  throw invalid(
    `not a PyTorch checkpoint: neither a zip archive (torch.save since PyTorch 1.6) nor a ` +
      `legacy pickle stream; the file starts with bytes ${head}`,
  );
}

// --- dtypes ---

const STORAGE_DTYPES: Readonly<Record<string, TorchDtype>> = {
  FloatStorage: "float32",
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  DoubleStorage: "float64",
  LongStorage: "int64",
  IntStorage: "int32",
  ShortStorage: "int16",
  CharStorage: "int8",
  ByteStorage: "uint8",
  BoolStorage: "bool",
};

const ELEMENT_SIZE: Readonly<Record<TorchDtype, number>> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** Storage elements as stored: float16 and bfloat16 as their raw 16-bit patterns. */
type RawArray =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array;

const MAX_RANK = 16;
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// --- storages and tensors, independent of the file layout ---

/** One storage as a persistent id describes it; its bytes are found later. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: TorchDtype,
    readonly numel: number,
  ) {}
}

/** A `_rebuild_tensor_v2` call, checked, waiting for its storage's bytes. */
interface TensorSpec {
  name: string;
  storage: StorageRef;
  offset: number;
  shape: number[];
  stride: number[];
}

/**
 * The persistent_load of both layouts: torch pickles each storage as
 * `('storage', torch.XStorage, key, location, numel)`, with a sixth element,
 * the view metadata, in the legacy layout. A key seen twice is one storage.
 */
function storageFromPid(
  pid: PickleValue,
  storages: Map<string, StorageRef>,
  legacy: boolean,
): StorageRef {
  const arity = legacy ? 6 : 5;
  if (!(pid instanceof PickleTuple) || pid.items.length !== arity || pid.items[0] !== "storage") {
    throw invalid(
      `unsupported persistent id (${describe(pid)}): expected ('storage', type, key, ` +
        `location, numel${legacy ? ", view" : ""})`,
    );
  }
  const [, type, key, location, numel, view] = pid.items;
  const dtype =
    type instanceof PickleGlobal &&
    type.module === "torch" &&
    Object.hasOwn(STORAGE_DTYPES, type.name)
      ? STORAGE_DTYPES[type.name]!
      : undefined;
  if (!dtype) throw invalid(`unsupported storage type ${describe(type!)} in a persistent id`);
  if (typeof key !== "string" || typeof location !== "string") {
    throw invalid("malformed persistent id: storage key and location must be strs");
  }
  if (typeof numel !== "number" || !Number.isSafeInteger(numel) || numel < 0) {
    throw invalid(
      `malformed persistent id: storage "${key}" has element count ${typeof numel === "number" ? numel : describe(numel ?? null)}`,
    );
  }
  // Storage views were dropped from torch long before this format's last use.
  if (legacy && view !== null) throw invalid(`storage views (storage "${key}") are not supported`);
  const seen = storages.get(key);
  if (!seen) {
    const storage = new StorageRef(key, dtype, numel);
    storages.set(key, storage);
    return storage;
  }
  if (seen.dtype !== dtype || seen.numel !== numel) {
    throw invalid(`storage "${key}" is described twice, with different types or sizes`);
  }
  return seen;
}

const REBUILD_TENSOR = "torch._utils._rebuild_tensor_v2";
const REBUILD_PARAMETER = "torch._utils._rebuild_parameter";

const isCallTo = (value: PickleValue | undefined, fn: string): value is PickleCall =>
  value instanceof PickleCall && value.fn.qualifiedName === fn;

/**
 * Checks that the unpickled object is a state_dict, a dict of names to
 * tensors, and turns each tensor into a checked spec. The same tensor object
 * under two keys yields one spec, shared.
 */
function tensorSpecs(root: PickleValue, maxTensorBytes: number): Map<string, TensorSpec> {
  if (!(root instanceof PickleDict)) {
    throw invalid(
      `expected a state_dict (a dict of tensor names to tensors), but the checkpoint holds ` +
        `${describe(root)}`,
    );
  }
  const specs = new Map<string, TensorSpec>();
  const byCall = new Map<PickleCall, TensorSpec>();
  for (const [name, value] of root.entries) {
    if (typeof name !== "string") {
      throw invalid(`expected a state_dict, but one of its keys is ${describe(name)}, not a str`);
    }
    // keep_vars=True stores nn.Parameters: _rebuild_parameter(tensor, requires_grad, hooks).
    const call = isCallTo(value, REBUILD_PARAMETER) ? value.args[0] : value;
    if (!isCallTo(call, REBUILD_TENSOR)) {
      const hint =
        value instanceof PickleDict
          ? " (a training checkpoint? save model.state_dict() on its own)"
          : "";
      throw invalid(
        `expected a state_dict of tensors, but "${name}" holds ${describe(value)}${hint}`,
      );
    }
    let spec = byCall.get(call);
    if (!spec) {
      spec = tensorSpec(name, call.args, maxTensorBytes);
      byCall.set(call, spec);
    }
    specs.set(name, spec);
  }
  return specs;
}

/** `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, metadata])` */
function tensorSpec(
  name: string,
  args: readonly PickleValue[],
  maxTensorBytes: number,
): TensorSpec {
  const fail = (message: string) => invalid(`tensor "${name}": ${message}`);
  if (args.length !== 6 && args.length !== 7) {
    throw fail(`_rebuild_tensor_v2 takes 6 or 7 arguments, got ${args.length}`);
  }
  const [storageArg, offsetArg, sizeArg, strideArg] = args;
  const storage = storageArg instanceof PickleExternal ? storageArg.value : undefined;
  if (!(storage instanceof StorageRef)) {
    throw fail(`its storage is ${describe(storageArg!)}, not a storage record`);
  }
  const index = (value: PickleValue | undefined, what: string): number => {
    if (typeof value === "bigint") throw fail(`${what} ${value} is too large`);
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw fail(`${what} must be a non-negative integer, not ${describe(value ?? null)}`);
    }
    return value;
  };
  const dims = (value: PickleValue | undefined, what: string): number[] => {
    if (!(value instanceof PickleTuple)) throw fail(`${what} must be a tuple`);
    if (value.items.length > MAX_RANK) {
      throw fail(`rank ${value.items.length} is over the supported ${MAX_RANK}`);
    }
    return value.items.map((item) => index(item, `${what} entry`));
  };
  const offset = index(offsetArg, "storage offset");
  const shape = dims(sizeArg, "size");
  const stride = dims(strideArg, "stride");
  if (shape.length !== stride.length) {
    throw fail(`size [${shape}] and stride [${stride}] differ in rank`);
  }
  // Bound the element count before anything can be allocated from it; with
  // zero strides a tiny storage can describe an enormous tensor.
  const limit = maxTensorBytes / ELEMENT_SIZE[storage.dtype];
  if (!shape.includes(0)) {
    let numel = 1;
    for (const size of shape) {
      numel *= size;
      if (numel > limit) {
        throw fail(
          `shape [${shape}] is over the limit of ${maxTensorBytes} bytes per tensor ` +
            `(maxTensorBytes)`,
        );
      }
    }
  }
  return { name, storage, offset, shape, stride };
}

/** Typed-array view of a storage's little-endian bytes, copied only when misaligned. */
function rawArray(bytes: Uint8Array, dtype: TorchDtype): RawArray {
  const size = ELEMENT_SIZE[dtype];
  let data = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  if (!HOST_LITTLE_ENDIAN && size > 1) {
    data = bytes.slice();
    for (let i = 0; i < data.length; i += size) data.subarray(i, i + size).reverse();
  }
  const { buffer, byteOffset } = data;
  const length = data.length / size;
  switch (dtype) {
    case "float32":
      return new Float32Array(buffer, byteOffset, length);
    case "float16":
    case "bfloat16":
      return new Uint16Array(buffer, byteOffset, length);
    case "float64":
      return new Float64Array(buffer, byteOffset, length);
    case "int64":
      return new BigInt64Array(buffer, byteOffset, length);
    case "int32":
      return new Int32Array(buffer, byteOffset, length);
    case "int16":
      return new Int16Array(buffer, byteOffset, length);
    case "int8":
      return new Int8Array(buffer, byteOffset, length);
    case "uint8":
    case "bool":
      return new Uint8Array(buffer, byteOffset, length);
  }
}

/** Anything indexable we copy elements between; both sides always hold the same kind. */
interface Elements {
  [index: number]: number | bigint;
}

/**
 * Copies a strided view into a fresh contiguous array: the innermost
 * dimension in a tight loop, the outer ones counted like an odometer.
 */
function gather(src: Elements, dst: Elements, offset: number, shape: number[], stride: number[]) {
  const rank = shape.length;
  const inner = rank > 0 ? shape[rank - 1]! : 1;
  const innerStride = rank > 0 ? stride[rank - 1]! : 0;
  const counter = new Array<number>(Math.max(rank - 1, 0)).fill(0);
  let base = offset;
  let out = 0;
  for (;;) {
    for (let k = 0, i = base; k < inner; k++, i += innerStride) dst[out++] = src[i]!;
    let d = rank - 2;
    for (; d >= 0; d--) {
      base += stride[d]!;
      if (++counter[d]! < shape[d]!) break;
      base -= stride[d]! * shape[d]!;
      counter[d] = 0;
    }
    if (d < 0) return;
  }
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    // A dimension of size 1 is never stepped over, so its stride is free.
    if (shape[d] !== 1 && stride[d] !== expected) return false;
    expected *= shape[d]!;
  }
  return true;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and subnormals
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

function widen(raw: Uint16Array, dtype: "float16" | "bfloat16"): Float32Array {
  if (dtype === "float16") return Float32Array.from(raw, halfToFloat);
  // bfloat16 is the top half of a float32.
  const bits = new Uint32Array(raw.length);
  for (let i = 0; i < raw.length; i++) bits[i] = raw[i]! << 16;
  return new Float32Array(bits.buffer);
}

/**
 * Turns checked specs into tensors, once the storage bytes are known.
 * `storageBytes` returns undefined for a storage the file lacks.
 */
function materialise(
  specs: Map<string, TensorSpec>,
  storageBytes: (storage: StorageRef, tensor: string) => Uint8Array | undefined,
): TorchStateDict {
  const raws = new Map<StorageRef, RawArray>();
  const tensors = new Map<TensorSpec, TorchTensor>();
  const result: TorchStateDict = new Map();
  for (const [name, spec] of specs) {
    let tensor = tensors.get(spec);
    if (!tensor) {
      tensor = buildTensor(spec, raws, storageBytes);
      tensors.set(spec, tensor);
    }
    result.set(name, tensor);
  }
  return result;
}

/** A storage's record must hold exactly the elements its persistent id declares. */
function checkStorageLength({ key, dtype, numel }: StorageRef, byteLength: number): void {
  const size = ELEMENT_SIZE[dtype];
  if (byteLength % size !== 0) {
    throw invalid(
      `storage "${key}" holds ${byteLength} bytes, not a whole number of ${dtype} ` +
        `elements (${size} bytes each)`,
    );
  }
  if (byteLength !== numel * size) {
    throw invalid(
      `storage "${key}" holds ${byteLength / size} ${dtype} elements but the checkpoint ` +
        `says ${numel}`,
    );
  }
}

function buildTensor(
  spec: TensorSpec,
  raws: Map<StorageRef, RawArray>,
  storageBytes: (storage: StorageRef, tensor: string) => Uint8Array | undefined,
): TorchTensor {
  const { name, storage, offset, shape, stride } = spec;
  const { dtype, key } = storage;
  const size = ELEMENT_SIZE[dtype];
  let raw = raws.get(storage);
  if (!raw) {
    const bytes = storageBytes(storage, name);
    if (!bytes) throw invalid(`tensor "${name}": missing storage record "${key}"`);
    checkStorageLength(storage, bytes.length);
    raw = rawArray(bytes, dtype);
    raws.set(storage, raw);
  }
  const numel = shape.reduce((a, b) => a * b, 1);
  if (offset > raw.length) {
    throw invalid(
      `tensor "${name}": storage offset ${offset} is beyond the end of storage "${key}" ` +
        `(${raw.length} elements)`,
    );
  }
  if (numel > 0) {
    const last = shape.reduce((sum, n, d) => sum + (n - 1) * stride[d]!, offset);
    if (last >= raw.length) {
      throw invalid(
        `tensor "${name}": storage shorter than shape × stride needs: shape [${shape}] with ` +
          `stride [${stride}] from offset ${offset} reads element ${last}, but storage ` +
          `"${key}" holds ${raw.length} ${dtype} elements`,
      );
    }
  }
  let data: RawArray;
  if (isContiguous(shape, stride)) {
    data = raw.slice(offset, offset + numel);
  } else {
    // Same constructor as the source, so every element copy is like for like.
    data = new (raw.constructor as new (length: number) => RawArray)(numel);
    gather(raw, data, offset, shape, stride);
  }
  if (data instanceof Uint16Array) {
    return { dtype, shape: [...shape], data: widen(data, dtype as "float16" | "bfloat16") };
  }
  if (dtype === "bool") for (let i = 0; i < data.length; i++) data[i] = data[i] ? 1 : 0;
  return { dtype, shape: [...shape], data };
}

/** Runs `read`, prefixing the message of any error it throws with where it happened. */
function inContext<T>(where: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof PinionError) throw invalid(`${where}: ${error.message}`);
    throw error;
  }
}

// --- the zip layout ---

interface ZipEntry {
  method: number;
  /** uncompressed size, as the central directory declares it */
  size: number;
  compressedSize: number;
  /** offset of the entry's (compressed) data in the file */
  dataStart: number;
  crc32: number;
}

const latin1 = (bytes: Uint8Array) => String.fromCharCode(...bytes);
const lenientUtf8 = new TextDecoder();

/**
 * Reads and checks the zip's central directory before fflate sees the file:
 * fflate trusts the offsets and counts it reads, so a crafted directory could
 * make it read out of bounds, return short data or loop for a long time. We
 * walk the directory the same way fflate does, bound every offset and size,
 * and refuse what torch never writes (zip64, encryption, multiple disks).
 */
function readZipDirectory(bytes: Uint8Array): Map<string, ZipEntry> {
  const corrupt = (why: string) => invalid(`truncated or corrupt zip archive: ${why}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (at: number) => view.getUint16(at, true);
  const u32 = (at: number) => view.getUint32(at, true);

  // The end-of-central-directory record, searched backwards over its comment
  // as fflate does (but over a range no wider than fflate's).
  let eocd = -1;
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - 22 - 0xffff); at--) {
    if (u32(at) === 0x06054b50) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw corrupt("no end-of-central-directory record (is the file cut short?)");
  const count = u16(eocd + 8);
  const directorySize = u32(eocd + 12);
  const directoryStart = u32(eocd + 16);
  if (count === 0xffff || directorySize === 0xffffffff || directoryStart === 0xffffffff) {
    throw invalid("zip64 archives (checkpoints over 4 GiB) are not supported");
  }
  if (u16(eocd + 4) !== 0 || u16(eocd + 6) !== 0 || u16(eocd + 10) !== count) {
    throw invalid("multi-disk zip archives are not supported");
  }
  const directoryEnd = directoryStart + directorySize;
  if (directoryEnd > eocd || count * 46 > directorySize) {
    throw corrupt("the central directory lies outside the file");
  }

  const entries = new Map<string, ZipEntry>();
  let at = directoryStart;
  for (let i = 0; i < count; i++) {
    if (at + 46 > directoryEnd || u32(at) !== 0x02014b50) {
      throw corrupt(`central directory entry ${i} is damaged`);
    }
    const flags = u16(at + 8);
    const method = u16(at + 10);
    const crc32 = u32(at + 16);
    const compressedSize = u32(at + 20);
    const size = u32(at + 24);
    const nameLength = u16(at + 28);
    const next = at + 46 + nameLength + u16(at + 30) + u16(at + 32);
    const local = u32(at + 42);
    if (next > directoryEnd) throw corrupt(`central directory entry ${i} is damaged`);
    // Decoded as fflate decodes names: UTF-8 when flagged, else byte for byte.
    const raw = bytes.subarray(at + 46, at + 46 + nameLength);
    const name = flags & 0x800 ? lenientUtf8.decode(raw) : latin1(raw);
    if (flags & 1) throw invalid(`zip entry "${name}" is encrypted`);
    if (method !== 0 && method !== 8) {
      throw invalid(
        `zip entry "${name}" uses compression method ${method}; only stored and deflate are supported`,
      );
    }
    if (local + 30 > directoryStart || u32(local) !== 0x04034b50) {
      throw corrupt(`the local header of "${name}" is missing`);
    }
    const dataStart = local + 30 + u16(local + 26) + u16(local + 28);
    if (dataStart + compressedSize > directoryStart) {
      throw corrupt(`the data of "${name}" runs past the end of the file`);
    }
    if (method === 0 && compressedSize !== size) {
      throw corrupt(`stored entry "${name}" has two different sizes`);
    }
    if (entries.has(name)) throw invalid(`zip archive has two entries named "${name}"`);
    entries.set(name, { method, size, compressedSize, dataStart, crc32 });
    at = next;
  }
  return entries;
}

let crcTable: Uint32Array | undefined;

function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** Compressed bytes handed to the inflater at a time: each push inflates to at most ~16 MiB. */
const INFLATE_CHUNK = 16 * 1024;

/**
 * Extracts zip entries without trusting their compression. Before anything is
 * inflated, every entry is bounded by `maxTensorBytes`, the deflated ones all
 * together by what is left of the `maxInflatedBytes` budget; then each
 * inflates into a buffer of its declared size and is refused the moment it
 * would run past it, so a lying header cannot inflate more. Stored entries are
 * views of the file (already in memory). Every entry is checked against its CRC.
 */
class ZipExtractor {
  private inflatedBudget: number;

  constructor(
    private readonly bytes: Uint8Array,
    readonly entries: Map<string, ZipEntry>,
    private readonly limits: { maxTensorBytes: number; maxInflatedBytes: number },
  ) {
    this.inflatedBudget = limits.maxInflatedBytes;
  }

  /** The named entries that exist; refuses them all before inflating any if they are too large. */
  extract(names: Iterable<string>): Map<string, Uint8Array> {
    const wanted = new Map<string, ZipEntry>();
    let inflated = 0;
    let largest: [string, ZipEntry] | undefined;
    for (const name of names) {
      const entry = this.entries.get(name);
      if (!entry) continue;
      if (entry.size > this.limits.maxTensorBytes) {
        throw invalid(
          `zip entry "${name}" is ${entry.size} bytes, over the limit (maxTensorBytes)`,
        );
      }
      wanted.set(name, entry);
      if (entry.method === 0) continue;
      inflated += entry.size;
      if (!largest || entry.size > largest[1].size) largest = [name, entry];
    }
    if (largest && inflated > this.inflatedBudget) {
      const [name, entry] = largest;
      const already = this.limits.maxInflatedBytes - this.inflatedBudget;
      throw invalid(
        `zip bomb? the checkpoint's compressed entries declare ${inflated + already} bytes ` +
          `inflated in all (largest: "${name}", ${entry.compressedSize} bytes inflating to ` +
          `${entry.size}), over the limit of ${this.limits.maxInflatedBytes} bytes ` +
          `(maxInflatedBytes); torch.save writes entries uncompressed, so save the ` +
          `checkpoint again with torch.save or raise the limit`,
      );
    }
    this.inflatedBudget -= inflated;
    const result = new Map<string, Uint8Array>();
    for (const [name, entry] of wanted) {
      const data = this.entryData(name, entry);
      if (crc32(data) !== entry.crc32) {
        throw invalid(`corrupt zip archive: entry "${name}" fails its size or CRC check`);
      }
      result.set(name, data);
    }
    return result;
  }

  private entryData(name: string, entry: ZipEntry): Uint8Array {
    const compressed = this.bytes.subarray(entry.dataStart, entry.dataStart + entry.compressedSize);
    if (entry.method === 0) return compressed;
    const out = new Uint8Array(entry.size);
    let written = 0;
    let overrun = false;
    const inflater = new Inflate((chunk) => {
      if (overrun || chunk.length > out.length - written) {
        overrun = true;
        return;
      }
      out.set(chunk, written);
      written += chunk.length;
    });
    let at = 0;
    try {
      do {
        const end = Math.min(at + INFLATE_CHUNK, compressed.length);
        inflater.push(compressed.subarray(at, end), end === compressed.length);
        at = end;
        if (overrun) {
          throw invalid(
            `zip bomb? entry "${name}" inflates to more than the ${entry.size} bytes its ` +
              `header declares; stopped there`,
          );
        }
      } while (at < compressed.length);
    } catch (error) {
      if (error instanceof PinionError) throw error;
      const why = error instanceof Error ? error.message : String(error);
      throw invalid(`corrupt zip archive: entry "${name}" does not inflate (${why})`);
    }
    if (written !== entry.size) {
      throw invalid(`corrupt zip archive: entry "${name}" fails its size or CRC check`);
    }
    return out;
  }
}

function readZipCheckpoint(
  bytes: Uint8Array,
  limits: { maxTensorBytes: number; maxInflatedBytes: number },
): TorchStateDict {
  const { maxTensorBytes } = limits;
  const entries = readZipDirectory(bytes);
  const zip = new ZipExtractor(bytes, entries, limits);
  // torch names the top folder after the file's stem (`archive/` in early versions).
  const pickles = [...entries.keys()].filter((name) => /^[^/]+\/data\.pkl$/.test(name));
  if (pickles.length !== 1) {
    const listing = [...entries.keys()].slice(0, 5).map((name) => JSON.stringify(name));
    throw invalid(
      pickles.length === 0
        ? `not a PyTorch checkpoint: the zip archive has no <folder>/data.pkl entry ` +
            `(it holds ${listing.length ? listing.join(", ") : "no entries"}` +
            `${entries.size > 5 ? ", …" : ""})`
        : `not a PyTorch checkpoint: the zip archive has ${pickles.length} data.pkl entries`,
    );
  }
  const folder = pickles[0]!.slice(0, -"data.pkl".length);
  const head = zip.extract([`${folder}data.pkl`, `${folder}byteorder`]);
  // Written by PyTorch 2.1 and later; absent means little-endian.
  const byteorder = head.get(`${folder}byteorder`);
  if (byteorder && latin1(byteorder).trim() !== "little") {
    throw invalid(`big-endian checkpoints (byteorder "${latin1(byteorder)}") are not supported`);
  }

  const storages = new Map<string, StorageRef>();
  const root = inContext(`${folder}data.pkl`, () =>
    unpickle(head.get(`${folder}data.pkl`)!, {
      persistentLoad: (pid) => storageFromPid(pid, storages, false),
    }),
  );
  const specs = tensorSpecs(root, maxTensorBytes);
  const used = new Set([...specs.values()].map((spec) => spec.storage));
  const record = (storage: StorageRef) => `${folder}data/${storage.key}`;
  // The pickle says how many bytes each storage holds: hold the zip to that before inflating.
  for (const storage of used) {
    const entry = entries.get(record(storage));
    if (entry)
      inContext(`zip entry "${record(storage)}"`, () => checkStorageLength(storage, entry.size));
  }
  const files = zip.extract([...used].map(record));
  return materialise(specs, (storage, tensor) => {
    const data = files.get(record(storage));
    if (!data) {
      throw invalid(
        `tensor "${tensor}": missing storage record "${record(storage)}" in the zip archive`,
      );
    }
    return data;
  });
}

// --- the legacy layout ---

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

/**
 * `_use_new_zipfile_serialization=False`: pickles of the magic number, the
 * protocol version, a sys_info dict, the object, and the sorted storage keys;
 * then per key an int64 element count and the raw little-endian elements.
 */
function readLegacyCheckpoint(bytes: Uint8Array, maxTensorBytes: number): TorchStateDict {
  let offset = 0;
  const next = (what: string, options?: Parameters<typeof readPickle>[2]) =>
    inContext(what, () => {
      const { value, end } = readPickle(bytes, offset, options);
      offset = end;
      return value;
    });

  if (next("legacy checkpoint header") !== LEGACY_MAGIC) {
    throw invalid("not a PyTorch checkpoint: a pickle without torch.save's magic number");
  }
  const protocol = next("legacy checkpoint header");
  if (protocol !== LEGACY_PROTOCOL) {
    throw invalid(`unsupported legacy checkpoint protocol ${String(protocol)}`);
  }
  if (!(next("legacy checkpoint sys_info") instanceof PickleDict)) {
    throw invalid("malformed legacy checkpoint: sys_info is not a dict");
  }
  const storages = new Map<string, StorageRef>();
  const root = next("legacy checkpoint object", {
    persistentLoad: (pid) => storageFromPid(pid, storages, true),
  });
  const specs = tensorSpecs(root, maxTensorBytes);
  const keys = next("legacy checkpoint storage list");
  if (!Array.isArray(keys) || !keys.every((key) => typeof key === "string")) {
    throw invalid("malformed legacy checkpoint: the storage list is not a list of strs");
  }

  const data = new Map<StorageRef, Uint8Array>();
  for (const key of keys as string[]) {
    const storage = storages.get(key);
    if (!storage) throw invalid(`malformed legacy checkpoint: storage "${key}" is never used`);
    if (data.has(storage)) throw invalid(`malformed legacy checkpoint: storage "${key}" twice`);
    if (bytes.length - offset < 8) {
      throw invalid(`truncated legacy checkpoint: storage "${key}" is cut off at offset ${offset}`);
    }
    const count = new DataView(bytes.buffer, bytes.byteOffset + offset, 8).getBigInt64(0, true);
    if (count !== BigInt(storage.numel)) {
      throw invalid(
        `malformed legacy checkpoint: storage "${key}" has ${count} elements, ` +
          `but its record says ${storage.numel}`,
      );
    }
    const length = storage.numel * ELEMENT_SIZE[storage.dtype];
    offset += 8;
    if (length > bytes.length - offset) {
      throw invalid(
        `truncated legacy checkpoint: storage "${key}" needs ${length} bytes at offset ` +
          `${offset}, but the file ends at ${bytes.length}`,
      );
    }
    data.set(storage, bytes.subarray(offset, offset + length));
    offset += length;
  }
  return materialise(specs, (storage) => data.get(storage));
}
