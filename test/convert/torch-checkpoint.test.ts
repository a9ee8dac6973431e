import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync, zipSync } from "fflate";
import pkg from "onnx-proto";
import { describe, expect, it } from "vitest";
import {
  readStateDict,
  type TorchStateDict,
  type TorchTensor,
} from "../../convert/torch-checkpoint";
import { PinionError } from "../../core/errors";
import { crc32OfZeros, deflatedZeros, rawZip, storedEntry } from "./zip-bomb";

const { onnx } = pkg;

const fixture = (path: string) =>
  new Uint8Array(readFileSync(new URL(`../../fixtures/${path}`, import.meta.url)));

// --- a tiny pickle writer (protocol 2), enough to write what torch.save writes ---

/** A value to pickle: JS primitives and arrays (Python lists), plus tagged Python objects. */
type W =
  | null
  | boolean
  | number
  | bigint
  | string
  | W[]
  | { tuple: W[] }
  | { dict: [W, W][] }
  /** collections.OrderedDict(), items, and optionally torch's `_metadata` attribute via BUILD */
  | { ordered: [W, W][]; metadata?: W }
  | { global: string }
  /** REDUCE: callable(*args) */
  | { call: W; args: W[] }
  | { pid: W }
  | { float: number }
  /** the value, memoised (BINPUT) under `id` */
  | { put: number; value: W }
  /** BINGET of a memoised value */
  | { get: number };

function pickle(value: W): Uint8Array {
  const out: number[] = [0x80, 2];
  const le = (n: number | bigint, size: number) => {
    let v = BigInt.asUintN(size * 8, BigInt(n));
    for (let i = 0; i < size; i++, v >>= 8n) out.push(Number(v & 0xffn));
  };
  const text = (s: string) => out.push(...new TextEncoder().encode(s));
  const write = (v: W): void => {
    if (v === null) out.push(0x4e);
    else if (v === true || v === false) out.push(v ? 0x88 : 0x89);
    else if (typeof v === "number") {
      if (!Number.isInteger(v)) throw new Error("use { float } for floats");
      if (v >= 0 && v < 0x100) out.push(0x4b, v);
      else if (v >= 0 && v < 0x10000) (out.push(0x4d), le(v, 2));
      else if (v >= -(2 ** 31) && v < 2 ** 31) (out.push(0x4a), le(v, 4));
      else write(BigInt(v));
    } else if (typeof v === "bigint") {
      let size = 1;
      while (BigInt.asIntN(size * 8, v) !== v) size++;
      (out.push(0x8a, size), le(v, size));
    } else if (typeof v === "string") {
      const utf8 = new TextEncoder().encode(v);
      (out.push(0x58), le(utf8.length, 4), out.push(...utf8));
    } else if (Array.isArray(v)) {
      (out.push(0x5d, 0x28), v.forEach(write), out.push(0x65)); // EMPTY_LIST MARK ... APPENDS
    } else if ("tuple" in v) {
      (out.push(0x28), v.tuple.forEach(write), out.push(0x74)); // MARK ... TUPLE
    } else if ("dict" in v) {
      (out.push(0x7d, 0x28), v.dict.flat().forEach(write), out.push(0x75)); // EMPTY_DICT MARK ... SETITEMS
    } else if ("ordered" in v) {
      write({ call: { global: "collections.OrderedDict" }, args: [] });
      (out.push(0x28), v.ordered.flat().forEach(write), out.push(0x75));
      if (v.metadata !== undefined) (write({ dict: [["_metadata", v.metadata]] }), out.push(0x62));
    } else if ("global" in v) {
      const dot = v.global.lastIndexOf(".");
      (out.push(0x63), text(`${v.global.slice(0, dot)}\n${v.global.slice(dot + 1)}\n`));
    } else if ("call" in v) {
      (write(v.call), write({ tuple: v.args }), out.push(0x52));
    } else if ("pid" in v) {
      (write(v.pid), out.push(0x51));
    } else if ("float" in v) {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setFloat64(0, v.float, false);
      out.push(0x47, ...bytes);
    } else if ("put" in v) {
      (write(v.value), out.push(0x72), le(v.put, 4));
    } else {
      (out.push(0x6a), le(v.get, 4));
    }
  };
  write(value);
  out.push(0x2e);
  return new Uint8Array(out);
}

// --- checkpoints in both layouts, built from a description ---

interface Storage {
  key: string;
  /** torch storage class name, e.g. "FloatStorage" */
  type: string;
  numel: number;
  bytes: Uint8Array;
}

interface Tensor {
  name: string;
  storage: Storage;
  offset?: number;
  shape: number[];
  /** row-major when omitted */
  stride?: number[];
}

const rowMajor = (shape: number[]) =>
  shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));

const storagePid = (storage: Storage, legacy: boolean): W => ({
  pid: {
    tuple: [
      "storage",
      { global: `torch.${storage.type}` },
      storage.key,
      "cpu",
      storage.numel,
      ...(legacy ? [null] : []),
    ],
  },
});

const rebuild = (tensor: Tensor, legacy: boolean): W => ({
  call: { global: "torch._utils._rebuild_tensor_v2" },
  args: [
    storagePid(tensor.storage, legacy),
    tensor.offset ?? 0,
    { tuple: tensor.shape },
    { tuple: tensor.stride ?? rowMajor(tensor.shape) },
    false,
    { ordered: [] },
  ],
});

