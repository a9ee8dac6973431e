/**
 * @module
 * Bearer-token checks shared by the admin API and the origin server: the token
 * from an `Authorization: Bearer …` header, compared in constant time.
 */

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** Compares two secrets without leaking where they differ (or their lengths). */
export async function secretsEqual(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([digest(a), digest(b)]);
  let difference = 0;
  for (let i = 0; i < x.length; i++) difference |= x[i]! ^ y[i]!;
  return difference === 0;
}

/** True when the `Authorization` header carries exactly `expected` as a bearer token. */
export async function bearerMatches(
  header: string | undefined,
  expected: string,
): Promise<boolean> {
  const match = /^Bearer\s+(.+)$/i.exec(header ?? "");
  return match !== null && (await secretsEqual(match[1]!.trim(), expected));
}
