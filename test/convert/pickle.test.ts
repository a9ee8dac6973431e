import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { afterAll, describe, expect, it } from "vitest";
import {
  ALLOWED_GLOBALS,
  PickleCall,
  PickleDict,
  PickleExternal,
  PickleGlobal,
  PickleTuple,
  readPickle,
  unpickle,
  type PickleValue,
} from "../../convert/pickle";
import { PinionError } from "../../core/errors";

/** Opcode bytes used by the writer below. */
const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  EMPTY_TUPLE: 0x29,
  BINPERSID: 0x51,
  REDUCE: 0x52,
  EMPTY_LIST: 0x5d,
  APPEND: 0x61,
  BUILD: 0x62,
  DICT: 0x64,
  APPENDS: 0x65,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  LIST: 0x6c,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  SETITEM: 0x73,
  TUPLE: 0x74,
  SETITEMS: 0x75,
  EMPTY_DICT: 0x7d,
  NONE: 0x4e,
  NEWOBJ: 0x81,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  NEWTRUE: 0x88,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
} as const;

/** A tiny pickle writer: opcodes with their arguments, as CPython lays them out. */
class PickleBytes {
  private readonly out: number[] = [];

  op(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }
  private le(value: number, size: number): this {
    for (let i = 0; i < size; i++) this.out.push(Math.floor(value / 2 ** (8 * i)) & 0xff);
    return this;
  }
  proto(protocol = 2): this {
    return this.op(0x80, protocol);
  }
  frame(length: number): this {
    return this.op(OP.FRAME).le(length, 8);
  }
  /** BINUNICODE with an explicit (possibly lying) length. */
  unicodeHeader(length: number): this {
    return this.op(0x58).le(length, 4);
  }
  unicode(text: string): this {
    const utf8 = new TextEncoder().encode(text);
    return this.unicodeHeader(utf8.length).op(...utf8);
  }
  shortUnicode(text: string): this {
    const utf8 = new TextEncoder().encode(text);
    return this.op(0x8c, utf8.length, ...utf8);
  }
  unicode8(text: string): this {
    const utf8 = new TextEncoder().encode(text);
    return this.op(0x8d)
      .le(utf8.length, 8)
      .op(...utf8);
  }
  int(value: number): this {
    if (value >= 0 && value < 0x100) return this.op(0x4b, value);
    if (value >= 0 && value < 0x10000) return this.op(0x4d).le(value, 2);
    return this.op(0x4a).le(value >>> 0, 4);
  }
  global(module: string, name: string): this {
    return this.op(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }
  stackGlobal(module: string, name: string): this {
    return this.shortUnicode(module).shortUnicode(name).op(OP.STACK_GLOBAL);
  }
  stop(): this {
    return this.op(OP.STOP);
  }
  bytes(): Uint8Array {
    return new Uint8Array(this.out);
  }
}

const hex = (text: string) => new Uint8Array(text.match(/../g)!.map((b) => parseInt(b, 16)));

/**
 * `pickle.dumps(OrderedDict([("a", 1), ("b", [1.5, None, True, False, -2, 300, 70000, 2**70,
 * -(2**63)]), ("c", ("x", (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)))]), protocol=P)` from
 * CPython 3.11, for P = 2 and P = 4.
 */
const PY_PROTOCOL_2 = hex(
  "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000006171024b0158" +
    "010000006271035d710428473ff80000000000004e88894afeffffff4d2c014a701101008a0900000000000000" +
    "00408a080000000000000080655801000000637105285801000000787106294b018571074b014b028671084b01" +
    "4b024b03877109284b014b024b034b0474710a74710b752e",
);
const PY_PROTOCOL_4 = hex(
  "80049589000000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c" +
    "0161944b018c0162945d9428473ff80000000000004e88894afeffffff4d2c014a701101008a09000000000000" +
    "0000408a080000000000000080658c016394288c017894294b0185944b014b0286944b014b024b038794284b01" +
    "4b024b034b0474947494752e",
);

/** Plain JS for a decoded value, so whole structures compare with toEqual. */
function plain(value: PickleValue): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof PickleTuple) return { tuple: value.items.map(plain) };
  if (value instanceof PickleDict) {
    return { dict: [...value.entries].map(([k, v]) => [k, plain(v)]) };
  }
  if (value instanceof PickleGlobal) return { global: value.qualifiedName };
  if (value instanceof PickleCall)
    return { call: value.fn.qualifiedName, args: value.args.map(plain) };
  if (value instanceof PickleExternal) return { external: value.value };
  return value;
}