/** The object pickle torch writes for a state_dict, `_metadata` included. */
const stateDict = (tensors: Tensor[], legacy = false): W => ({
  ordered: tensors.map((t): [W, W] => [t.name, rebuild(t, legacy)]),
  metadata: { ordered: [["", { dict: [["version", 1]] }]] },
});

const uniqueStorages = (tensors: Tensor[]) => [...new Set(tensors.map((t) => t.storage))];

function zipCheckpoint(
  tensors: Tensor[],
  options: { folder?: string; pkl?: Uint8Array; extra?: Record<string, Uint8Array> } = {},
): Uint8Array {
  const folder = options.folder ?? "model";
  const files: Record<string, Uint8Array> = {
    [`${folder}/data.pkl`]: options.pkl ?? pickle(stateDict(tensors)),
  };
  for (const storage of uniqueStorages(tensors)) {
    files[`${folder}/data/${storage.key}`] = storage.bytes;
  }
  files[`${folder}/version`] = new TextEncoder().encode("3\n");
  return zipSync({ ...files, ...options.extra }, { level: 0 });
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/** `torch.save(obj, f, _use_new_zipfile_serialization=False)`, byte for byte in layout. */
function legacyCheckpoint(
  tensors: Tensor[],
  options: { object?: W; keys?: string[] } = {},
): Uint8Array {
  const storages = uniqueStorages(tensors);
  const keys = options.keys ?? storages.map((s) => s.key).sort();
  const parts = [
    pickle(LEGACY_MAGIC),
    pickle(1001),
    pickle({
      dict: [
        ["protocol_version", 1001],
        ["little_endian", true],
        [
          "type_sizes",
          {
            dict: [
              ["short", 2],
              ["int", 4],
              ["long", 8],
            ],
          },
        ],
      ],
    }),
    pickle(options.object ?? stateDict(tensors, true)),
    pickle(keys),
  ];
  for (const key of keys) {
    const storage = storages.find((s) => s.key === key);
    if (!storage) continue; // a key the object never mentions: the reader must object first
    const count = new Uint8Array(8);
    new DataView(count.buffer).setBigInt64(0, BigInt(storage.numel), true);
    parts.push(count, storage.bytes);
  }
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) (out.set(part, at), (at += part.length));
  return out;
}

const bytesOf = (view: ArrayBufferView) =>
  new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();

const float32Storage = (key: string, values: number[]): Storage => ({
  key,
  type: "FloatStorage",
  numel: values.length,
  bytes: bytesOf(new Float32Array(values)),
});

/** The storages and tensors of a state_dict we have already read, to write back out. */
function describeStateDict(sd: TorchStateDict): Tensor[] {
  let next = 94_000_000; // legacy keys are CPython object addresses, as decimal strings
  return [...sd].map(([name, t]) => ({
    name,
    shape: t.shape,
    storage: {
      key: String((next += 48)),
      type: "FloatStorage",
      numel: t.data.length,
      bytes: bytesOf(t.data),
    },
  }));
}

// --- assertions ---

function refusal(read: () => unknown): PinionError {
  try {
    read();
  } catch (error) {
    expect(error).toBeInstanceOf(PinionError);
    expect((error as PinionError).kind).toBe("invalid_argument");
    return error as PinionError;
  }
  throw new Error("expected readStateDict to refuse the file");
}

const refuses = (bytes: Uint8Array, pattern: RegExp, options = {}) =>
  expect(refusal(() => readStateDict(bytes, options)).message).toMatch(pattern);

function onnxInitializers(path: string): Map<string, { dims: number[]; raw: Uint8Array }> {
  const model = onnx.ModelProto.decode(fixture(path));
  return new Map(
    model.graph!.initializer!.map((t) => [
      t.name!,
      { dims: t.dims!.map(Number), raw: new Uint8Array(t.rawData!) },
    ]),
  );
}

const tensorOf = (sd: TorchStateDict, name: string): TorchTensor => {
  const tensor = sd.get(name);
  expect(tensor).toBeDefined();
  return tensor!;
};

// --- tests ---

