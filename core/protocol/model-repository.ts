/**
 * @module
 * Triton's model repository extension, as Pinion answers it. The repository is
 * the registry: every published version is immutable and always available, so
 * every version is listed `READY`, `load` only warms this isolate's copy, and
 * `unload` is refused (see docs/api.md).
 */
import { z } from "zod";
import { invalid } from "../errors";
import type { AliasDocument } from "../registry/aliases";

/** One row of `POST /v2/repository/index`. */
export interface RepositoryIndexEntry {
  name: string;
  version: string;
  /** Always `READY`: a published version can always be served. */
  state: "READY";
  reason: string;
  /** Pinion's addition: the aliases whose split includes this version (absent when none). */
  aliases?: string[];
}

const indexRequestSchema = z.object({ ready: z.boolean().optional() }).strict();
const loadRequestSchema = z
  .object({ parameters: z.record(z.string(), z.unknown()).optional() })
  .strict();

/** Parses a JSON body that may be empty (tritonclient sends none). */
function parseOptional<T>(text: string, schema: z.ZodType<T>, what: string): T {
  if (text.trim() === "") return schema.parse({});
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw invalid(`${what} is not valid JSON: ${(error as Error).message}`);
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = issue.path.length ? issue.path.join(".") : "body";
    throw invalid(`invalid ${what}: ${path}: ${issue.message}`);
  }
  return result.data;
}

/** `{"ready": bool}`, optional; every listed version is ready, so it changes nothing. */
export function parseIndexRequest(text: string): { ready?: boolean } {
  return parseOptional(text, indexRequestSchema, "repository index request");
}

/**
 * A load request: an empty body or no parameters. Triton's `config` and
 * `file:` parameters replace a model's files; Pinion's versions are published
 * with `pinion publish` and never replaced, so those are refused.
 */
export function parseLoadRequest(text: string): void {
  const request = parseOptional(text, loadRequestSchema, "repository load request");
  const names = Object.keys(request.parameters ?? {});
  if (names.length > 0) {
    throw invalid(
      `load parameters are not supported (got ${names
        .slice(0, 3)
        .map((name) => JSON.stringify(name.slice(0, 40)))
        .join(", ")}): versions are published with 'pinion publish' and never replaced`,
    );
  }
}

/** The index rows of one model: its versions, oldest first, each with the aliases that route to it. */
export function indexEntries(
  name: string,
  versions: readonly number[],
  aliases: AliasDocument,
): RepositoryIndexEntry[] {
  return versions.map((version) => {
    const routing = Object.entries(aliases.aliases)
      .filter(([, entry]) => entry.split.some((part) => part.version === version))
      .map(([alias]) => alias)
      .sort();
    return {
      name,
      version: String(version),
      state: "READY",
      reason: "",
      ...(routing.length > 0 ? { aliases: routing } : {}),
    };
  });
}