/** Runs `read` and returns the PinionError it must throw. */
function refusal(read: () => unknown): PinionError {
  try {
    read();
  } catch (error) {
    expect(error).toBeInstanceOf(PinionError);
    expect((error as PinionError).kind).toBe("invalid_argument");
    return error as PinionError;
  }
  throw new Error("expected the unpickler to refuse the input");
}

const refuses = (bytes: Uint8Array, pattern: RegExp, options = {}) =>
  expect(refusal(() => unpickle(bytes, options)).message).toMatch(pattern);

describe("unpickle: what CPython writes", () => {
  const expected = {
    dict: [
      ["a", 1],
      ["b", [1.5, null, true, false, -2, 300, 70000, 2n ** 70n, -(2n ** 63n)]],
      [
        "c",
        {
          tuple: [
            "x",
            { tuple: [] },
            { tuple: [1] },
            { tuple: [1, 2] },
            { tuple: [1, 2, 3] },
            { tuple: [1, 2, 3, 4] },
          ],
        },
      ],
    ],
  };

  it("reads a protocol 2 pickle of an OrderedDict (GLOBAL, BINPUT, LONG1, BINFLOAT, TUPLEn)", () => {
    expect(plain(unpickle(PY_PROTOCOL_2))).toEqual(expected);
  });

  it("reads the same value pickled with protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL)", () => {
    expect(plain(unpickle(PY_PROTOCOL_4))).toEqual(expected);
  });

  it("reads torch's data.pkl: persistent ids, _rebuild_tensor_v2 calls, BUILD of _metadata", () => {
    const pth = new Uint8Array(
      readFileSync(new URL("../../fixtures/seed-simple/simple_model.pth", import.meta.url)),
    );
    const pids: unknown[] = [];
    const root = unpickle(unzipSync(pth)["simple_model/data.pkl"]!, {
      persistentLoad: (pid) => {
        pids.push(plain(pid));
        return `storage #${pids.length}`;
      },
    });
    const storage = (key: string, numel: number) => ({
      tuple: ["storage", { global: "torch.FloatStorage" }, key, "cpu", numel],
    });
    // The pickle memoises the first storage type and re-reads it with BINGET.
    expect(pids).toEqual([
      storage("0", 200),
      storage("1", 20),
      storage("2", 200),
      storage("3", 10),
    ]);
    expect(root).toBeInstanceOf(PickleDict);
    const entries = [...(root as PickleDict).entries];
    expect(entries.map(([key]) => key)).toEqual([
      "layer1.weight",
      "layer1.bias",
      "layer2.weight",
      "layer2.bias",
    ]);
    expect(plain(entries[0]![1])).toEqual({
      call: "torch._utils._rebuild_tensor_v2",
      args: [
        { external: "storage #1" },
        0,
        { tuple: [20, 10] },
        { tuple: [10, 1] },
        false,
        { dict: [] },
      ],
    });
  });

  it("shares memoised objects as Python does, through BINPUT/BINGET and LONG_BINPUT/LONG_BINGET", () => {
    const bytes = new PickleBytes()
      .proto()
      .op(OP.EMPTY_LIST, OP.BINPUT, 7)
      .op(OP.EMPTY_LIST, OP.LONG_BINPUT, 0x78, 0x56, 0x34, 0x12)
      .op(OP.LONG_BINGET, 0x78, 0x56, 0x34, 0x12)
      .op(0x87) // TUPLE3: (first, second, second)
      .op(OP.BINGET, 7, OP.TUPLE2)
      .stop()
      .bytes();
    const outer = unpickle(bytes) as PickleTuple;
    const [inner, again] = outer.items as [PickleTuple, PickleValue];
    expect(again).toBe(inner.items[0]); // the very same list object
    expect(inner.items[2]).toBe(inner.items[1]);
  });

  it("reads LIST, DICT, APPEND, SETITEM, BINUNICODE8 and an OrderedDict built with NEWOBJ", () => {
    const bytes = new PickleBytes()
      .proto(4)
      .op(OP.MARK)
      .unicode8("ünïcode")
      .global("collections", "OrderedDict")
      .op(OP.EMPTY_TUPLE, OP.NEWOBJ)
      .unicode("k")
      .int(70000)
      .op(OP.SETITEM)
      .unicode("list")
      .op(OP.MARK, OP.LIST)
      .int(-5)
      .op(OP.APPEND)
      .op(OP.DICT)
      .stop()
      .bytes();
    expect(plain(unpickle(bytes))).toEqual({
      dict: [
        ["ünïcode", { dict: [["k", 70000]] }],
        ["list", [-5]],
      ],
    });
  });

  it("returns where each pickle ends, so a stream of pickles reads in turn", () => {
    const first = new PickleBytes().proto().int(1001).stop().bytes();
    const second = new PickleBytes().proto().unicode("next").stop().bytes();
    const stream = new Uint8Array([...first, ...second, 0xde, 0xad]);
    const a = readPickle(stream, 0);
    expect(a).toEqual({ value: 1001, end: first.length });
    const b = readPickle(stream, a.end);
    expect(b).toEqual({ value: "next", end: first.length + second.length });
    // As in Python, bytes after STOP are not read at all.
    expect(unpickle(stream)).toBe(1001);
  });
});

