/**
 * @module
 * An ONNX model's skeleton, read from a stream: the same protobuf with the
 * initializers' tensor data left out (names, types and dims kept), so the
 * structure check (`onnx-structure.ts`) can run on a model far larger than an
 * isolate's memory. Only the skeleton is held, and it is bounded; weights are
 * read past, never buffered.
 *
 * The walk knows three messages: ModelProto (descends into `graph`, field 7),
 * GraphProto (descends into each `initializer`, field 5) and TensorProto
 * (drops its data fields). Every other field is copied as it is.
 */
import { invalid } from "../errors";

/** ModelProto.graph, GraphProto.initializer. */
const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
/** TensorProto float_data, int32_data, string_data, int64_data, raw_data, double_data, uint64_data. */
const TENSOR_DATA_FIELDS = new Set([4, 5, 6, 7, 9, 10, 11]);

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

/** Pulls bytes from a stream, counting the position. */
class StreamCursor {
  position = 0;
  private chunk: Uint8Array = new Uint8Array(0);
  private at = 0;

  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  private async fill(): Promise<void> {
    while (this.at >= this.chunk.byteLength) {
      const { value, done } = await this.reader.read();
      if (done) throw invalid("not a valid ONNX model (the protobuf ends early)");
      this.chunk = value;
      this.at = 0;
    }
  }

  async byte(): Promise<number> {
    await this.fill();
    this.position++;
    return this.chunk[this.at++]!;
  }

  /** An unsigned varint, as a number (refused beyond 2^53). */
  async varint(): Promise<number> {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = await this.byte();
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(value))
          throw invalid("not a valid ONNX model (a varint is too large)");
        return value;
      }
      scale *= 128;
    }
    throw invalid("not a valid ONNX model (a varint runs over 10 bytes)");
  }

  /** Copies `n` bytes (the caller bounds `n`). */
  async bytes(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let have = 0;
    while (have < n) {
      await this.fill();
      const take = Math.min(n - have, this.chunk.byteLength - this.at);
      out.set(this.chunk.subarray(this.at, this.at + take), have);
      this.at += take;
      have += take;
    }
    this.position += n;
    return out;
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      await this.fill();
      const take = Math.min(left, this.chunk.byteLength - this.at);
      this.at += take;
      left -= take;
    }
    this.position += n;
  }
}

function varintBytes(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Uint8Array.from(out);
}

type Message = "model" | "graph" | "tensor";

/** What becomes of field `field` of `message`: copied, dropped, or walked as another message. */
function rule(message: Message, field: number, wire: number): "copy" | "drop" | Message {
  if (message === "model" && field === MODEL_GRAPH && wire === LENGTH_DELIMITED) return "graph";
  if (message === "graph" && field === GRAPH_INITIALIZER && wire === LENGTH_DELIMITED) {
    return "tensor";
  }
  if (message === "tensor" && TENSOR_DATA_FIELDS.has(field)) return "drop";
  return "copy";
}

class Skeleton {
  held = 0;

  constructor(
    private readonly cursor: StreamCursor,
    private readonly budget: number,
  ) {}

  private hold(n: number): void {
    this.held += n;
    if (this.held > this.budget) {
      throw invalid(
        `the model's structure (its graph without initializer data) is over ${this.budget} bytes, more than can be checked`,
      );
    }
  }

  /** Walks one message ending at `end`, returning its skeleton's parts. */
  async walk(message: Message, end: number): Promise<Uint8Array[]> {
    const parts: Uint8Array[] = [];
    const cursor = this.cursor;
    while (cursor.position < end) {
      const tag = await cursor.varint();
      const field = Math.floor(tag / 8);
      const wire = tag % 8;
      if (field === 0) throw invalid("not a valid ONNX model (field number 0)");
      const what = rule(message, field, wire);
      const keep = (bytes: Uint8Array) => {
        this.hold(bytes.byteLength);
        parts.push(bytes);
      };
      if (wire === VARINT) {
        const value = await cursor.varint();
        if (what !== "drop") keep(Uint8Array.from([...varintBytes(tag), ...varintBytes(value)]));
      } else if (wire === FIXED64 || wire === FIXED32) {
        const size = wire === FIXED64 ? 8 : 4;
        if (what === "drop") await cursor.skip(size);
        else keep(Uint8Array.from([...varintBytes(tag), ...(await cursor.bytes(size))]));
      } else if (wire === LENGTH_DELIMITED) {
        const length = await cursor.varint();
        if (length > end - cursor.position) {
          throw invalid("not a valid ONNX model (a field runs past its message)");
        }
        if (what === "drop") {
          await cursor.skip(length);
        } else if (what === "copy") {
          this.hold(length);
          parts.push(varintBytes(tag), varintBytes(length), await cursor.bytes(length));
        } else {
          const inner = await this.walk(what, cursor.position + length);
          const size = inner.reduce((sum, p) => sum + p.byteLength, 0);
          keep(varintBytes(tag));
          keep(varintBytes(size));
          parts.push(...inner);
        }
      } else {
        throw invalid(`not a valid ONNX model (wire type ${wire})`);
      }
      if (cursor.position > end)
        throw invalid("not a valid ONNX model (a field runs past its message)");
    }
    return parts;
  }
}

/**
 * Reads an ONNX model of `size` bytes from `body` and returns its skeleton,
 * holding at most `budget` bytes. The stream is read to its end (or cancelled
 * on the first error).
 */
export async function streamOnnxSkeleton(
  body: ReadableStream<Uint8Array>,
  size: number,
  budget: number,
): Promise<Uint8Array> {
  if (size === 0) throw invalid("the ONNX file is empty");
  const reader = body.getReader();
  try {
    const skeleton = new Skeleton(new StreamCursor(reader), budget);
    const parts = await skeleton.walk("model", size);
    const out = new Uint8Array(parts.reduce((sum, p) => sum + p.byteLength, 0));
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.byteLength;
    }
    return out;
  } catch (error) {
    await reader.cancel().catch(() => undefined);
    throw error;
  } finally {
    reader.releaseLock();
  }
}
