/**
 * @module
 * Shared by the origin tests: the reference fixtures published into a real
 * store the way `pinion publish` does, an origin listening on a free port with
 * its logs kept, and the OIP requests the tests send.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { createOriginApp, type OriginApp, type OriginOptions } from "../../origin/app";
import type { LogEntry } from "../../origin/log";
import { startOriginServer, type ListenOptions, type OriginServer } from "../../origin/server";
import { prepareVersion, type PrepareOptions } from "../../scripts/lib/prepare";
import type { Manifest } from "../../core/registry/manifest";
import { ModelRegistry } from "../../core/registry/registry";
import type { ObjectStore } from "../../core/registry/store";

export const fixture = (path: string) =>
  fileURLToPath(new URL(`../../fixtures/${path}`, import.meta.url));

export const SEED_ONNX = fixture("seed-simple/simple_model.onnx");
export const DIGITS_ONNX = fixture("digits-mlp/digits_mlp.onnx");

/** Publishes a model file as a new version, exactly as `pinion publish --target local` does. */
export async function publish(
  store: ObjectStore,
  name: string,
  file: string,
  options: PrepareOptions = {},
): Promise<Manifest> {
  const prepared = await prepareVersion(file, options);
  return new ModelRegistry(store).publish({
    name,
    ...prepared.fields,
    artifacts: prepared.artifacts,
  });
}

export interface SeedCases {
  inputs: number[][];
  expected: number[][];
}

export interface DigitsTestset {
  inputs: number[][];
  labels: number[];
  logits: number[][];
  accuracy: number;
}

export const seedCases = async (): Promise<SeedCases> =>
  JSON.parse(await readFile(fixture("seed-simple/cases.json"), "utf8")) as SeedCases;

export const digitsTestset = async (): Promise<DigitsTestset> =>
  JSON.parse(await readFile(fixture("digits-mlp/testset.json"), "utf8")) as DigitsTestset;

export function maxAbsDiff(actual: readonly number[], expected: readonly number[]): number {
  if (actual.length !== expected.length) return Infinity;
  return Math.max(...actual.map((v, i) => Math.abs(v - expected[i]!)));
}

export const argmax = (row: readonly number[]) => row.indexOf(Math.max(...row));

/** An OIP inference request for a model with one FP32 input named `input`. */
export function fp32Request(rows: number[][], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    ...extra,
    inputs: [
      { name: "input", shape: [rows.length, rows[0]!.length], datatype: "FP32", data: rows },
    ],
  });
}

export interface InferBody {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: { name: string; datatype: string; shape: number[]; data: number[] }[];
}

export interface RunningOrigin {
  origin: OriginApp;
  server: OriginServer;
  url: string;
  logs: LogEntry[];
  stop(): Promise<void>;
}

/** A real origin on 127.0.0.1 and a free port, logging into `logs`. */
export async function startOrigin(
  options: Omit<OriginOptions, "log">,
  listen: Partial<ListenOptions> = {},
): Promise<RunningOrigin> {
  const logs: LogEntry[] = [];
  const log = (entry: LogEntry) => void logs.push(entry);
  const origin = await createOriginApp({ ...options, log });
  const server = await startOriginServer(origin, { port: 0, host: "127.0.0.1", log, ...listen });
  return { origin, server, url: server.url, logs, stop: () => server.shutdown() };
}
