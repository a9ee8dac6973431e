/**
 * @module
 * onnxruntime-web inside workerd — the one place that knows how.
 *
 * workerd forbids compiling WebAssembly from bytes ("Wasm code generation
 * disallowed by embedder") and has an empty `import.meta.url`, so ORT's default
 * loader (fetch the .wasm next to the script, then `WebAssembly.instantiate(bytes)`)
 * cannot work. Instead:
 *
 * 1. `onnxruntime-web/wasm` is the build with the Emscripten glue embedded (the
 *    package root pulls the WebGPU build; the non-bundled glue does a dynamic
 *    `import()` that workerd refuses).
 * 2. The `.wasm` is imported as a module, so wrangler (and vitest-pool-workers)
 *    hand us a `WebAssembly.Module` compiled ahead of time by the runtime.
 * 3. `env.wasm.wasmBinary` is set to a tiny marker buffer, which makes ORT skip
 *    URL resolution; while ORT initialises, `WebAssembly.instantiate` is wrapped
 *    so that the marker's bytes are swapped for the precompiled module. Every
 *    other call passes through untouched, and the wrapper is removed as soon as
 *    initialisation settles.
 * 4. One thread (workerd has no `Worker` global) and no proxy worker.
 *
 * Initialisation costs ORT 0.3–0.7 s, so it happens on first use, never at module
 * top level (production workers must start within 1 s).
 */
import * as ort from "onnxruntime-web/wasm";
import { awaitShared } from "../core/await-shared";
import ortWasm from "onnxruntime-web/ort-wasm-simd-threaded.wasm";

export type Ort = typeof ort;

/** A recognisable buffer: ORT only passes it back to `WebAssembly.instantiate`. */
const MARKER = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x70, 0x69, 0x6e, 0x69]).buffer;

let ready: Promise<Ort> | undefined;
let initialised: Ort | undefined;

function isMarker(source: unknown): boolean {
  if (source === MARKER) return true;
  return ArrayBuffer.isView(source) && source.buffer === MARKER;
}

/**
 * Returns the initialised ORT namespace. The first call initialises the WASM
 * backend (shared by concurrent callers); a failed initialisation is not cached,
 * so a later call tries again.
 */
export function loadOrt(): Promise<Ort> {
  if (initialised) return Promise.resolve(initialised);
  if (ready) return awaitShared(ready); // started by another request, perhaps
  ready = initialise().then(
    (namespace) => (initialised = namespace),
    (error: unknown) => {
      ready = undefined;
      throw error;
    },
  );
  return ready;
}

async function initialise(): Promise<Ort> {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmBinary = MARKER;
  ort.env.logLevel = "error";

  const original = WebAssembly.instantiate;
  const patched = async function instantiate(
    source: BufferSource | WebAssembly.Module,
    imports?: WebAssembly.Imports,
  ): Promise<unknown> {
    if (isMarker(source)) {
      const instance = await original(ortWasm, imports);
      return { instance, module: ortWasm };
    }
    return original(source as BufferSource, imports);
  } as typeof WebAssembly.instantiate;

  WebAssembly.instantiate = patched;
  try {
    await initBackend();
  } finally {
    if (WebAssembly.instantiate === patched) WebAssembly.instantiate = original;
  }
  return ort;
}

/**
 * ORT has no public "initialise" call: creating a session initialises the backend
 * first and parses the model second. An empty model therefore fails *after* the
 * backend is up; only a failure to bring the backend up is a real error.
 */
async function initBackend(): Promise<void> {
  try {
    await ort.InferenceSession.create(new Uint8Array(0));
  } catch (error) {
    if (/no available backend/i.test(String(error))) throw error;
  }
}
