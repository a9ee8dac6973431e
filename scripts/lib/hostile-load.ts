/**
 * @module
 * Good and bad requests mixed, under load: `connections` keep-alive
 * connections (one socket each, `node:http`, so bodies can be sent chunked)
 * each send a fixed rotation of requests for `seconds` — good inferences on
 * both runtimes and metadata reads, among invalid JSON, wrong shapes, unknown
 * models and paths, wrong methods, a 100 KB datatype string, and now and then
 * a body over `MAX_REQUEST_BYTES`, with Content-Length or chunked. Every
 * response is checked against the status its kind must get, and every good
 * answer against what its version answered before the load began; any status
 * of 500 or more, or a connection error, is counted.
 *
 * `npm run bench:hostile` and `test/e2e/hostile-http.test.ts` run this against
 * `wrangler dev`.
 */
import { Agent, request, type OutgoingHttpHeaders } from "node:http";

export interface HostileLoadOptions {
  /** The worker, e.g. `http://127.0.0.1:8787` (demo models seeded). */
  base: string;
  connections: number;
  seconds: number;
  /** The worker's MAX_REQUEST_BYTES (8 MiB by default); oversized bodies are 1 MiB more. */
  maxRequestBytes?: number;
  /** One request in this many, per connection, is an oversized body (half chunked). */
  oversizeEvery?: number;
  /** Per-request timeout, ms (a timeout is an error). */
  timeoutMs?: number;
  /** How many unexpected answers to keep as examples. */
  maxExamples?: number;
}

export interface HostileLoadFigures {
  connections: number;
  durationSeconds: number;
  requests: number;
  /** Responses per status code. */
  statuses: Record<string, number>;
  /** Responses with status >= 500. */
  serverErrors: number;
  /** Connection errors and timeouts (no response at all). */
  errors: number;
  /** Good requests answered 200 with exactly the reference outputs. */
  goodCorrect: number;
  /** Responses whose status or body was not what their kind must get (5xx and errors included). */
  unexpected: number;
  examples: string[];
  /** Requests sent per kind. */
  kinds: Record<string, number>;
  requestsPerSecond: number;
}

interface Probe {
  kind: string;
  method: string;
  path: string;
  /** A string is sent with Content-Length; a number is that many bytes, chunked (1 MiB writes). */
  body?: string | { chunkedBytes: number } | { lengthBytes: number };
  status: number;
  /** For good inferences: the outputs, as JSON, that the answer must carry. */
  outputs?: string;
}

const SIMPLE_INPUT = [
  1.2675323486328125, 0.2432202845811844, 0.511140763759613, 0.5515236854553223, 1.3228834867477417,
  0.63066166639328, 0.10262078046798706, -0.5822293162345886, 0.14123274385929108,
  0.7471047639846802,
];

const inferBody = (name: string, shape: number[], data: unknown[], datatype = "FP32") =>
  JSON.stringify({ inputs: [{ name, shape, datatype, data }] });

const SIMPLE_GOOD = inferBody("input", [1, 10], SIMPLE_INPUT);
const DIGITS_GOOD = inferBody(
  "input",
  [1, 64],
  Array.from({ length: 64 }, (_, i) => (i % 17) / 16),
);

/** The bad requests, each with the status it must get. */
const BAD: Probe[] = [
  {
    kind: "invalid-json",
    method: "POST",
    path: "/v2/models/simple/infer",
    body: "{oops",
    status: 400,
  },
  {
    kind: "wrong-shape",
    method: "POST",
    path: "/v2/models/simple/infer",
    body: inferBody("input", [1, 9], SIMPLE_INPUT.slice(0, 9)),
    status: 400,
  },
  {
    kind: "huge-datatype",
    method: "POST",
    path: "/v2/models/simple/infer",
    body: inferBody("input", [1, 10], SIMPLE_INPUT, "X".repeat(100_000)),
    status: 400,
  },
  {
    kind: "not-oip",
    method: "POST",
    path: "/v2/models/simple/infer",
    body: JSON.stringify({ inputs: "nope" }),
    status: 400,
  },
  {
    kind: "unknown-model",
    method: "POST",
    path: "/v2/models/no-such-model/infer",
    body: SIMPLE_GOOD,
    status: 404,
  },
  {
    kind: "unknown-version",
    method: "POST",
    path: "/v2/models/simple/versions/999/infer",
    body: SIMPLE_GOOD,
    status: 404,
  },
  { kind: "bad-name", method: "GET", path: "/v2/models/..%2Fsecret", status: 400 },
  { kind: "unknown-path", method: "GET", path: "/v2/nowhere", status: 404 },
  { kind: "wrong-method", method: "PUT", path: "/v2/models/simple/infer", body: "{}", status: 405 },
  { kind: "empty-body", method: "POST", path: "/v2/models/simple/infer", body: "", status: 400 },
  {
    kind: "chunked-small",
    method: "POST",
    path: "/v2/models/simple/infer",
    body: { chunkedBytes: 1000 },
    status: 400,
  },
  { kind: "admin-no-token", method: "GET", path: "/admin/models", status: 401 },
];

