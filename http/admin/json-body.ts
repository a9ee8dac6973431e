/**
 * @module
 * The admin API's JSON request bodies, checked against a zod schema, with a
 * message that names the first field that is wrong.
 */
import type { Context } from "hono";
import type { z } from "zod";
import { echo, invalid } from "../../core/errors";
import { limitBody } from "../middleware";

/** Admin JSON requests are small; upload parts stream and carry their own checks. */
export const smallJson = limitBody(() => 1024 * 1024);

export async function jsonBody<T>(c: Context, schema: z.ZodType<T>): Promise<T> {
  let json: unknown;
  try {
    json = await c.req.json();
  } catch {
    throw invalid("request body is not valid JSON");
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw invalid(`${echo(issue.path.join(".")) || "body"}: ${issue.message}`);
  }
  return parsed.data;
}