describe("unpickle: refusing to run code", () => {
  const scratch = mkdtempSync(join(tmpdir(), "pinion-pickle-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  /** The classic exploit: `callable(command)` via GLOBAL (or STACK_GLOBAL) + REDUCE. */
  const exploit = (module: string, name: string, argument: string, stack = false) => {
    const writer = new PickleBytes().proto(stack ? 4 : 2);
    (stack ? writer.stackGlobal(module, name) : writer.global(module, name))
      .unicode(argument)
      .op(OP.TUPLE1, OP.REDUCE);
    return writer.stop().bytes();
  };

  it.each([
    ["os", "system"],
    ["posix", "system"],
    ["nt", "system"],
    ["builtins", "eval"],
    ["builtins", "exec"],
    ["subprocess", "Popen"],
    ["torch.storage", "_load_from_bytes"],
    ["torch", "load"],
  ])("refuses %s.%s, naming it, and runs nothing", (module, name) => {
    const marker = join(scratch, `${module}.${name}`);
    for (const stack of [false, true]) {
      const bytes = exploit(module, name, `touch ${marker}`, stack);
      let loaderCalls = 0;
      const error = refusal(() =>
        unpickle(bytes, {
          persistentLoad: () => {
            loaderCalls++;
            return null;
          },
        }),
      );
      expect(error.message).toContain(`"${module}.${name}"`);
      expect(error.message).toMatch(/forbidden global/);
      expect(loaderCalls).toBe(0);
    }
    expect(existsSync(marker)).toBe(false);
  });

  it("refuses the forbidden global even where it is never called", () => {
    const bytes = new PickleBytes().proto().global("os", "system").stop().bytes();
    refuses(bytes, /forbidden global "os\.system" at offset 2/);
  });

  it("refuses REDUCE on allow-listed types and on values that are not callables", () => {
    const call = (push: (w: PickleBytes) => PickleBytes) =>
      push(new PickleBytes().proto()).op(OP.EMPTY_TUPLE, OP.REDUCE).stop().bytes();
    refuses(
      call((w) => w.global("torch", "FloatStorage")),
      /refusing REDUCE on torch\.FloatStorage .*not an allow-listed callable/,
    );
    refuses(
      call((w) => w.unicode("os.system")),
      /refusing REDUCE on a str .*not an allow-listed callable/,
    );
    refuses(
      call((w) => w.op(OP.EMPTY_LIST)),
      /refusing REDUCE on a list/,
    );
  });

  it("records allow-listed function calls instead of making them", () => {
    const bytes = new PickleBytes()
      .proto()
      .global("torch._utils", "_rebuild_parameter")
      .op(OP.NONE, OP.NEWTRUE)
      .op(OP.EMPTY_DICT, 0x87, OP.REDUCE) // TUPLE3
      .stop()
      .bytes();
    expect(plain(unpickle(bytes))).toEqual({
      call: "torch._utils._rebuild_parameter",
      args: [null, true, { dict: [] }],
    });
  });

  it("refuses OrderedDict called with arguments, NEWOBJ on functions and BUILD on non-dicts", () => {
    const orderedWithArgs = new PickleBytes()
      .proto()
      .global("collections", "OrderedDict")
      .op(OP.EMPTY_LIST, OP.TUPLE1, OP.REDUCE)
      .stop()
      .bytes();
    refuses(orderedWithArgs, /collections\.OrderedDict with arguments/);
    const newobj = new PickleBytes()
      .proto()
      .global("torch._utils", "_rebuild_tensor_v2")
      .op(OP.EMPTY_TUPLE, OP.NEWOBJ)
      .stop()
      .bytes();
    refuses(newobj, /refusing NEWOBJ on torch\._utils\._rebuild_tensor_v2/);
    const build = new PickleBytes().proto().op(OP.EMPTY_LIST, OP.EMPTY_DICT, OP.BUILD).stop();
    refuses(build.bytes(), /refusing BUILD on a list/);
  });

  it("allows only the documented globals", () => {
    expect([...ALLOWED_GLOBALS.keys()].sort()).toEqual([
      "collections.OrderedDict",
      "torch.BFloat16Storage",
      "torch.BoolStorage",
      "torch.ByteStorage",
      "torch.CharStorage",
      "torch.DoubleStorage",
      "torch.FloatStorage",
      "torch.HalfStorage",
      "torch.IntStorage",
      "torch.LongStorage",
      "torch.ShortStorage",
      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_tensor_v2",
    ]);
  });
});

describe("unpickle: hostile and broken input", () => {
  it("names unknown opcodes and unsupported ones with their byte and offset", () => {
    refuses(new PickleBytes().proto().op(0xff).bytes(), /unknown pickle opcode 0xff at offset 2/);
    refuses(new PickleBytes().op(0x00).bytes(), /unknown pickle opcode 0x00 at offset 0/);
    refuses(
      new PickleBytes().proto().op(0x69).bytes(), // INST imports and calls in one go
      /unsupported pickle opcode INST \(0x69\) at offset 2/,
    );
    refuses(new PickleBytes().proto(6).bytes(), /unsupported pickle protocol 6/);
  });

  it("refuses every truncation of a valid pickle with a clear error", () => {
    for (const sample of [PY_PROTOCOL_2, PY_PROTOCOL_4]) {
      for (let length = 0; length < sample.length; length++) {
        refuses(sample.subarray(0, length), /truncated|malformed/);
      }
    }
    refuses(PY_PROTOCOL_2.subarray(0, 20), /pickle is truncated: GLOBAL at offset 2/);
    refuses(
      PY_PROTOCOL_2.subarray(0, PY_PROTOCOL_2.length - 1),
      /input ends at offset \d+ before STOP/,
    );
  });

  it("never allocates from a length field larger than the input", () => {
    // A 2 GiB BINUNICODE, a 2^60-byte BINUNICODE8, a LONG1 of 255 bytes and a huge FRAME.
    refuses(
      new PickleBytes().proto().unicodeHeader(0x7fffffff).op(0x41, 0x42).bytes(),
      /truncated: a string at offset 2 needs 2147483647 bytes but only 2 remain/,
    );
    refuses(
      new PickleBytes().proto(4).op(0x8d, 0, 0, 0, 0, 0, 0, 0, 0x10).op(0x41).bytes(),
      /truncated: a string at offset 2 needs \d+ bytes but only 1 remain/,
    );
    refuses(new PickleBytes().proto().op(0x8a, 0xff, 1, 2, 3).bytes(), /truncated: LONG1/);
    refuses(
      new PickleBytes()
        .proto(4)
        .frame(2 ** 40)
        .op(OP.NONE)
        .bytes(),
      /truncated: FRAME/,
    );
  });

  it("refuses malformed stack programs", () => {
    const program = (...ops: number[]) =>
      new PickleBytes()
        .proto()
        .op(...ops)
        .bytes();
    refuses(program(OP.NONE, OP.NONE, OP.STOP), /STOP at offset 4 with 2 values/);
    refuses(program(OP.MARK, OP.NONE, OP.STOP), /1 open MARKs/);
    refuses(program(OP.STOP), /STOP at offset 2 with 0 values/);
    refuses(program(OP.NONE, OP.APPEND), /stack underflow at offset 3/);
    refuses(program(OP.NONE, OP.NONE, OP.APPEND), /append to None/);
    refuses(program(OP.EMPTY_LIST, OP.NONE, OP.NONE, OP.SETITEM), /setitem on a list/);
    refuses(program(OP.EMPTY_DICT, OP.MARK, OP.NONE, OP.SETITEMS), /odd number of dict items/);
    refuses(program(OP.EMPTY_LIST, OP.NONE, OP.APPENDS), /no MARK/);
    refuses(program(OP.BINGET, 3), /memo entry 3 read at offset 2 is unset/);
    refuses(program(OP.MARK, OP.BINPUT, 0), /stack underflow/); // nothing above the MARK
    refuses(
      program(OP.EMPTY_DICT, OP.EMPTY_TUPLE, OP.NONE, OP.SETITEM),
      /unsupported dict key \(a tuple\)/,
    );
    refuses(program(OP.NONE, OP.BINPERSID), /persistent id at offset 3 but no loader/);
    refuses(program(0x58, 2, 0, 0, 0, 0xc3, 0x28), /invalid UTF-8/);
    refuses(program(OP.NONE, OP.NONE, OP.STACK_GLOBAL), /STACK_GLOBAL at offset 4 needs two strs/);
  });

  it("bounds the memo and the stack", () => {
    const memo = new PickleBytes().proto().op(OP.NONE);
    for (let i = 0; i < 5; i++) memo.op(OP.BINPUT, i);
    refuses(memo.op(OP.STOP).bytes(), /memo has more than 4 entries/, { maxMemo: 4 });
    const deep = new PickleBytes().proto();
    for (let i = 0; i < 100; i++) deep.op(OP.MARK);
    refuses(deep.bytes(), /stack is deeper than 64/, { maxStack: 64 });
    const wide = new PickleBytes().proto().op(OP.EMPTY_LIST, OP.MARK);
    for (let i = 0; i < 100; i++) wide.op(OP.NONE);
    refuses(wide.bytes(), /stack is deeper than 64/, { maxStack: 64 });
    // Re-putting the same index does not grow the memo.
    const reput = new PickleBytes().proto().op(OP.NONE);
    for (let i = 0; i < 10; i++) reput.op(OP.BINPUT, 0);
    expect(unpickle(reput.stop().bytes(), { maxMemo: 1 })).toBeNull();
  });

  it("throws only PinionErrors on randomly corrupted pickles", () => {
    // A fixed-seed LCG: deterministic, and enough to reach many error paths.
    let seed = 12345;
    const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    let refused = 0;
    for (let round = 0; round < 2000; round++) {
      const sample = (round & 1 ? PY_PROTOCOL_4 : PY_PROTOCOL_2).slice();
      for (let flips = 1 + Math.floor(random() * 3); flips > 0; flips--) {
        sample[Math.floor(random() * sample.length)] = Math.floor(random() * 256);
      }
      try {
        unpickle(sample, { persistentLoad: () => null });
      } catch (error) {
        expect(error).toBeInstanceOf(PinionError);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(1000);
  });
});