export async function runHostileLoad(options: HostileLoadOptions): Promise<HostileLoadFigures> {
  const { base, connections, seconds } = options;
  const maxRequestBytes = options.maxRequestBytes ?? 8 * 1024 * 1024;
  const oversizeEvery = options.oversizeEvery ?? 40;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const maxExamples = options.maxExamples ?? 10;
  const url = new URL(base);

  const send = (agent: Agent | undefined, probe: Probe) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const headers: OutgoingHttpHeaders = { "content-type": "application/json" };
      const body = probe.body;
      if (typeof body === "string") headers["content-length"] = Buffer.byteLength(body);
      else if (body && "lengthBytes" in body) headers["content-length"] = body.lengthBytes;
      else if (body) headers["transfer-encoding"] = "chunked";
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          method: probe.method,
          path: probe.path,
          agent,
          headers,
        },
        (res) => {
          const parts: Buffer[] = [];
          res.on("data", (part: Buffer) => parts.push(part));
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString("utf8") }),
          );
          res.on("error", reject);
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
      req.on("error", reject);
      if (typeof body === "string") {
        req.end(body);
        return;
      }
      const total = body ? ("lengthBytes" in body ? body.lengthBytes : body.chunkedBytes) : 0;
      const piece = Buffer.alloc(Math.min(total, 1024 * 1024), 0x20);
      for (let sent = 0; sent < total; sent += piece.byteLength) {
        req.write(piece.subarray(0, Math.min(piece.byteLength, total - sent)));
      }
      req.end();
    });

  // What each good request must answer, asked before the load (twice: it must not change).
  const reference = async (path: string, body: string) => {
    const answers: string[] = [];
    for (let i = 0; i < 2; i++) {
      const { status, text } = await send(undefined, {
        kind: "reference",
        method: "POST",
        path,
        body,
        status: 200,
      });
      if (status !== 200) throw new Error(`POST ${path}: ${status} ${text}`);
      answers.push(JSON.stringify((JSON.parse(text) as { outputs: unknown }).outputs));
    }
    if (answers[0] !== answers[1]) throw new Error(`${path} answers the same input differently`);
    return answers[0]!;
  };
  const simplePath = "/v2/models/simple/versions/1/infer";
  const digitsPath = "/v2/models/digits-mlp/versions/2/infer";
  const good: Probe[] = [
    {
      kind: "good-ort",
      method: "POST",
      path: simplePath,
      body: SIMPLE_GOOD,
      status: 200,
      outputs: await reference(simplePath, SIMPLE_GOOD),
    },
    {
      kind: "good-int8",
      method: "POST",
      path: digitsPath,
      body: DIGITS_GOOD,
      status: 200,
      outputs: await reference(digitsPath, DIGITS_GOOD),
    },
    { kind: "metadata", method: "GET", path: "/v2/models/simple", status: 200 },
  ];
  const oversize = maxRequestBytes + 1024 * 1024;
  const rare: Probe[] = [
    {
      kind: "oversize-chunked",
      method: "POST",
      path: "/v2/models/simple/infer",
      body: { chunkedBytes: oversize },
      status: 413,
    },
    {
      kind: "oversize-length",
      method: "POST",
      path: "/v2/models/simple/infer",
      body: { lengthBytes: oversize },
      status: 413,
    },
  ];
  // Good and bad alternate, so every bad request is followed by a good one on its connection.
  const rotation: Probe[] = BAD.flatMap((bad, i) => [bad, good[i % good.length]!]);

  const statuses: Record<string, number> = {};
  const kinds: Record<string, number> = {};
  const examples: string[] = [];
  let requests = 0;
  let errors = 0;
  let serverErrors = 0;
  let goodCorrect = 0;
  let unexpected = 0;
  const note = (line: string) => {
    unexpected++;
    if (examples.length < maxExamples) examples.push(line);
  };

  const started = Date.now();
  const deadline = started + seconds * 1000;
  const connection = async (index: number) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // Connections start at different points of the rotation, so all kinds run at once.
      for (let i = index; Date.now() < deadline; i++) {
        const probe =
          i % oversizeEvery === oversizeEvery - 1
            ? rare[Math.floor(i / oversizeEvery) % rare.length]!
            : rotation[i % rotation.length]!;
        kinds[probe.kind] = (kinds[probe.kind] ?? 0) + 1;
        let answer: { status: number; text: string };
        try {
          answer = await send(agent, probe);
        } catch (error) {
          errors++;
          note(`${probe.kind}: ${(error as Error).message}`);
          continue;
        }
        requests++;
        statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
        if (answer.status >= 500) serverErrors++;
        if (answer.status !== probe.status) {
          note(
            `${probe.kind}: ${answer.status} (expected ${probe.status}) ${answer.text.slice(0, 200)}`,
          );
          continue;
        }
        if (probe.status !== 200) {
          let error: unknown;
          try {
            error = (JSON.parse(answer.text) as { error?: unknown }).error;
          } catch {
            // checked below
          }
          if (typeof error !== "string")
            note(`${probe.kind}: not a JSON error: ${answer.text.slice(0, 200)}`);
        } else if (probe.outputs !== undefined) {
          const outputs = JSON.stringify((JSON.parse(answer.text) as { outputs: unknown }).outputs);
          if (outputs === probe.outputs) goodCorrect++;
          else note(`${probe.kind}: wrong outputs ${outputs.slice(0, 200)}`);
        }
      }
    } finally {
      agent.destroy();
    }
  };
  await Promise.all(Array.from({ length: connections }, (_, i) => connection(i)));
  const durationSeconds = (Date.now() - started) / 1000;
  return {
    connections,
    durationSeconds,
    requests,
    statuses,
    serverErrors,
    errors,
    goodCorrect,
    unexpected,
    examples,
    kinds,
    requestsPerSecond: requests / durationSeconds,
  };
}
