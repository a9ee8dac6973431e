/**
 * @module
 * Structured logs: one JSON object per line, `level` and `event` first, like
 * the worker's `console.error(JSON.stringify(…))` lines. Info goes to stdout,
 * warnings and errors to stderr. Servers take a `Logger`, so tests can keep
 * what was logged.
 */

export type LogLevel = "info" | "warn" | "error";

export interface LogEntry {
  level: LogLevel;
  event: string;
  [field: string]: unknown;
}

export type Logger = (entry: LogEntry) => void;

export const jsonLogger: Logger = (entry) => {
  const line = JSON.stringify({ time: new Date().toISOString(), ...entry });
  if (entry.level === "info") process.stdout.write(`${line}\n`);
  else process.stderr.write(`${line}\n`);
};

/** W3C trace context: `00-<trace id>-<parent span id>-<flags>`; anything else is ignored. */
export function parseTraceparent(
  header: string | undefined,
): { traceId: string; parentId: string; sampled: boolean } | undefined {
  const match = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(
    header?.trim() ?? "",
  );
  if (!match || match[1] === "ff") return undefined;
  const [, , traceId, parentId, flags] = match;
  if (/^0+$/.test(traceId!) || /^0+$/.test(parentId!)) return undefined;
  return { traceId: traceId!, parentId: parentId!, sampled: (parseInt(flags!, 16) & 1) === 1 };
}
