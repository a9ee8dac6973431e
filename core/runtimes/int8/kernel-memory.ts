/**
 * @module
 * Placing data in a kernels instance's linear memory, for every host of the
 * kernels (the chain executor's `Int8Kernels`, the graph executor): allocate
 * from its bump allocator, refusing what it cannot give, and copy bytes in.
 */
import { invalid } from "../../errors";

/** The part of the kernels' ABI that owns memory. */
export interface KernelMemory {
  memory: WebAssembly.Memory;
  allocate(bytes: number): number;
}

/** A 16-byte aligned block of `bytes` in the module's memory. */
export function allocateIn(abi: KernelMemory, bytes: number): number {
  const ptr = abi.allocate(bytes);
  if (ptr === 0 && bytes > 0) throw invalid(`the int8 kernels could not allocate ${bytes} bytes`);
  return ptr;
}

/** Copies `data` into a fresh block of the module's memory and returns where. */
export function copyIn(abi: KernelMemory, data: ArrayBufferView): number {
  const ptr = allocateIn(abi, data.byteLength);
  new Uint8Array(abi.memory.buffer, ptr, data.byteLength).set(
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  );
  return ptr;
}
