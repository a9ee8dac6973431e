/**
 * @module
 * Builds the console's client (`console/client/`) into Workers static assets:
 * `build/console-assets/console/app.js` (one minified ES module: the app, Hono's
 * DOM renderer and uPlot) and `app.css` (uPlot's stylesheet and ours). Runs
 * after `npm run asbuild` (`postasbuild`), so `npm start`, `npm test` and
 * `npm run deploy` always serve a fresh build. `--check` prints the gzip sizes.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const root = new URL("../", import.meta.url);
export const CONSOLE_ASSETS = new URL("build/console-assets/", root);
const outdir = new URL("console/", CONSOLE_ASSETS);

export async function buildConsole(): Promise<{ file: string; bytes: number; gzip: number }[]> {
  await mkdir(outdir, { recursive: true });
  await build({
    entryPoints: [new URL("console/client/main.tsx", root).pathname],
    outfile: new URL("app.js", outdir).pathname,
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    jsx: "automatic",
    jsxImportSource: "hono/jsx/dom",
    legalComments: "none",
    logLevel: "warning",
  });
  const require = createRequire(import.meta.url);
  const css = [
    await readFile(require.resolve("uplot/dist/uPlot.min.css"), "utf8"),
    await readFile(new URL("console/client/console.css", root), "utf8"),
  ].join("\n");
  await writeFile(new URL("app.css", outdir), css);
  const sizes = [];
  for (const file of ["app.js", "app.css"]) {
    const bytes = await readFile(new URL(file, outdir));
    sizes.push({ file, bytes: bytes.byteLength, gzip: gzipSync(bytes).byteLength });
  }
  return sizes;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const { file, bytes, gzip } of await buildConsole()) {
    console.log(
      `console/${file}: ${(bytes / 1024).toFixed(1)} KiB, ${(gzip / 1024).toFixed(1)} KiB gzip`,
    );
  }
}
