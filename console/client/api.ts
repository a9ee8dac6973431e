/**
 * The console's only way to the server: the admin API and the OIP endpoints
 * over fetch, with the admin token from this tab's sessionStorage as a bearer
 * token. Errors keep the server's own words (`{"error": …}`) and status.
 */
import type { Json } from "./types";

const TOKEN_KEY = "pinion.console.token";

export const getToken = (): string | null => sessionStorage.getItem(TOKEN_KEY);
export const setToken = (token: string): void => sessionStorage.setItem(TOKEN_KEY, token);
export const clearToken = (): void => sessionStorage.removeItem(TOKEN_KEY);

/** An answer other than 2xx: the status and the server's `error` text, plus its other fields. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: Record<string, Json>,
  ) {
    super(message);
  }
}

/** Listeners told when the server refuses the stored token (401), so the app can sign out. */
const refusedListeners = new Set<() => void>();
export const onTokenRefused = (listener: () => void): (() => void) => {
  refusedListeners.add(listener);
  return () => refusedListeners.delete(listener);
};

async function errorOf(response: Response): Promise<ApiError> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as Record<string, Json>;
    const message = typeof body.error === "string" ? body.error : text;
    return new ApiError(response.status, message, body);
  } catch {
    return new ApiError(response.status, text || response.statusText, {});
  }
}

/** Calls `/admin/…` with the given (or stored) token; JSON in, JSON out. */
export async function admin<T>(
  path: string,
  init: { method?: string; body?: unknown; token?: string } = {},
): Promise<T> {
  const token = init.token ?? getToken() ?? "";
  const response = await fetch(`/admin/${path}`, {
    method: init.method ?? "GET",
    headers: {
      authorization: `Bearer ${token}`,
      ...(init.body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && init.token === undefined) refusedListeners.forEach((l) => l());
    throw error;
  }
  return (await response.json()) as T;
}

/** GETs an OIP path (`/v2/…`), JSON. */
export async function oip<T>(path: string): Promise<T> {
  const response = await fetch(`/v2/${path}`);
  if (!response.ok) throw await errorOf(response);
  return (await response.json()) as T;
}

/** What an inference call returned: the body, the headers that say what ran, the timing. */
export interface InferResult {
  status: number;
  body: Json;
  headers: Record<string, string>;
  milliseconds: number;
}

const SHOWN_HEADERS = [
  "x-pinion-model",
  "x-pinion-runtime",
  "x-pinion-alias",
  "x-request-id",
  "server-timing",
];

export function infer(path: string, request: unknown): Promise<InferResult> {
  return post(`/v2/${path}/infer`, request);
}

/** `POST …/explain`: the same request with `parameters` saying how (docs/explain.md). */
export function explain(path: string, request: unknown): Promise<InferResult> {
  return post(`/v2/${path}/explain`, request);
}

async function post(url: string, request: unknown): Promise<InferResult> {
  const started = performance.now();
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request),
  });
  const text = await response.text();
  const milliseconds = performance.now() - started;
  const headers: Record<string, string> = {};
  for (const name of SHOWN_HEADERS) {
    const value = response.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  let body: Json;
  try {
    body = JSON.parse(text) as Json;
  } catch {
    body = text;
  }
  return { status: response.status, body, headers, milliseconds };
}

export const path = (...parts: (string | number)[]): string =>
  parts.map((p) => encodeURIComponent(String(p))).join("/");
