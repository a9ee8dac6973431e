/**
 * @module
 * `npm run test:clients`: NVIDIA's unmodified Python client (tritonclient.http)
 * against `npm start`'s server, as its users run it. Starts the demo server on
 * a fresh local R2 (its own process group, ended when done), then runs
 * `test_tritonclient.py` under Debian's `/usr/bin/python3` with the client on
 * PYTHONPATH. The client is third-party code and stays outside the project:
 * `../shared/clients/tritonclient-python` beside the checkout (or beside the
 * checkout it was cloned from), or wherever PINION_TRITONCLIENT points. A missing client or missing Python packages fail
 * the run with what to install: a conformance suite that silently skips proves
 * nothing.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { root, startDevServer } from "../../scripts/lib/dev-server";

const ROOT = fileURLToPath(root);
const PYTHON = process.env.PINION_PYTHON || "/usr/bin/python3";
const CLIENT = findClient();
/** Debian packages the client imports (numpy, its HTTP stack, its JSON codec, the aio client's HTTP). */
const PACKAGES = {
  numpy: "python3-numpy",
  gevent: "python3-gevent",
  geventhttpclient: "python3-geventhttpclient",
  rapidjson: "python3-rapidjson",
  aiohttp: "python3-aiohttp",
};

/**
 * Where the client is: PINION_TRITONCLIENT, else `../shared/clients/tritonclient-python`
 * beside this checkout, else beside the checkout this one was cloned from (CI
 * runs in a fresh clone of the working checkout, which may live elsewhere).
 */
function findClient(): string {
  if (process.env.PINION_TRITONCLIENT) return resolve(process.env.PINION_TRITONCLIENT);
  const beside = (dir: string) => resolve(dir, "..", "shared", "clients", "tritonclient-python");
  const candidates = [beside(ROOT)];
  const origin = spawnSync("git", ["-C", ROOT, "config", "--get", "remote.origin.url"], {
    encoding: "utf8",
  }).stdout?.trim();
  if (origin && isAbsolute(origin) && existsSync(origin)) candidates.push(beside(origin));
  return candidates.find((dir) => existsSync(dir)) ?? candidates[0]!;
}

function fail(message: string): never {
  console.error(`test:clients: ${message}`);
  process.exit(1);
}

if (!existsSync(join(CLIENT, "tritonclient", "http", "__init__.py"))) {
  fail(
    `NVIDIA's tritonclient is not at ${CLIENT}. Put tritonclient-python (its src/python/library ` +
      `tree) there, or set PINION_TRITONCLIENT to its folder.`,
  );
}
if (!existsSync(PYTHON)) fail(`${PYTHON} not found: apt-get install -y python3`);
const missing = Object.entries(PACKAGES).filter(
  ([module]) => spawnSync(PYTHON, ["-c", `import ${module}`], { stdio: "ignore" }).status !== 0,
);
if (missing.length > 0) {
  fail(
    `${PYTHON} lacks ${missing.map(([module]) => module).join(", ")}: ` +
      `apt-get install -y ${missing.map(([, pkg]) => pkg).join(" ")}`,
  );
}

const persistTo = await mkdtemp(join(tmpdir(), "pinion-clients-"));
let status = 1;
// Counters reach the statistics within METRICS_FLUSH_MS of a response: short, for the statistics test.
const server = await startDevServer(persistTo, ["--var", "METRICS_FLUSH_MS:100"]);
try {
  const host = new URL(server.base).host;
  console.log(`test:clients: tritonclient from ${CLIENT} against ${server.base} (${PYTHON})`);
  status = await new Promise<number>((done, reject) => {
    const python = spawn(PYTHON, [join(ROOT, "test", "clients", "test_tritonclient.py")], {
      cwd: ROOT,
      stdio: "inherit",
      env: {
        ...process.env,
        PYTHONPATH: CLIENT,
        PYTHONDONTWRITEBYTECODE: "1",
        PINION_URL: host,
        PINION_FIXTURES: join(ROOT, "fixtures"),
      },
    });
    python.on("error", reject);
    python.on("exit", (code, signal) => done(code ?? (signal ? 1 : 0)));
  });
  if (status !== 0) console.error(`test:clients: server output:\n${server.output().slice(-4000)}`);
} finally {
  await server.stop();
  await rm(persistTo, { recursive: true, force: true });
}
process.exit(status);
