/**
 * @module
 * Zip bombs for the checkpoint reader's tests, built in memory rather than
 * committed: a raw DEFLATE stream of zeros that inflates about 1000-fold (so
 * about 1 MB becomes 1 GiB) without ever compressing that much, and a zip
 * writer that takes entries already compressed, with whatever sizes and CRC
 * their headers should declare.
 */
import { constants, deflateRawSync } from "node:zlib";

const MiB = 1024 ** 2;

/**
 * Raw DEFLATE data inflating to `mebibytes` MiB of zeros. A full flush ends
 * zlib's output for one MiB byte-aligned and refers back into nothing before
 * it, so that piece can be repeated; an empty final block ends the stream.
 */
export function deflatedZeros(mebibytes: number): Uint8Array {
  const block = deflateRawSync(new Uint8Array(MiB), {
    level: 9,
    finishFlush: constants.Z_FULL_FLUSH,
  });
  const end = Uint8Array.of(0x03, 0x00); // final, fixed Huffman, end-of-block
  const out = new Uint8Array(block.length * mebibytes + end.length);
  for (let i = 0; i < mebibytes; i++) out.set(block, i * block.length);
  out.set(end, block.length * mebibytes);
  return out;
}

let table: Uint32Array | undefined;
const crcTable = () => {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  return table;
};

export function crc32(bytes: Uint8Array): number {
  const t = crcTable();
  let crc = 0xffffffff;
  for (const byte of bytes) crc = t[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * CRC-32 of `count` zero bytes without touching them: one zero byte is a
 * linear map on the CRC register, raised to the count'th power by squaring.
 */
export function crc32OfZeros(count: number): number {
  const t = crcTable();
  const apply = (matrix: number[], vector: number) => {
    let result = 0;
    for (let i = 0; vector; i++, vector >>>= 1) if (vector & 1) result ^= matrix[i]!;
    return result >>> 0;
  };
  let matrix = Array.from({ length: 32 }, (_, i) => {
    const s = (1 << i) >>> 0;
    return (t[s & 0xff]! ^ (s >>> 8)) >>> 0;
  });
  let register = 0xffffffff;
  for (let n = count; n > 0; n = Math.floor(n / 2)) {
    if (n % 2) register = apply(matrix, register);
    matrix = matrix.map((column) => apply(matrix, column));
  }
  return (register ^ 0xffffffff) >>> 0;
}

export interface RawZipEntry {
  name: string;
  /** the bytes as stored in the archive (compressed for method 8) */
  data: Uint8Array;
  /** 0 stored, 8 deflate */
  method: 0 | 8;
  /** the uncompressed size the headers declare */
  size: number;
  crc32: number;
}

/** A zip archive of the given entries, headers saying exactly what the entries say. */
export function rawZip(entries: RawZipEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const directory: Uint8Array[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = new TextEncoder().encode(entry.name);
    const local = new Uint8Array(30 + name.length);
    const l = new DataView(local.buffer);
    l.setUint32(0, 0x04034b50, true);
    l.setUint16(4, 20, true);
    l.setUint16(8, entry.method, true);
    l.setUint32(14, entry.crc32, true);
    l.setUint32(18, entry.data.length, true);
    l.setUint32(22, entry.size, true);
    l.setUint16(26, name.length, true);
    local.set(name, 30);
    const central = new Uint8Array(46 + name.length);
    const c = new DataView(central.buffer);
    c.setUint32(0, 0x02014b50, true);
    c.setUint16(4, 20, true);
    c.setUint16(6, 20, true);
    c.setUint16(10, entry.method, true);
    c.setUint32(16, entry.crc32, true);
    c.setUint32(20, entry.data.length, true);
    c.setUint32(24, entry.size, true);
    c.setUint16(28, name.length, true);
    c.setUint32(42, offset, true);
    central.set(name, 46);
    parts.push(local, entry.data);
    directory.push(central);
    offset += local.length + entry.data.length;
  }
  const directorySize = directory.reduce((n, d) => n + d.length, 0);
  const eocd = new Uint8Array(22);
  const e = new DataView(eocd.buffer);
  e.setUint32(0, 0x06054b50, true);
  e.setUint16(8, entries.length, true);
  e.setUint16(10, entries.length, true);
  e.setUint32(12, directorySize, true);
  e.setUint32(16, offset, true);
  const all = [...parts, ...directory, eocd];
  const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of all) (out.set(part, at), (at += part.length));
  return out;
}

/** A stored (uncompressed) entry with its true size and CRC. */
export const storedEntry = (name: string, data: Uint8Array): RawZipEntry => ({
  name,
  data,
  method: 0,
  size: data.length,
  crc32: crc32(data),
});