describe("readStateDict on real PyTorch 1.13 checkpoints", () => {
  it.each<{ pth: string; onnx: string; shapes: Record<string, number[]> }>([
    {
      pth: "seed-simple/simple_model.pth",
      onnx: "seed-simple/simple_model.onnx",
      shapes: {
        "layer1.weight": [20, 10],
        "layer1.bias": [20],
        "layer2.weight": [10, 20],
        "layer2.bias": [10],
      },
    },
    {
      pth: "digits-mlp/digits_mlp.pth",
      onnx: "digits-mlp/digits_mlp.onnx",
      shapes: {
        "fc1.weight": [128, 64],
        "fc1.bias": [128],
        "fc2.weight": [64, 128],
        "fc2.bias": [64],
        "fc3.weight": [10, 64],
        "fc3.bias": [10],
      },
    },
  ])("reads $pth bit for bit as the ONNX export's initializers", (model) => {
    const sd = readStateDict(fixture(model.pth));
    expect([...sd.keys()]).toEqual(Object.keys(model.shapes));
    const initializers = onnxInitializers(model.onnx);
    for (const [name, shape] of Object.entries(model.shapes)) {
      const tensor = tensorOf(sd, name);
      expect(tensor.dtype).toBe("float32");
      expect(tensor.shape).toEqual(shape);
      expect(tensor.data).toBeInstanceOf(Float32Array);
      expect(tensor.data.length).toBe(shape.reduce((a, b) => a * b, 1));
      const initializer = initializers.get(name)!;
      expect(initializer.dims).toEqual(shape);
      expect(bytesOf(tensor.data)).toEqual(initializer.raw);
    }
  });

  it("reads a legacy-format file of the same tensors identically", () => {
    for (const path of ["seed-simple/simple_model.pth", "digits-mlp/digits_mlp.pth"]) {
      const fromZip = readStateDict(fixture(path));
      const legacy = legacyCheckpoint(describeStateDict(fromZip));
      expect(legacy[0]).toBe(0x80);
      expect(readStateDict(legacy)).toEqual(fromZip);
    }
  });

  it("re-zipped with deflate and another folder name, still reads identically", () => {
    const original = fixture("seed-simple/simple_model.pth");
    const entries = Object.entries(unzipSync(original)).map(
      ([name, data]): [string, Uint8Array] => [name.replace(/^simple_model\//, "archive/"), data],
    );
    const deflated = zipSync(Object.fromEntries(entries), { level: 9 });
    expect(readStateDict(deflated)).toEqual(readStateDict(original));
  });

  it("copies tensors out rather than aliasing the input", () => {
    const bytes = fixture("seed-simple/simple_model.pth");
    const before = bytes.slice();
    const sd = readStateDict(bytes);
    (tensorOf(sd, "layer1.weight").data as Float32Array).fill(0);
    expect(bytes).toEqual(before);
    expect(readStateDict(bytes)).not.toEqual(sd);
  });
});

describe("readStateDict: dtypes, strides and sharing", () => {
  it("widens float16 storages to float32, exactly", () => {
    const bits = [0x3c00, 0xc000, 0x3800, 0x7bff, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x0400];
    const storage: Storage = {
      key: "0",
      type: "HalfStorage",
      numel: bits.length,
      bytes: bytesOf(new Uint16Array(bits)),
    };
    for (const file of [
      zipCheckpoint([{ name: "h", storage, shape: [2, 5] }]),
      legacyCheckpoint([{ name: "h", storage, shape: [2, 5] }]),
    ]) {
      const h = tensorOf(readStateDict(file), "h");
      expect(h.dtype).toBe("float16");
      expect(h.shape).toEqual([2, 5]);
      expect(h.data).toBeInstanceOf(Float32Array);
      expect([...h.data]).toEqual([
        1,
        -2,
        0.5,
        65504,
        -0,
        Infinity,
        -Infinity,
        NaN,
        2 ** -24, // smallest subnormal
        2 ** -14, // smallest normal
      ]);
      expect(Object.is(h.data[4], -0)).toBe(true);
    }
  });

  it("widens bfloat16 storages to float32, exactly", () => {
    const bits = [0x3f80, 0xc040, 0x4049, 0x7f80, 0x0001, 0x8000];
    const storage: Storage = {
      key: "0",
      type: "BFloat16Storage",
      numel: bits.length,
      bytes: bytesOf(new Uint16Array(bits)),
    };
    const b = tensorOf(readStateDict(zipCheckpoint([{ name: "b", storage, shape: [6] }])), "b");
    expect(b.dtype).toBe("bfloat16");
    expect(b.data).toBeInstanceOf(Float32Array);
    const f32 = (high: number) => new Float32Array(new Uint32Array([high << 16]).buffer)[0]!;
    expect([...b.data]).toEqual([1, -3, 3.140625, Infinity, f32(0x0001), -0]);
    expect(b.data[4]).toBeGreaterThan(0); // a bfloat16 subnormal survives
  });

  it("reads float64 and int64 storages exactly", () => {
    const doubles = [Math.PI, -1e300, 5e-324, 0.1];
    const longs = [-(2n ** 63n), 2n ** 63n - 1n, 42n, -1n];
    const tensors: Tensor[] = [
      {
        name: "d",
        shape: [2, 2],
        storage: {
          key: "0",
          type: "DoubleStorage",
          numel: 4,
          bytes: bytesOf(new Float64Array(doubles)),
        },
      },
      {
        name: "l",
        shape: [4],
        storage: {
          key: "1",
          type: "LongStorage",
          numel: 4,
          bytes: bytesOf(new BigInt64Array(longs)),
        },
      },
    ];
    for (const file of [zipCheckpoint(tensors), legacyCheckpoint(tensors)]) {
      const sd = readStateDict(file);
      expect(tensorOf(sd, "d")).toEqual({
        dtype: "float64",
        shape: [2, 2],
        data: new Float64Array(doubles),
      });
      expect(tensorOf(sd, "l")).toEqual({
        dtype: "int64",
        shape: [4],
        data: new BigInt64Array(longs),
      });
    }
  });

  it("reads the integer and bool dtypes", () => {
    const storage = (key: string, type: string, data: ArrayBufferView & { length: number }) => ({
      key,
      type,
      numel: data.length,
      bytes: bytesOf(data),
    });
    const sd = readStateDict(
      zipCheckpoint([
        {
          name: "i32",
          shape: [2],
          storage: storage("0", "IntStorage", new Int32Array([-7, 2 ** 31 - 1])),
        },
        {
          name: "i16",
          shape: [2],
          storage: storage("1", "ShortStorage", new Int16Array([-300, 300])),
        },
        {
          name: "i8",
          shape: [2],
          storage: storage("2", "CharStorage", new Int8Array([-128, 127])),
        },
        { name: "u8", shape: [2], storage: storage("3", "ByteStorage", new Uint8Array([0, 255])) },
        { name: "b", shape: [3], storage: storage("4", "BoolStorage", new Uint8Array([1, 0, 1])) },
      ]),
    );
    expect(tensorOf(sd, "i32")).toEqual({
      dtype: "int32",
      shape: [2],
      data: new Int32Array([-7, 2 ** 31 - 1]),
    });
    expect(tensorOf(sd, "i16")).toEqual({
      dtype: "int16",
      shape: [2],
      data: new Int16Array([-300, 300]),
    });
    expect(tensorOf(sd, "i8")).toEqual({
      dtype: "int8",
      shape: [2],
      data: new Int8Array([-128, 127]),
    });
    expect(tensorOf(sd, "u8")).toEqual({
      dtype: "uint8",
      shape: [2],
      data: new Uint8Array([0, 255]),
    });
    expect(tensorOf(sd, "b")).toEqual({
      dtype: "bool",
      shape: [3],
      data: new Uint8Array([1, 0, 1]),
    });
  });

  it("materialises strided views: a transposed matrix, an offset, broadcasting and 3-D", () => {
    const storage = float32Storage("0", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const tensors: Tensor[] = [
      // A 2×3 matrix stored column by column: stride [1, rows].
      { name: "transposed", storage, shape: [2, 3], stride: [1, 2] },
      // Every other element of the second row of a 3×4 matrix.
      { name: "sliced", storage, offset: 4, shape: [2], stride: [2] },
      // A row expanded to 3 rows (stride 0), as torch.expand does.
      { name: "expanded", storage, offset: 1, shape: [3, 2], stride: [0, 1] },
      // A 2×2×3 view with permuted strides.
      { name: "permuted", storage, shape: [2, 2, 3], stride: [1, 6, 2] },
      // Size-1 dimensions may have any stride and still be contiguous.
      { name: "unit", storage, offset: 9, shape: [1, 3], stride: [99, 1] },
      { name: "scalar", storage, offset: 11, shape: [], stride: [] },
      { name: "empty", storage, offset: 12, shape: [0, 4], stride: [4, 1] },
    ];
    for (const file of [zipCheckpoint(tensors), legacyCheckpoint(tensors)]) {
      const sd = readStateDict(file);
      const values = (name: string) => [...tensorOf(sd, name).data];
      expect(values("transposed")).toEqual([0, 2, 4, 1, 3, 5]);
      expect(values("sliced")).toEqual([4, 6]);
      expect(values("expanded")).toEqual([1, 2, 1, 2, 1, 2]);
      expect(values("permuted")).toEqual([0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11]);
      expect(values("unit")).toEqual([9, 10, 11]);
      expect(tensorOf(sd, "scalar")).toEqual({
        dtype: "float32",
        shape: [],
        data: new Float32Array([11]),
      });
      expect(tensorOf(sd, "empty")).toEqual({
        dtype: "float32",
        shape: [0, 4],
        data: new Float32Array(0),
      });
    }
  });

  it("reads several tensors over one storage, tied weights, parameters and 7-argument rebuilds", () => {
    const storage = float32Storage("0", [1, 2, 3, 4, 5, 6, 7, 8]);
    const weight: W = {
      put: 1,
      value: rebuild({ name: "w", storage, shape: [2, 3] }, false),
    };
    const pkl = pickle({
      ordered: [
        ["weight", weight],
        ["bias", rebuild({ name: "b", storage, offset: 6, shape: [2] }, false)],
        ["tied", { get: 1 }],
        [
          "param",
          {
            call: { global: "torch._utils._rebuild_parameter" },
            args: [
              rebuild({ name: "p", storage, offset: 2, shape: [2] }, false),
              true,
              { ordered: [] },
            ],
          },
        ],
        [
          "with_metadata",
          {
            call: { global: "torch._utils._rebuild_tensor_v2" },
            args: [
              storagePid(storage, false),
              3,
              { tuple: [1] },
              { tuple: [1] },
              false,
              { ordered: [] },
              { dict: [] },
            ],
          },
        ],
      ],
    });
    const sd = readStateDict(zipCheckpoint([{ name: "w", storage, shape: [8] }], { pkl }));
    expect([...sd.keys()]).toEqual(["weight", "bias", "tied", "param", "with_metadata"]);
    expect([...tensorOf(sd, "weight").data]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...tensorOf(sd, "bias").data]).toEqual([7, 8]);
    expect(sd.get("tied")).toBe(sd.get("weight")); // one tensor object, as in torch
    expect([...tensorOf(sd, "param").data]).toEqual([3, 4]);
    expect([...tensorOf(sd, "with_metadata").data]).toEqual([4]);
  });

  it("accepts a plain dict, the byteorder record and a top folder of any name", () => {
    const storage = float32Storage("0", [1.5]);
    const pkl = pickle({ dict: [["x", rebuild({ name: "x", storage, shape: [1] }, false)]] });
    const file = zipCheckpoint([{ name: "x", storage, shape: [1] }], {
      folder: "my model v2",
      pkl,
      extra: { "my model v2/byteorder": new TextEncoder().encode("little") },
    });
    expect(readStateDict(file)).toEqual(
      new Map([["x", { dtype: "float32", shape: [1], data: new Float32Array([1.5]) }]]),
    );
  });
});

describe("readStateDict refuses hostile files", () => {
  const storage = float32Storage("0", [1, 2, 3, 4, 5, 6]);

  /** A state_dict whose only value is `callable(argument)`. */
  const calling = (callable: string, argument: W): W => ({
    ordered: [["x", { call: { global: callable }, args: [argument] }]],
  });

  it.each([
    "os.system",
    "posix.system",
    "builtins.eval",
    "subprocess.Popen",
    "torch.storage._load_from_bytes",
  ])("refuses %s in data.pkl and in a legacy file, naming it", (callable) => {
    const pkl = pickle(calling(callable, "echo pwned"));
    refuses(
      zipCheckpoint([{ name: "x", storage, shape: [6] }], { pkl }),
      new RegExp(`^model/data\\.pkl: forbidden global "${callable.replace(/\./g, "\\.")}"`),
    );
    refuses(
      legacyCheckpoint([{ name: "x", storage, shape: [6] }], {
        object: calling(callable, "echo pwned"),
      }),
      new RegExp(`legacy checkpoint object: forbidden global "${callable.replace(/\./g, "\\.")}"`),
    );
  });

  it("refuses REDUCE on a callable that is not on the allow-list", () => {
    const pkl = pickle(calling("torch.FloatStorage", 10));
    refuses(
      zipCheckpoint([{ name: "x", storage, shape: [6] }], { pkl }),
      /refusing REDUCE on torch\.FloatStorage .*not an allow-listed callable/,
    );
  });

  it("bounds the element count before allocating", () => {
    const huge = { name: "huge", storage, shape: [1e9, 1e9], stride: [0, 0] };
    refuses(
      zipCheckpoint([huge]),
      /tensor "huge": shape \[1000000000,1000000000\] is over the limit of 2147483648 bytes/,
    );
    refuses(legacyCheckpoint([huge]), /tensor "huge": shape .* is over the limit/);
    refuses(
      fixture("digits-mlp/digits_mlp.pth"),
      /tensor "fc1\.weight": .*over the limit of 1000 bytes/,
      {
        maxTensorBytes: 1000,
      },
    );
    const rank17 = { name: "deep", storage, shape: new Array(17).fill(1) };
    refuses(zipCheckpoint([rank17]), /tensor "deep": rank 17 is over the supported 16/);
  });

  it("refuses sizes, strides and offsets that are not non-negative integers", () => {
    const withArgs = (offset: W, size: W[], stride: W[]) =>
      zipCheckpoint([{ name: "x", storage, shape: [6] }], {
        pkl: pickle({
          ordered: [
            [
              "x",
              {
                call: { global: "torch._utils._rebuild_tensor_v2" },
                args: [
                  storagePid(storage, false),
                  offset,
                  { tuple: size },
                  { tuple: stride },
                  false,
                  { ordered: [] },
                ],
              },
            ],
          ],
        }),
      });
    refuses(
      withArgs(0, [-1], [1]),
      /tensor "x": size entry must be a non-negative integer, not an int/,
    );
    refuses(
      withArgs(0, [2], [{ float: 0.5 }]),
      /tensor "x": stride entry must be a non-negative integer, not a float/,
    );
    refuses(withArgs(-3, [2], [1]), /tensor "x": storage offset must be a non-negative integer/);
    refuses(
      withArgs(0, [2n ** 80n], [1]),
      /tensor "x": size entry 1208925819614629174706176 is too large/,
    );
    refuses(withArgs(0, [2, 3], [1]), /tensor "x": size \[2,3\] and stride \[1\] differ in rank/);
    refuses(withArgs(0, ["2"], [1]), /size entry must be a non-negative integer, not a str/);
  });

  it("refuses persistent ids that are not torch storages", () => {
    const withPid = (pid: W, legacy = false) => {
      const object: W = {
        ordered: [
          [
            "x",
            {
              call: { global: "torch._utils._rebuild_tensor_v2" },
              args: [{ pid }, 0, { tuple: [1] }, { tuple: [1] }, false, { ordered: [] }],
            },
          ],
        ],
      };
      const tensors = [{ name: "x", storage, shape: [6] }];
      return legacy
        ? legacyCheckpoint(tensors, { object })
        : zipCheckpoint(tensors, { pkl: pickle(object) });
    };
    const pid = (...items: W[]): W => ({ tuple: ["storage", ...items] });
    const float = { global: "torch.FloatStorage" };
    refuses(withPid("module"), /unsupported persistent id \(a str\): expected \('storage', type/);
    refuses(withPid(pid(float, "0", "cpu")), /unsupported persistent id \(a tuple\)/);
    refuses(withPid(pid(float, "0", "cpu", 6), true), /expected .*numel, view\)/);
    refuses(
      withPid(pid({ global: "torch._utils._rebuild_tensor_v2" }, "0", "cpu", 6)),
      /unsupported storage type torch\._utils\._rebuild_tensor_v2/,
    );
    refuses(withPid(pid(float, 0, "cpu", 6)), /storage key and location must be strs/);
    refuses(withPid(pid(float, "0", "cpu", -6)), /storage "0" has element count -6/);
    refuses(withPid(pid(float, "0", "cpu", 6, { tuple: ["1", 0, 6] }), true), /storage views/);
    refuses(
      zipCheckpoint([
        { name: "a", storage, shape: [6] },
        { name: "b", storage: { ...storage, type: "IntStorage" }, shape: [6] },
      ]),
      /storage "0" is described twice, with different types or sizes/,
    );
  });

  it("refuses a storage shorter than the shape and stride need, naming the tensor", () => {
    for (const file of [
      zipCheckpoint([{ name: "w", storage, shape: [2, 4] }]),
      legacyCheckpoint([{ name: "w", storage, shape: [2, 4] }]),
    ]) {
      refuses(
        file,
        /tensor "w": storage shorter than shape × stride needs: shape \[2,4\] with stride \[4,1\] from offset 0 reads element 7, but storage "0" holds 6 float32 elements/,
      );
    }
    // The last element is one past the end through the stride alone.
    refuses(
      zipCheckpoint([{ name: "s", storage, shape: [2], stride: [6] }]),
      /tensor "s": storage shorter/,
    );
    refuses(
      zipCheckpoint([{ name: "o", storage, offset: 5, shape: [2] }]),
      /tensor "o": storage shorter/,
    );
  });

  it("refuses an offset beyond the storage", () => {
    refuses(
      zipCheckpoint([{ name: "far", storage, offset: 7, shape: [0] }]),
      /tensor "far": storage offset 7 is beyond the end of storage "0" \(6 elements\)/,
    );
    refuses(
      zipCheckpoint([{ name: "far", storage, offset: 1e12, shape: [1] }]),
      /tensor "far": storage offset/,
    );
  });

  it("refuses a zip without the storage record a tensor needs", () => {
    const entries = unzipSync(fixture("seed-simple/simple_model.pth"));
    delete entries["simple_model/data/2"];
    refuses(
      zipSync(entries, { level: 0 }),
      /tensor "layer2\.weight": missing storage record "simple_model\/data\/2" in the zip archive/,
    );
  });

  it("refuses a legacy file whose storage list lacks a storage", () => {
    const tensors: Tensor[] = [
      { name: "a", storage, shape: [6] },
      { name: "b", storage: float32Storage("1", [1]), shape: [1] },
    ];
    refuses(legacyCheckpoint(tensors, { keys: ["0"] }), /tensor "b": missing storage record "1"/);
    refuses(legacyCheckpoint(tensors, { keys: ["0", "1", "2"] }), /storage "2" is never used/);
  });

  it("refuses storage records of the wrong length", () => {
    const ragged: Storage = { key: "0", type: "FloatStorage", numel: 2, bytes: new Uint8Array(9) };
    refuses(
      zipCheckpoint([{ name: "r", storage: ragged, shape: [2] }]),
      /storage "0" holds 9 bytes, not a whole number of float32 elements \(4 bytes each\)/,
    );
    const short: Storage = { ...ragged, numel: 3, bytes: new Uint8Array(8) };
    refuses(
      zipCheckpoint([{ name: "r", storage: short, shape: [2] }]),
      /storage "0" holds 2 float32 elements but the checkpoint says 3/,
    );
  });

  it("refuses truncated pickles and oversized string lengths inside a checkpoint", () => {
    const pkl = pickle(stateDict([{ name: "x", storage, shape: [6] }]));
    refuses(
      zipCheckpoint([{ name: "x", storage, shape: [6] }], {
        pkl: pkl.subarray(0, pkl.length >> 1),
      }),
      /^model\/data\.pkl: pickle is truncated/,
    );
    const lying = new Uint8Array([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f, 0x61, 0x2e]);
    refuses(
      zipCheckpoint([], { pkl: lying }),
      /^model\/data\.pkl: pickle is truncated: a string at offset 2 needs 2147483647 bytes but only 2 remain/,
    );
  });

  it("refuses truncated zip archives", () => {
    const original = fixture("seed-simple/simple_model.pth");
    refuses(
      original.subarray(0, original.length >> 1),
      /truncated or corrupt zip archive: no end-of-central-directory/,
    );
    for (let length = 1; length < original.length; length += 37) {
      refusal(() => readStateDict(original.subarray(0, length)));
    }
  });

  it("refuses corrupt zip archives: bad CRC, data past the end, zip64, bad counts", () => {
    const original = fixture("seed-simple/simple_model.pth");
    const flipped = original.slice();
    flipped[0x700] = flipped[0x700]! ^ 0x40; // inside simple_model/data/2's bytes (0x680 to 0x9a0)
    refuses(
      flipped,
      /corrupt zip archive: entry "simple_model\/data\/2" fails its size or CRC check/,
    );

    const eocd = original.length - 22;
    const view = (bytes: Uint8Array) =>
      new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const directory = view(original).getUint32(eocd + 16, true);
    const pastEnd = original.slice();
    view(pastEnd).setUint32(directory + 20, 0x7fffffff, true); // data.pkl's compressed size
    refuses(
      pastEnd,
      /truncated or corrupt zip archive: the data of "simple_model\/data\.pkl" runs past/,
    );

    const zip64 = original.slice();
    view(zip64).setUint16(eocd + 8, 0xffff, true);
    refuses(zip64, /zip64 archives .* are not supported/);

    const manyEntries = original.slice();
    view(manyEntries).setUint16(eocd + 8, 5000, true);
    view(manyEntries).setUint16(eocd + 10, 5000, true);
    refuses(manyEntries, /truncated or corrupt zip archive: the central directory lies outside/);
  });

  it("refuses zips that are not PyTorch checkpoints", () => {
    const text = new TextEncoder().encode("hello");
    refuses(
      zipSync({ "hello.txt": text, "docs/readme.md": text }),
      /not a PyTorch checkpoint: the zip archive has no <folder>\/data\.pkl entry \(it holds "hello\.txt", "docs\/readme\.md"\)/,
    );
    refuses(zipSync({}), /not a PyTorch checkpoint: the zip archive has no .*no entries/);
    refuses(zipSync({ "data.pkl": pickle(stateDict([])) }), /not a PyTorch checkpoint/);
    refuses(
      zipSync({ "a/data.pkl": pickle(stateDict([])), "b/data.pkl": pickle(stateDict([])) }),
      /not a PyTorch checkpoint: the zip archive has 2 data\.pkl entries/,
    );
    refuses(
      zipCheckpoint([{ name: "x", storage, shape: [6] }], {
        extra: { "model/byteorder": new TextEncoder().encode("big") },
      }),
      /big-endian checkpoints \(byteorder "big"\) are not supported/,
    );
  });

  it("refuses empty files and files that are neither zip nor pickle", () => {
    refuses(new Uint8Array(0), /^empty file/);
    refuses(
      new TextEncoder().encode("version https://git-lfs"),
      /not a PyTorch checkpoint: neither a zip archive .* starts with bytes 76 65 72 73/,
    );
    refuses(new Uint8Array([0x80]), /legacy checkpoint header: pickle is truncated/);
  });

  it("refuses top-level objects that are not a state_dict of tensors", () => {
    const t = rebuild({ name: "x", storage, shape: [6] }, false);
    const zipWith = (object: W) =>
      zipCheckpoint([{ name: "x", storage, shape: [6] }], { pkl: pickle(object) });
    refuses(
      zipWith([t]),
      /expected a state_dict \(a dict of tensor names to tensors\), but the checkpoint holds a list/,
    );
    refuses(
      zipWith(t),
      /expected a state_dict .* holds a torch\._utils\._rebuild_tensor_v2\(\.\.\.\) call/,
    );
    refuses(
      zipWith({ ordered: [["epoch", 3]] }),
      /expected a state_dict of tensors, but "epoch" holds an int$/,
    );
    refuses(
      zipWith({ dict: [["model", { ordered: [["w", t]] }]] }),
      /"model" holds a dict \(a training checkpoint\? save model\.state_dict\(\) on its own\)/,
    );
    refuses(zipWith({ dict: [[7, t]] }), /one of its keys is an int, not a str/);
  });

  it("refuses malformed legacy files", () => {
    const tensors: Tensor[] = [{ name: "x", storage, shape: [6] }];
    const good = legacyCheckpoint(tensors);
    expect(readStateDict(good).size).toBe(1);
    refuses(
      good.subarray(0, good.length - 1),
      /truncated legacy checkpoint: storage "0" needs 24 bytes/,
    );
    refuses(
      good.subarray(0, good.length - 24 - 3),
      /truncated legacy checkpoint: storage "0" is cut off/,
    );
    refuses(
      concat([pickle(1234), good.subarray(good.indexOf(0x2e) + 1)]),
      /without torch\.save's magic number/,
    );
    const protocol = concat([pickle(LEGACY_MAGIC), pickle(1000)]);
    refuses(protocol, /unsupported legacy checkpoint protocol 1000/);
    const countAt = good.length - 24 - 8;
    const miscounted = good.slice();
    miscounted[countAt] = 5;
    refuses(miscounted, /storage "0" has 5 elements, but its record says 6/);
  });

  it("throws only PinionErrors on randomly corrupted checkpoints", () => {
    let seed = 2024;
    const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const samples = [
      fixture("seed-simple/simple_model.pth"),
      legacyCheckpoint(describeStateDict(readStateDict(fixture("seed-simple/simple_model.pth")))),
    ];
    let refused = 0;
    for (let round = 0; round < 600; round++) {
      const sample = samples[round & 1]!.slice();
      for (let flips = 1 + Math.floor(random() * 4); flips > 0; flips--) {
        sample[Math.floor(random() * sample.length)] = Math.floor(random() * 256);
      }
      try {
        readStateDict(sample);
      } catch (error) {
        expect(error).toBeInstanceOf(PinionError);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
  });
});

describe("readStateDict refuses zip bombs before inflating them", () => {
  const GiB = 1024 ** 3;
  /** A state_dict of one float32 tensor over storage "0" of `numel` elements. */
  const pklOf = (numel: number, shape: number[]) =>
    pickle(
      stateDict([
        {
          name: "weight",
          shape,
          storage: { key: "0", type: "FloatStorage", numel, bytes: new Uint8Array(0) },
        },
      ]),
    );
  /** model/data.pkl, then model/data/0 as a deflated entry of zeros declaring `size`. */
  const bomb = (pkl: Uint8Array, zeros: Uint8Array, size: number) =>
    rawZip([
      storedEntry("model/data.pkl", pkl),
      { name: "model/data/0", data: zeros, method: 8, size, crc32: crc32OfZeros(size) },
      storedEntry("model/version", new TextEncoder().encode("3\n")),
    ]);
  const oneGiB = deflatedZeros(1024);

  it("refuses a 1 MB file whose honest headers inflate to a legal 1 GiB tensor, fast", () => {
    const file = bomb(pklOf(GiB / 4, [16384, 16384]), oneGiB, GiB);
    expect(file.length).toBeLessThan(1.1e6);
    const started = performance.now();
    refuses(
      file,
      new RegExp(
        `^zip bomb\\? the checkpoint's compressed entries declare ${GiB} bytes inflated in all ` +
          `\\(largest: "model/data/0", ${oneGiB.length} bytes inflating to ${GiB}\\), over the ` +
          `limit of 268435456 bytes \\(maxInflatedBytes\\)`,
      ),
    );
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it("the pinion CLI refuses the 1 GiB bomb with that message, in bounded memory", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pinion-bomb-"));
    try {
      const file = join(dir, "bomb.pth");
      writeFileSync(file, bomb(pklOf(GiB / 4, [16384, 16384]), oneGiB, GiB));
      // Prints the child's peak resident set (KiB) as it exits.
      const peak = `data:text/javascript,process.on("exit",()=>process.stderr.write("maxRSS="+process.resourceUsage().maxRSS+"\\n"))`;
      const bin = new URL("../../bin/pinion.js", import.meta.url).pathname;
      const started = performance.now();
      const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>(
        (resolve) =>
          execFile(
            process.execPath,
            ["--import", peak, bin, "publish", "bomb", file, "--persist-to", dir],
            { env: { ...process.env, PINION_ADMIN_TOKEN: "" }, timeout: 60_000 },
            (error, _stdout, stderr) =>
              resolve({ code: error ? (error.code as number) : 0, stderr }),
          ),
      );
      expect(code).toBe(2); // EXIT.usage: the file is refused
      expect(stderr).toMatch(/^pinion: zip bomb\? .* over the limit of 268435456 bytes/m);
      expect(stderr).not.toMatch(/bad_alloc/);
      expect(Number(/maxRSS=(\d+)/.exec(stderr)![1]) * 1024).toBeLessThan(600 * 1024 ** 2);
      expect(performance.now() - started).toBeLessThan(30_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("stops inflating an entry at the size its header declares", () => {
    // The pickle and the headers agree on 16 bytes; the data inflates to 1 GiB.
    const lying = rawZip([
      storedEntry("model/data.pkl", pklOf(4, [4])),
      { name: "model/data/0", data: oneGiB, method: 8, size: 16, crc32: crc32OfZeros(16) },
    ]);
    const started = performance.now();
    refuses(
      lying,
      /^zip bomb\? entry "model\/data\/0" inflates to more than the 16 bytes its header declares/,
    );
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it("holds each storage entry to the size the pickle declares, before inflating", () => {
    refuses(
      bomb(pklOf(4, [4]), oneGiB, GiB),
      /^zip entry "model\/data\/0": storage "0" holds 268435456 float32 elements but the checkpoint says 4$/,
    );
  });

  it("counts data.pkl against the limit too", () => {
    const pkl = rawZip([
      { name: "model/data.pkl", data: oneGiB, method: 8, size: GiB, crc32: crc32OfZeros(GiB) },
    ]);
    refuses(
      pkl,
      /^zip bomb\? .*\(largest: "model\/data\.pkl", \d+ bytes inflating to 1073741824\)/,
    );
  });

  it("reads deflated entries under the limit, which is configurable", () => {
    const eight = bomb(pklOf(2 * 1024 ** 2, [2048, 1024]), deflatedZeros(8), 8 * 1024 ** 2);
    const tensor = tensorOf(readStateDict(eight), "weight");
    expect(tensor.shape).toEqual([2048, 1024]);
    expect((tensor.data as Float32Array).every((v) => v === 0)).toBe(true);
    refuses(
      eight,
      /declare 8388608 bytes inflated in all .* over the limit of 4194304 bytes \(maxInflatedBytes\)/,
      { maxInflatedBytes: 4 * 1024 ** 2 },
    );
    // Entries torch writes uncompressed do not inflate, so the limit does not apply to them.
    expect(readStateDict(fixture("digits-mlp/digits_mlp.pth"), { maxInflatedBytes: 0 })).toEqual(
      readStateDict(fixture("digits-mlp/digits_mlp.pth")),
    );
  });
});
