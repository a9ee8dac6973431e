/**
 * Loading an int8 plan as it streams in (`streamProgram`, the registry's
 * `streamArtifact`), as the edge does on a cold start: a text plan placed in
 * WASM memory chunk by chunk gives the same bits as one loaded whole, at any
 * chunk size (the metadata split across chunks included); chain and graph
 * plans, collected, too; an artifact whose bytes are not the manifest's
 * (digest or size) is refused and nothing built from it is served.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import kernelsWasm from "../../../build/kernels.wasm";
import type { Tensor } from "../../../core/protocol/datatypes";
import { readChunks } from "../../../core/registry/chunks";
import type { Manifest } from "../../../core/registry/manifest";
import { ModelRegistry } from "../../../core/registry/registry";
import {
  Int8Runtime,
  loadProgram,
  streamProgram,
  type Int8Program,
} from "../../../core/runtimes/int8/int8-runtime";
import type { ArtifactSource } from "../../../core/runtimes/runtime";
import { digestStreamSha256 } from "../../../worker/digest-stream";
import { fixtureJson, publishFixture } from "../../worker/helpers";

const streaming = () => new ModelRegistry(env.MODELS, { digests: digestStreamSha256 });
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** Feeds `bytes` to a sink in chunks of `size`, as a store's body would arrive. */
const chunked =
  (bytes: Uint8Array, size: number) =>
  async (sink: (chunk: Uint8Array, offset: number) => void): Promise<void> => {
    for (let at = 0; at < bytes.byteLength; at += size) {
      // A fresh copy each time, then scribbled over: the sink must not keep the chunk.
      const chunk = bytes.slice(at, at + size);
      sink(chunk, at);
      chunk.fill(0x5a);
    }
  };

async function planOf(manifest: Manifest): Promise<Uint8Array> {
  return streaming().readArtifact(manifest, "int8", 64 << 20);
}

interface TextCases {
  input_name: string;
  inputs: number[][];
}

