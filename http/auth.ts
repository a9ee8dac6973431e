/**
 * @module
 * Bearer-token auth shared by the admin API and the origin server: Hono's
 * `bearerAuth` with a `verifyToken` that compares in constant time. Every
 * failure (no header, a malformed one, a wrong token) is the same
 * `unauthenticated` error, so a caller learns nothing about which it was.
 */
import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { HTTPException } from "hono/http-exception";
import { unauthenticated } from "../core/errors";

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

/**
 * Requires `Authorization: Bearer <token>` where `verify` accepts the token;
 * otherwise throws `unauthenticated(message)` with `realm` for the challenge.
 */
export function tokenAuth(
  realm: string,
  message: string,
  verify: (token: string, c: Context) => Promise<boolean>,
): MiddlewareHandler {
  const check = bearerAuth({ realm, verifyToken: verify });
  return async (c, next) => {
    let passed = false;
    try {
      await check(c, async () => {
        passed = true;
        await next();
      });
    } catch (error) {
      // bearerAuth refuses with its own 400/401 responses; ours are uniform domain errors.
      if (!passed && error instanceof HTTPException) throw unauthenticated(message, realm);
      throw error;
    }
  };
}
