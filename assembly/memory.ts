/**
 * Linear-memory bump allocator for buffers the host fills and reads. Nothing
 * managed is ever allocated (stub runtime), so the region above `__heap_base`
 * is ours. Hosts take a `mark()` before per-call scratch and `release(mark)`
 * after, while long-lived buffers (packed weights) stay below the mark.
 */

const ALIGN: usize = 16;

let top: usize = 0;

function start(): usize {
  return (__heap_base + ALIGN - 1) & ~(ALIGN - 1);
}

/** Returns a 16-byte aligned block of `bytes`, or 0 when memory cannot grow. */
export function allocate(bytes: usize): usize {
  if (top == 0) top = start();
  const ptr = top;
  const end = (ptr + bytes + ALIGN - 1) & ~(ALIGN - 1);
  if (end < ptr) return 0; // wrapped: absurd request
  const have = (<usize>memory.size()) << 16;
  if (end > have) {
    const pages = <i32>((end - have + 0xffff) >> 16);
    if (memory.grow(pages) < 0) return 0;
  }
  top = end;
  return ptr;
}

/** The current top; everything allocated after it is freed by `release(mark)`. */
export function mark(): usize {
  if (top == 0) top = start();
  return top;
}

export function release(to: usize): void {
  if (to >= start() && to <= top) top = to;
}