describe("int8 plans loaded as they stream in", () => {
  it("a text plan gives the same bits at every chunk size as loaded whole", async () => {
    const manifest = await publishFixture("st-text", "text-small/text_small.onnx", 1, {
      int8: true,
    });
    const plan = await planOf(manifest);
    const cases = await fixtureJson<TextCases>("text-small/testset.json");
    const ids: Tensor = {
      name: cases.input_name,
      datatype: "INT64",
      shape: [20, cases.inputs[0]!.length],
      data: BigInt64Array.from(cases.inputs.slice(0, 20).flat(), (v) => BigInt(v)),
    };
    const whole = await loadProgram(kernelsWasm, plan);
    const expected = bits(whole.runInputs([ids]));
    const headerEnd = 16 + new DataView(plan.buffer, plan.byteOffset).getUint32(12, true);
    for (const size of [1, 7, 15, headerEnd - 3, 4096, 1 << 20]) {
      const program = await streamProgram(kernelsWasm, plan.byteLength, chunked(plan, size));
      expect(bits(program.runInputs([ids])), `chunks of ${size}`).toEqual(expected);
      expect(program.bytesHeld).toBeLessThanOrEqual(whole.bytesHeld + (1 << 20));
    }
  });

  it.each([
    ["a chain plan", "seed-simple/simple_model.onnx", "seed-simple/cases.json"],
    ["a graph plan", "digits-cnn/digits_cnn.onnx", "digits-cnn/testset.json"],
  ])("%s is collected and loads as whole", async (label, model, cases) => {
    const manifest = await publishFixture(`st-${label.split(" ")[1]}`, model, 1, { int8: true });
    const plan = await planOf(manifest);
    const rows = (await fixtureJson<{ inputs: unknown[] }>(cases)).inputs.slice(0, 10);
    const x = Float32Array.from(rows.flat(Infinity) as number[]);
    const run = (p: Int8Program) => bits(p.run(x, rows.length));
    const expected = run(await loadProgram(kernelsWasm, plan));
    for (const size of [5, 4096]) {
      expect(run(await streamProgram(kernelsWasm, plan.byteLength, chunked(plan, size)))).toEqual(
        expected,
      );
    }
  });

  it("judges a plan only once all of it went by; refuses one over the budget or cut short", async () => {
    const bogus = new Uint8Array(5000).fill(7);
    let fed = 0;
    const feed = chunked(bogus, 1000);
    await expect(
      streamProgram(kernelsWasm, bogus.byteLength, (sink) =>
        feed((chunk, offset) => {
          sink(chunk, offset);
          fed = offset + chunk.byteLength;
        }),
      ),
    ).rejects.toThrow(/bad magic/);
    expect(fed).toBe(bogus.byteLength); // the digest, checked at the end, would speak first

    const manifest = await publishFixture("st-short", "text-small/text_small.onnx", 1, {
      int8: true,
    });
    const plan = await planOf(manifest);
    // Memory is reserved before the digest is known: never past the model budget.
    await expect(
      streamProgram(kernelsWasm, plan.byteLength, chunked(plan, 4096), 1 << 20),
    ).rejects.toThrow(/more than this isolate's model budget of 1048576/);
    const short = plan.subarray(0, plan.byteLength - 100);
    await expect(streamProgram(kernelsWasm, plan.byteLength, chunked(short, 4096))).rejects.toThrow(
      /truncated/,
    );
  });

  it("the runtime streams from the registry and refuses bytes that are not the artifact", async () => {
    const manifest = await publishFixture("st-tamper", "text-small/text_small.onnx", 1, {
      int8: true,
    });
    const runtime = new Int8Runtime(kernelsWasm);
    const registry = streaming();
    const source: ArtifactSource = (role) => registry.readArtifact(manifest, role, 64 << 20);
    source.stream = (role, sink) => registry.streamArtifact(manifest, role, 64 << 20, sink);
    const loaded = await runtime.load(manifest, source);
    expect(loaded.runtime).toBe("int8");

    const key = manifest.artifacts.int8!.key;
    const original = new Uint8Array(await (await env.MODELS.get(key))!.arrayBuffer());
    const flipped = original.slice();
    flipped[flipped.length - 1]! ^= 1; // its last byte: the plan still parses, the digest differs
    await env.MODELS.put(key, flipped);
    await expect(runtime.load(manifest, source)).rejects.toMatchObject({
      kind: "unavailable",
      message: expect.stringMatching(/failed its sha256 check/),
    });
    await env.MODELS.put(key, original.subarray(0, original.length - 16));
    await expect(runtime.load(manifest, source)).rejects.toMatchObject({
      kind: "unavailable",
      message: expect.stringMatching(/bytes, the manifest says/),
    });
    await env.MODELS.put(key, original);
  });
});

describe("readChunks", () => {
  const bytes = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 31) & 0xff);
  const collect = async (stream: ReadableStream<Uint8Array>, size: number) => {
    const sizes: number[] = [];
    const out: number[] = [];
    for await (const chunk of readChunks(stream, size)) {
      sizes.push(chunk.byteLength);
      out.push(...chunk);
    }
    return { sizes, out };
  };

  it("fills chunks of the size asked from a byte stream (workerd's readAtLeast)", async () => {
    const { readable, writable } = new IdentityTransformStream();
    const writer = writable.getWriter();
    const writing = (async () => {
      for (let at = 0; at < bytes.length; at += 100) await writer.write(bytes.slice(at, at + 100));
      await writer.close();
    })();
    const { sizes, out } = await collect(readable as ReadableStream<Uint8Array>, 4096);
    await writing;
    expect(out).toEqual(Array.from(bytes));
    expect(sizes.slice(0, -1).every((s) => s === 4096)).toBe(true);
  });

  it("reads a stream that is not a byte stream as it comes", async () => {
    let at = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (at >= bytes.length) return controller.close();
        controller.enqueue(bytes.slice(at, at + 777));
        at += 777;
      },
    });
    const { sizes, out } = await collect(stream, 4096);
    expect(out).toEqual(Array.from(bytes));
    expect(sizes[0]).toBe(777);
  });
});
