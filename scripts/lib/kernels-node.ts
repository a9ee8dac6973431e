/**
 * @module
 * Loads the int8 kernels in Node from the built `.wasm` (run `npm run asbuild`
 * first; `npm test` and `npm start` do). workerd imports the same file as a module.
 */
import { readFile } from "node:fs/promises";
import { Int8Kernels } from "../../core/runtimes/int8/kernels";

export type KernelBuild = "release" | "debug";

export const kernelsPath = (build: KernelBuild = "release") =>
  new URL(
    `../../build/${build === "release" ? "kernels.wasm" : "kernels.debug.wasm"}`,
    import.meta.url,
  );

/** The compiled kernels module (what workerd imports), for runtimes that instantiate their own. */
export async function loadKernelsModule(
  build: KernelBuild = "release",
): Promise<WebAssembly.Module> {
  const bytes = await readFile(kernelsPath(build)).catch((error: unknown) => {
    throw new Error(`cannot read ${kernelsPath(build).pathname}; run \`npm run asbuild\` first`, {
      cause: error,
    });
  });
  return WebAssembly.compile(new Uint8Array(bytes));
}

export async function loadKernels(build: KernelBuild = "release"): Promise<Int8Kernels> {
  return Int8Kernels.instantiate(await loadKernelsModule(build));
}
