/**
 * @module
 * Reading an object's body in large chunks. A store's body may arrive in
 * small pieces (local R2 hands out 4 KiB at a time), and every piece read from
 * JavaScript costs a turn of the event loop; a BYOB reader fills a buffer of
 * our size instead: workerd's `readAtLeast` natively, a standard BYOB read
 * where only that exists, and a plain reader for streams that are not byte
 * streams (Node's).
 */

/** What workerd adds to the BYOB reader: resolve only once `min` bytes (or the end) are in. */
interface ReadAtLeast {
  readAtLeast(min: number, view: Uint8Array): Promise<ReadableStreamReadResult<Uint8Array>>;
}

/**
 * The body's bytes in order, in chunks of up to `chunkBytes`. A chunk is a
 * view of a buffer reused for the next one: use or copy it before asking for
 * the next chunk.
 */
export async function* readChunks(
  body: ReadableStream<Uint8Array>,
  chunkBytes: number,
): AsyncGenerator<Uint8Array, void, undefined> {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream: read it as it comes.
  }
  if (!byob) {
    const reader = body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        if (value.byteLength > 0) yield value;
      }
    } finally {
      reader.releaseLock();
    }
  }
  const atLeast = (byob as unknown as Partial<ReadAtLeast>).readAtLeast?.bind(byob);
  // Each read transfers the buffer and hands it back in the result's view.
  let buffer = new ArrayBuffer(chunkBytes);
  try {
    for (;;) {
      const view = new Uint8Array(buffer, 0, chunkBytes);
      const { done, value } = atLeast
        ? await atLeast(chunkBytes, view)
        : await byob.read(view as Uint8Array<ArrayBuffer>);
      if (value && value.byteLength > 0) yield value;
      if (done || !value) return;
      buffer = value.buffer as ArrayBuffer;
    }
  } finally {
    byob.releaseLock();
  }
}
