/**
 * @module
 * Validates responses against the Open Inference Protocol's OpenAPI document
 * (`spec/open_inference_rest.yaml`) with a maintained JSON Schema validator
 * (`@cfworker/json-schema`, which needs no code generation, so it runs inside
 * workerd). This module only loads the document and picks the operation and
 * response a request maps to; the validator checks the bodies.
 *
 * The loader normalises what validators cannot read or what Pinion documents
 * as a deviation (docs/api.md, "OpenAPI document"):
 * - `${MODEL_NAME}` path templates become `{MODEL_NAME}`, and `x-…` keys
 *   (examples, which a JSON Schema validator would read as schemas) are dropped;
 * - trailing slashes do not matter (`/v2/` is also `/v2`);
 * - `/aliases/{alias}` paths are checked as the `/versions/{version}` ones, and
 *   unversioned model paths as the versioned ones (the document lists only those);
 * - error statuses the document does not declare for an operation (404, 405,
 *   409, 413, 415, 422, 501, 502, 503, 504) must carry the document's error
 *   object, `{"error": string}`, like its declared 400;
 * - `GET /v2/health/ready` and `/ready` may answer 503 with the same body shape
 *   as their 200 (`ready: false`).
 * Paths the document does not describe (Triton's extensions, the admin API)
 * are not checked here.
 */
import { Validator, type Schema } from "@cfworker/json-schema";
import { expect } from "vitest";
import { parse } from "yaml";
import specText from "../../spec/open_inference_rest.yaml?raw";
import { api, postJson } from "./helpers";

interface Operation {
  responses: Record<string, { content?: { "application/json"?: { schema?: Schema } } }>;
}
interface OpenApiDocument {
  paths: Record<string, Record<string, Operation | unknown>>;
  components: { schemas: Record<string, Schema> };
}

/** Drops `x-…` extension keys: their examples (`id: '42'`) would read as schema ids. */
function withoutExtensions(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutExtensions);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => !key.startsWith("x-"))
      .map(([key, inner]) => [key, withoutExtensions(inner)]),
  );
}

const document = withoutExtensions(parse(specText)) as OpenApiDocument;

/** `${NAME}` → `{NAME}`, then a pattern matching concrete paths, trailing slash optional. */
function templatePattern(template: string): RegExp {
  const normalised = template.replace(/\$\{(\w+)\}/g, "{$1}").replace(/\/+$/, "");
  const source = normalised
    .split(/\{\w+\}/)
    .map((part) => part.replace(/[.*+?^$()|[\]\\]/g, "\\$&"))
    .join("[^/]+");
  return new RegExp(`^${source}/?$`);
}

const operations = Object.entries(document.paths).map(([template, item]) => ({
  pattern: templatePattern(template),
  item: item as Record<string, Operation>,
}));

/** The path as the document spells it: aliases as versions, unversioned model paths versioned. */
function documentPath(path: string): string {
  const aliased = path.replace(/^(\/v2\/models\/[^/]+)\/aliases\/([^/]+)/, "$1/versions/$2");
  return aliased.replace(/^(\/v2\/models\/[^/]+)(\/ready|\/infer)?\/?$/, (whole, model, rest) =>
    /\/versions\//.test(whole) ? whole : `${model}/versions/any${rest ?? ""}`,
  );
}

const ERROR_SCHEMA: Schema = {
  type: "object",
  properties: { error: { type: "string" } },
  required: ["error"],
};
const UNDECLARED_ERRORS = new Set([404, 405, 409, 413, 415, 422, 501, 502, 503, 504]);

/** The response schema for a request, or null when the document does not describe the path. */
function responseSchema(method: string, path: string, status: number): Schema | null {
  const concrete = documentPath(path);
  const found = operations.find((op) => op.pattern.test(concrete));
  const operation = found?.item[method.toLowerCase()];
  if (!operation) return null;
  const entry = operation.responses[String(status)];
  if (entry) return entry.content?.["application/json"]?.schema ?? null; // declared, maybe bodiless
  const ok = operation.responses["200"]?.content?.["application/json"]?.schema;
  if (status === 503 && /\/ready$/.test(concrete) && ok) return ok;
  if (UNDECLARED_ERRORS.has(status) || status === 400) {
    return operation.responses["400"]?.content?.["application/json"]?.schema ?? ERROR_SCHEMA;
  }
  throw new Error(
    `${method} ${path}: status ${status} is neither declared nor a documented deviation`,
  );
}

/** How many responses were checked against the document (tests assert it grows). */
export let validatedResponses = 0;

/** Fails the test when a response to `method path` does not match the OpenAPI document. */
export async function expectConformant(
  method: string,
  path: string,
  response: Response,
): Promise<void> {
  if (method === "HEAD") return;
  const pathname = new URL(path, "http://pinion.test").pathname;
  const schema = responseSchema(method, pathname, response.status);
  if (schema === null) return;
  expect(response.headers.get("content-type"), `${method} ${path}`).toMatch(/^application\/json/);
  const body: unknown = await response.clone().json();
  const root = { ...schema, components: document.components } as Schema;
  const result = new Validator(root, "4", false).validate(body);
  expect(
    result.valid,
    `${method} ${path} → ${response.status} does not match the OpenAPI document: ${JSON.stringify(result.errors.slice(0, 3))}`,
  ).toBe(true);
  validatedResponses++;
}

/** `api` from the helpers, with every response validated against the document. */
export async function validatedApi(path: string, init?: RequestInit): Promise<Response> {
  const response = await api(path, init);
  await expectConformant(init?.method ?? "GET", path, response);
  return response;
}

/** `postJson` from the helpers, with the response validated against the document. */
export async function validatedPostJson(
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  const response = await postJson(path, body, headers);
  await expectConformant("POST", path, response);
  return response;
}
