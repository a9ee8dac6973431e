/**
 * `packColumns` (assembly/gemm.ts), which every cold load of an int8 plan runs
 * over megabytes of weights: its SIMD path (full 16-column panels, two rows at
 * a time) and its scalar edges (an odd last row, K's padding, a last panel of
 * 8 columns, columns past N) give exactly the layout the GEMM reads, described
 * here independently of the kernel: panels of 16 columns (N padded to a
 * multiple of 8), inside a panel k-pair by k-pair (K padded to a multiple of
 * 8), each column's two values side by side as i16, minus the zero point.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { Random } from "./random";
import { instantiateRaw, put, scoped, type RawMemory } from "./raw-abi";

interface Pack extends RawMemory {
  packColumns(b: number, k: number, n: number, signed: number, zp: number, perColumn: number, out: number): void;
  packedBytes(k: number, n: number): number;
}

let kernels: Pack;
beforeAll(async () => {
  kernels = await instantiateRaw<Pack>();
});

/** The layout, written from its description: where (row i, column c) lands, in i16 units. */
function referencePack(
  b: Uint8Array,
  k: number,
  n: number,
  signed: boolean,
  zeroPoints: Uint8Array,
  perColumn: boolean,
): Int16Array {
  const kp = Math.ceil(k / 8) * 8;
  const np = Math.ceil(n / 8) * 8;
  const out = new Int16Array(kp * np);
  const byte = (v: number) => (signed ? (v << 24) >> 24 : v);
  for (let c = 0; c < np; c++) {
    const panel = Math.floor(c / 16) * 16;
    const width = Math.min(16, np - panel);
    for (let i = 0; i < kp; i++) {
      const at = panel * kp + Math.floor(i / 2) * width * 2 + (c - panel) * 2 + (i % 2);
      const zp = c < n ? byte(zeroPoints[perColumn ? c : 0]!) : 0;
      out[at] = c < n && i < k ? byte(b[i * n + c]!) - zp : 0;
    }
  }
  return out;
}

describe("packColumns", () => {
  const cases: [k: number, n: number, signed: boolean, perColumn: boolean][] = [
    [384, 1536, true, false], // a MiniLM feed-forward weight: all SIMD
    [1536, 384, true, false],
    [33, 40, true, false], // odd K, a last panel of 8 columns
    [7, 17, true, true], // K below one pair of rows past a pair, N padded to 24
    [64, 48, false, true], // unsigned bytes, a zero point per column
    [1, 16, false, false],
    [129, 131, true, true],
  ];
  it.each(cases)("K %i × N %i (signed %s, zero point per column %s)", (k, n, signed, perColumn) => {
    const random = new Random(k * 7919 + n);
    const b = Uint8Array.from({ length: k * n }, () => random.int(0, 255));
    const zeroPoints = Uint8Array.from({ length: perColumn ? n : 1 }, () => random.int(0, 255));
    const expected = referencePack(b, k, n, signed, zeroPoints, perColumn);
    const actual = scoped(kernels, () => {
      const bytes = kernels.packedBytes(k, n);
      expect(bytes).toBe(expected.byteLength);
      const out = kernels.allocate(bytes);
      // Garbage where the kernel must write zeros (padding) shows up as a mismatch.
      new Uint8Array(kernels.memory.buffer, out, bytes).fill(0xa5);
      kernels.packColumns(put(kernels, b), k, n, signed ? 1 : 0, put(kernels, zeroPoints), perColumn ? 1 : 0, out);
      return new Int16Array(kernels.memory.buffer, out, bytes / 2).slice();
    });
    expect(Array.from(actual)).toEqual(Array.from(expected));
  });
});
