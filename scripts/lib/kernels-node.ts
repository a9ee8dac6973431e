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

export async function loadKernels(build: KernelBuild = "release"): Promise<Int8Kernels> {
  const bytes = await readFile(kernelsPath(build)).catch((error: unknown) => {
    throw new Error(`cannot read ${kernelsPath(build).pathname}; run \`npm run asbuild\` first`, {
      cause: error,
    });
  });
  return Int8Kernels.instantiate(await WebAssembly.compile(new Uint8Array(bytes)));
}
