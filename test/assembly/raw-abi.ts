/**
 * @module
 * The built kernels module's flat ABI, raw, for tests of kernels the host
 * wrappers (core/runtimes/int8) do not cover: instantiate it, copy arrays in,
 * read floats out, and free per-case scratch.
 */
import { readFileSync } from "node:fs";
import { kernelsPath } from "../../scripts/lib/kernels-node";

/** What every raw ABI has: the module's memory and its bump allocator. */
export interface RawMemory {
  memory: WebAssembly.Memory;
  allocate(bytes: number): number;
  mark(): number;
  release(to: number): void;
}

/** A fresh instance of the release build, its exports typed as `T`. */
export async function instantiateRaw<T extends RawMemory>(): Promise<T> {
  const module = await WebAssembly.compile(readFileSync(kernelsPath("release")));
  return (await WebAssembly.instantiate(module, {})).exports as unknown as T;
}

/** Copies `data` into the module's memory and returns where. */
export function put(k: RawMemory, data: ArrayBufferView): number {
  const ptr = k.allocate(Math.max(1, data.byteLength));
  new Uint8Array(k.memory.buffer, ptr, data.byteLength).set(
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  );
  return ptr;
}

/** A copy of `n` floats at `ptr`. */
export const floats = (k: RawMemory, ptr: number, n: number) =>
  new Float32Array(k.memory.buffer, ptr, n).slice();

/** A float array's bit patterns, for bit-exact comparisons. */
export const bits = (a: Float32Array) =>
  Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** Runs `fn` between a mark and its release, so cases do not pile up in memory. */
export function scoped<T>(k: RawMemory, fn: () => T): T {
  const m = k.mark();
  try {
    return fn();
  } finally {
    k.release(m);
  }
}
