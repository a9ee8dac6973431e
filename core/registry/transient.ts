/**
 * @module
 * Retrying an object-store operation that failed for a passing reason. R2
 * answers "We encountered an internal error" (10001) now and then and asks
 * callers to retry; its local emulation, shared by every process that opens
 * one persistence directory (`wrangler dev`, `pinion`, the origin), fails an
 * operation as a bare 500, "Unspecified error (0)", when another holds its
 * SQLite metadata. Either way nothing was written (a put commits its metadata
 * in one transaction), and every value the registry puts is bytes it still
 * holds, so the operation is tried again after a short, jittered wait.
 */

const TRANSIENT = /Unspecified error \(0\)|\(10001\)|internal error; please try again/i;

export function isTransient(error: unknown): boolean {
  return TRANSIENT.test(String(error));
}

export async function retryTransient<T>(operation: () => Promise<T>, attempts = 10): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (attempt >= attempts || !isTransient(error)) throw error;
      await new Promise((r) => setTimeout(r, 10 * 2 ** attempt * (0.5 + Math.random())));
    }
  }
}
