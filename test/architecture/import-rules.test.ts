/**
 * The import rules of docs/architecture.md, enforced: the core imports neither
 * Hono, nor Workers APIs, nor Node built-ins, so the edge, the origin, the CLI
 * and the compiler can all run it; the shared HTTP layer has no runtime of its
 * own; the origin never reaches into the CLI's scripts; the kernels import nothing;
 * the web console reaches the server only over HTTP.
 */
import { readdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { posix } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const root = new URL("../../", import.meta.url);

interface Rule {
  /** Top-level folders this folder's files may import from (relative imports). */
  mayImport: readonly string[];
  /** Packages (or prefixes ending in "/" or ":") this folder may not import. */
  forbiddenPackages: readonly string[];
  /** Source text that names a Workers-only global. */
  forbiddenGlobals?: RegExp;
  /** False: no package imports at all. */
  packages?: boolean;
}

const NODE = [...builtinModules, "node:"];
const WORKERS = ["cloudflare:", "@cloudflare/"];
const HONO = ["hono", "hono/", "@hono/"];
const WORKERS_GLOBALS =
  /\b(R2Bucket|R2Object\w*|ExecutionContext|DurableObject\w*|DigestStream|HTMLRewriter|caches\.default)\b/;

export const RULES: Record<string, Rule> = {
  core: {
    mayImport: ["core"],
    forbiddenPackages: [...HONO, ...WORKERS, ...NODE],
    forbiddenGlobals: WORKERS_GLOBALS,
  },
  http: {
    mayImport: ["http", "core", "package.json"],
    forbiddenPackages: [...WORKERS, ...NODE],
    forbiddenGlobals: WORKERS_GLOBALS,
  },
  worker: {
    mayImport: ["worker", "http", "core", "console", "build", "package.json"],
    forbiddenPackages: NODE,
  },
  origin: {
    mayImport: ["origin", "http", "core", "convert", "package.json"],
    forbiddenPackages: WORKERS,
  },
  // The web console talks to the server only over HTTP (admin API, OIP), like any other client.
  console: {
    mayImport: ["console"],
    forbiddenPackages: [...WORKERS, ...NODE],
    forbiddenGlobals: WORKERS_GLOBALS,
  },
  convert: { mayImport: ["convert", "core", "build"], forbiddenPackages: [...HONO, ...WORKERS] },
  assembly: { mayImport: ["assembly"], forbiddenPackages: [], packages: false },
};

const isRelative = (spec: string) => spec.startsWith("./") || spec.startsWith("../");
const matches = (spec: string, patterns: readonly string[]) =>
  patterns.some((p) => (p.endsWith("/") || p.endsWith(":") ? spec.startsWith(p) : spec === p));

/** The rule violations in one source file, given its path from the repository root. */
export function violations(path: string, text: string): string[] {
  const folder = path.split("/")[0]!;
  const rule = RULES[folder];
  if (!rule) return [];
  const found: string[] = [];
  const { importedFiles } = ts.preProcessFile(text, true, true);
  for (const { fileName: spec } of importedFiles) {
    if (isRelative(spec)) {
      const target = posix.normalize(posix.join(posix.dirname(path), spec));
      const top = target.split("/")[0]!;
      if (target.startsWith("..") || !rule.mayImport.includes(top)) {
        found.push(
          `${path} imports ${spec}: ${folder}/ may import only ${rule.mayImport.join(", ")}`,
        );
      }
    } else if (rule.packages === false) {
      found.push(`${path} imports the package ${spec}: ${folder}/ imports no packages`);
    } else if (matches(spec, rule.forbiddenPackages)) {
      found.push(`${path} imports ${spec}, which ${folder}/ must not use`);
    }
  }
  const global = rule.forbiddenGlobals?.exec(text.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ""));
  if (global) found.push(`${path} uses the Workers-only ${global[0]}`);
  return found;
}

function sources(folder: string): string[] {
  return readdirSync(new URL(folder, root), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.tsx?$/.test(entry.name))
    .map((entry) => posix.join(posix.relative(root.pathname, entry.parentPath), entry.name));
}

describe("import rules", () => {
  for (const folder of Object.keys(RULES)) {
    it(`${folder}/ keeps its rule`, () => {
      const files = sources(folder);
      expect(files.length).toBeGreaterThan(0);
      const found = files.flatMap((file) =>
        violations(file, readFileSync(new URL(file, root), "utf8")),
      );
      expect(found).toEqual([]);
    });
  }

  it("flags Hono, Workers and Node imports in the core", () => {
    expect(violations("core/serving/x.ts", `import { Hono } from "hono";`)).toHaveLength(1);
    expect(
      violations("core/serving/x.ts", `import type { Context } from "hono/tiny";`),
    ).toHaveLength(1);
    expect(
      violations("core/serving/x.ts", `import { env } from "cloudflare:workers";`),
    ).toHaveLength(1);
    expect(
      violations("core/serving/x.ts", `import { readFile } from "node:fs/promises";`),
    ).toHaveLength(1);
    expect(violations("core/serving/x.ts", `const fs = await import("fs");`)).toHaveLength(1);
    expect(violations("core/serving/x.ts", `import { app } from "../../http/app";`)).toHaveLength(
      1,
    );
    expect(violations("core/serving/x.ts", `export function f(b: R2Bucket) {}`)).toHaveLength(1);
    expect(
      violations(
        "core/serving/x.ts",
        `import { z } from "zod";\nimport { a } from "../registry/a";`,
      ),
    ).toEqual([]);
  });

  it("keeps the origin out of the CLI's scripts and the kernels free of imports", () => {
    expect(
      violations("origin/stores/x.ts", `import { a } from "../../scripts/lib/a";`),
    ).toHaveLength(1);
    expect(violations("assembly/x.ts", `import { a } from "as-bignum";`)).toHaveLength(1);
    expect(violations("assembly/x.ts", `import { a } from "./gemm";`)).toEqual([]);
  });

  it("keeps the console a client of the HTTP API", () => {
    expect(
      violations(
        "console/client/x.tsx",
        `import type { AuditRecord } from "../../core/registry/promotion";`,
      ),
    ).toHaveLength(1);
    expect(
      violations("console/client/x.tsx", `import { adminRoutes } from "../../http/admin";`),
    ).toHaveLength(1);
    expect(
      violations("console/x.tsx", `import { readFile } from "node:fs/promises";`),
    ).toHaveLength(1);
    expect(
      violations(
        "console/client/x.tsx",
        `import uPlot from "uplot";\nimport { render } from "hono/jsx/dom";\nimport { a } from "../shell";`,
      ),
    ).toEqual([]);
  });
});
