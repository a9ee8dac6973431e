/** Small shared pieces: loading data, showing errors as the API gave them, page headings. */
import { useCallback, useEffect, useRef, useState } from "hono/jsx/dom";
import { ApiError } from "./api";

export interface Loaded<T> {
  data: T | undefined;
  error: Error | undefined;
  reload: () => void;
}

/** Runs `load` when `deps` change (and on `reload`), keeping the last answer or error. */
export function useLoad<T>(load: () => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [round, setRound] = useState(0);
  useEffect(() => {
    let current = true;
    load().then(
      (value) => {
        if (!current) return;
        setData(value);
        setError(undefined);
      },
      (reason: unknown) => {
        if (!current) return;
        setError(reason instanceof Error ? reason : new Error(String(reason)));
      },
    );
    return () => {
      current = false;
    };
  }, [...deps, round]);
  const reload = useCallback(() => setRound((n) => n + 1), []);
  return { data, error, reload };
}

/** An API error as the server worded it, with its status; announced to screen readers. */
export function ErrorBox({ error, title }: { error: Error | undefined; title?: string }) {
  if (!error) return null;
  const status = error instanceof ApiError ? `${error.status} ` : "";
  return (
    <div class="error" role="alert" data-testid="error">
      <strong>
        {title ?? "Request failed"}
        {status ? ` (${status.trim()})` : ""}:
      </strong>{" "}
      {error.message}
    </div>
  );
}

export const Loading = ({ what }: { what: string }) => (
  <p class="muted" role="status">
    Loading {what}…
  </p>
);

/** The page's heading; focused on navigation so screen readers announce the new page. */
export function PageHeading({ children }: { children: unknown }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    ref.current?.focus();
  }, []);
  return (
    <h1 tabIndex={-1} ref={ref}>
      {children}
    </h1>
  );
}

/** A table that scrolls sideways on a narrow screen, reachable by keyboard. */
export function TableScroll({ label, children }: { label: string; children: unknown }) {
  return (
    <div class="table-scroll" tabIndex={0} role="region" aria-label={label}>
      {children}
    </div>
  );
}
