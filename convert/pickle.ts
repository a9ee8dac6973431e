/**
 * @module
 * A restricted unpickler for PyTorch checkpoints, in the spirit of
 * `torch.load(..., weights_only=True)`: it reads the opcodes that
 * `torch.save(model.state_dict())` pickles use (protocols 2 to 4) and nothing
 * else. A pickle is a program for a stack machine that may import and call any
 * Python callable, so a general unpickler is remote code execution. This one
 * never executes anything: globals resolve only through a short allow-list,
 * and "calling" an allow-listed function just records the call (`PickleCall`)
 * for the caller to interpret. Every length read from the input is checked
 * against the bytes that remain before anything is allocated.
 */

import { invalid } from "../core/errors";

/** A Python `tuple`; plain arrays are Python `list`s. */
export class PickleTuple {
  constructor(readonly items: readonly PickleValue[]) {}
}

/** Dict keys we can represent; a torch state_dict only ever uses strings. */
export type PickleKey = string | number | bigint | boolean | null;

/** A Python `dict` or `collections.OrderedDict`, in insertion order. */
export class PickleDict {
  readonly entries = new Map<PickleKey, PickleValue>();
}

/** An allow-listed global such as `torch.FloatStorage`, as a reference only. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly role: GlobalRole,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** `fn(*args)` for an allow-listed function, recorded instead of executed. */
export class PickleCall {
  constructor(
    readonly fn: PickleGlobal,
    readonly args: readonly PickleValue[],
  ) {}
}

/** Whatever the caller's `persistentLoad` returned, passed through untouched. */
export class PickleExternal {
  constructor(readonly value: unknown) {}
}

/**
 * A decoded value. Python ints are `number` when they are safe integers and
 * `bigint` otherwise; floats are `number` too.
 */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | PickleValue[]
  | PickleTuple
  | PickleDict
  | PickleGlobal
  | PickleCall
  | PickleExternal;

/**
 * What an allow-listed global may do: `dict` constructs an (ordered) dict when
 * called with no arguments, `function` calls are recorded as `PickleCall`, and
 * `type`s (the storage classes) can only be referenced, never called.
 */
export type GlobalRole = "dict" | "function" | "type";

const STORAGE_TYPES = [
  "FloatStorage",
  "HalfStorage",
  "BFloat16Storage",
  "DoubleStorage",
  "LongStorage",
  "IntStorage",
  "ShortStorage",
  "CharStorage",
  "ByteStorage",
  "BoolStorage",
];

/**
 * The only globals a checkpoint may reference. Deliberately absent, among
 * everything else: `torch.storage._load_from_bytes`, which runs a nested,
 * unrestricted `torch.load`.
 */
export const ALLOWED_GLOBALS: ReadonlyMap<string, GlobalRole> = new Map<string, GlobalRole>([
  ["collections.OrderedDict", "dict"],
  ["torch._utils._rebuild_tensor_v2", "function"],
  ["torch._utils._rebuild_parameter", "function"],
  ...STORAGE_TYPES.map((name): [string, GlobalRole] => [`torch.${name}`, "type"]),
]);

export interface UnpickleOptions {
  /** Receives each persistent id (BINPERSID); its result is wrapped in `PickleExternal`. */
  persistentLoad?: (pid: PickleValue) => unknown;
  /** Most memo entries (default 2^21). */
  maxMemo?: number;
  /** Most values on the stack plus open MARKs (default 2^21). */
  maxStack?: number;
}

/** Unpickles one pickle that starts at byte 0; bytes after STOP are ignored, as in Python. */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions = {}): PickleValue {
  return readPickle(bytes, 0, options).value;
}

/**
 * Unpickles the pickle starting at `offset` and returns its value and the
 * offset just past its STOP, so that streams of several pickles (the legacy
 * torch format) can be read one after another. Offsets in errors are absolute.
 */
export function readPickle(
  bytes: Uint8Array,
  offset: number,
  options: UnpickleOptions = {},
): { value: PickleValue; end: number } {
  return new Unpickler(bytes, offset, options).run();
}

/** Opcode bytes, named as in CPython's `pickletools`. */
const OP = {
  MARK: 0x28, // (
  STOP: 0x2e, // .
  BINFLOAT: 0x47, // G
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  BININT2: 0x4d, // M
  NONE: 0x4e, // N
  BINPERSID: 0x51, // Q
  REDUCE: 0x52, // R
  BINUNICODE: 0x58, // X
  EMPTY_LIST: 0x5d, // ]
  APPEND: 0x61, // a
  BUILD: 0x62, // b
  GLOBAL: 0x63, // c
  DICT: 0x64, // d
  APPENDS: 0x65, // e
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  LIST: 0x6c, // l
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  SETITEM: 0x73, // s
  TUPLE: 0x74, // t
  SETITEMS: 0x75, // u
  EMPTY_DICT: 0x7d, // }
  EMPTY_TUPLE: 0x29, // )
  PROTO: 0x80,
  NEWOBJ: 0x81,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
} as const;

/** Names of the opcodes we refuse, so that errors say more than a byte value. */
const UNSUPPORTED_OPCODES: Readonly<Record<number, string>> = {
  0x30: "POP",
  0x31: "POP_MARK",
  0x32: "DUP",
  0x42: "BINBYTES",
  0x43: "SHORT_BINBYTES",
  0x46: "FLOAT",
  0x49: "INT",
  0x4c: "LONG",
  0x50: "PERSID",
  0x53: "STRING",
  0x54: "BINSTRING",
  0x55: "SHORT_BINSTRING",
  0x56: "UNICODE",
  0x67: "GET",
  0x69: "INST",
  0x6f: "OBJ",
  0x70: "PUT",
  0x82: "EXT1",
  0x83: "EXT2",
  0x84: "EXT4",
  0x8b: "LONG4",
  0x8e: "BINBYTES8",
  0x8f: "EMPTY_SET",
  0x90: "ADDITEMS",
  0x91: "FROZENSET",
  0x92: "NEWOBJ_EX",
  0x96: "BYTEARRAY8",
  0x97: "NEXT_BUFFER",
  0x98: "READONLY_BUFFER",
};

const HIGHEST_PROTOCOL = 5;
const utf8 = new TextDecoder("utf-8", { fatal: true });
/** For GLOBAL's names, which only ever reach an allow-list lookup or an error message. */
const lenientUtf8 = new TextDecoder();

/** Shortens attacker-chosen text before it goes into an error message. */
function quote(text: string): string {
  return JSON.stringify(text.length > 120 ? `${text.slice(0, 120)}…` : text);
}

function hexByte(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

/** A short description of a value's Python type, for error messages. */
export function describe(value: PickleValue): string {
  if (value === null) return "None";
  if (typeof value === "boolean") return "a bool";
  if (typeof value === "number") return Number.isInteger(value) ? "an int" : "a float";
  if (typeof value === "bigint") return "an int";
  if (typeof value === "string") return "a str";
  if (Array.isArray(value)) return "a list";
  if (value instanceof PickleTuple) return "a tuple";
  if (value instanceof PickleDict) return "a dict";
  if (value instanceof PickleGlobal) return value.qualifiedName;
  if (value instanceof PickleCall) return `a ${value.fn.qualifiedName}(...) call`;
  return "a persistent object";
}

function isKey(value: PickleValue): value is PickleKey {
  return value === null || typeof value !== "object";
}

class Unpickler {
  private pos: number;
  private readonly stack: PickleValue[] = [];
  /** Stack lengths at each open MARK (CPython's metastack, without copying). */
  private readonly marks: number[] = [];
  /** A Map, not an array: LONG_BINPUT indices are attacker-chosen and may be sparse. */
  private readonly memo = new Map<number, PickleValue>();
  private readonly maxMemo: number;
  private readonly maxStack: number;
  /** Offset of the opcode being executed, for error messages. */
  private opStart = 0;

  constructor(
    private readonly bytes: Uint8Array,
    start: number,
    private readonly options: UnpickleOptions,
  ) {
    this.pos = start;
    this.maxMemo = options.maxMemo ?? 1 << 21;
    this.maxStack = options.maxStack ?? 1 << 21;
  }

  run(): { value: PickleValue; end: number } {
    const { bytes } = this;
    for (;;) {
      this.opStart = this.pos;
      if (this.pos >= bytes.length) {
        throw invalid(`pickle is truncated: input ends at offset ${this.pos} before STOP`);
      }
      const op = bytes[this.pos++]!;
      switch (op) {
        case OP.PROTO: {
          const protocol = this.u8();
          if (protocol > HIGHEST_PROTOCOL) {
            throw invalid(`unsupported pickle protocol ${protocol} at offset ${this.opStart}`);
          }
          break;
        }
        case OP.FRAME:
          // Framing only groups opcodes for buffered reading; check the length and read on.
          if (this.u64() > bytes.length - this.pos) this.truncated("FRAME");
          break;
        case OP.STOP: {
          if (this.marks.length > 0 || this.stack.length !== 1) {
            throw invalid(
              `malformed pickle: STOP at offset ${this.opStart} with ${this.stack.length} values ` +
                `on the stack and ${this.marks.length} open MARKs`,
            );
          }
          return { value: this.stack[0]!, end: this.pos };
        }

        case OP.NONE:
          this.push(null);
          break;
        case OP.NEWTRUE:
          this.push(true);
          break;
        case OP.NEWFALSE:
          this.push(false);
          break;
        case OP.BININT:
          this.push(this.view(4).getInt32(0, true));
          break;
        case OP.BININT1:
          this.push(this.u8());
          break;
        case OP.BININT2:
          this.push(this.view(2).getUint16(0, true));
          break;
        case OP.LONG1:
          this.push(this.long(this.u8()));
          break;
        case OP.BINFLOAT:
          this.push(this.view(8).getFloat64(0, false)); // big-endian, unlike the ints
          break;
        case OP.SHORT_BINUNICODE:
          this.push(this.text(this.u8()));
          break;
        case OP.BINUNICODE:
          this.push(this.text(this.u32()));
          break;
        case OP.BINUNICODE8:
          this.push(this.text(this.u64()));
          break;

        case OP.EMPTY_LIST:
          this.push([]);
          break;
        case OP.EMPTY_TUPLE:
          this.push(new PickleTuple([]));
          break;
        case OP.EMPTY_DICT:
          this.push(new PickleDict());
          break;
        case OP.MARK:
          if (this.marks.length + this.stack.length >= this.maxStack) this.tooDeep();
          this.marks.push(this.stack.length);
          break;
        case OP.TUPLE:
          this.push(new PickleTuple(this.popMark()));
          break;
        case OP.TUPLE1:
        case OP.TUPLE2:
        case OP.TUPLE3: {
          const items = this.popN(op - OP.TUPLE1 + 1);
          this.push(new PickleTuple(items));
          break;
        }
        case OP.LIST:
          this.push(this.popMark());
          break;
        case OP.APPEND: {
          const item = this.pop();
          this.list(this.top()).push(item);
          break;
        }
        case OP.APPENDS: {
          const items = this.popMark();
          const list = this.list(this.top());
          for (const item of items) list.push(item);
          break;
        }
        case OP.DICT: {
          const dict = new PickleDict();
          this.setItems(dict, this.popMark());
          this.push(dict);
          break;
        }
        case OP.SETITEM: {
          const pair = this.popN(2);
          this.setItems(this.dict(this.top()), pair);
          break;
        }
        case OP.SETITEMS: {
          const pairs = this.popMark();
          this.setItems(this.dict(this.top()), pairs);
          break;
        }

        case OP.BINPUT:
          this.put(this.u8());
          break;
        case OP.LONG_BINPUT:
          this.put(this.u32());
          break;
        case OP.MEMOIZE:
          this.put(this.memo.size);
          break;
        case OP.BINGET:
          this.get(this.u8());
          break;
        case OP.LONG_BINGET:
          this.get(this.u32());
          break;

        case OP.GLOBAL: {
          const module = this.line();
          const name = this.line();
          this.push(this.resolveGlobal(module, name));
          break;
        }
        case OP.STACK_GLOBAL: {
          const [module, name] = this.popN(2);
          if (typeof module !== "string" || typeof name !== "string") {
            throw invalid(
              `malformed pickle: STACK_GLOBAL at offset ${this.opStart} needs two strs`,
            );
          }
          this.push(this.resolveGlobal(module, name));
          break;
        }
        case OP.REDUCE: {
          const [callable, args] = this.popN(2);
          this.push(this.call(callable!, args!, "REDUCE"));
          break;
        }
        case OP.NEWOBJ: {
          // cls.__new__(cls, *args): only meaningful here for OrderedDict().
          const [cls, args] = this.popN(2);
          if (!(cls instanceof PickleGlobal) || cls.role !== "dict") {
            throw invalid(
              `refusing NEWOBJ on ${describe(cls!)} at offset ${this.opStart}: ` +
                `only collections.OrderedDict may be constructed`,
            );
          }
          this.push(this.call(cls, args!, "NEWOBJ"));
          break;
        }
        case OP.BUILD: {
          const state = this.pop();
          const target = this.top();
          // torch attaches `_metadata` (per-module versions) to the state_dict's
          // OrderedDict as an attribute; it does not affect the tensors, so drop it.
          if (!(target instanceof PickleDict && state instanceof PickleDict)) {
            throw invalid(
              `refusing BUILD on ${describe(target)} with ${describe(state)} at offset ` +
                `${this.opStart}: only a dict's attributes can be set`,
            );
          }
          break;
        }
        case OP.BINPERSID: {
          const pid = this.pop();
          const load = this.options.persistentLoad;
          if (!load) {
            throw invalid(`pickle has a persistent id at offset ${this.opStart} but no loader`);
          }
          this.push(new PickleExternal(load(pid)));
          break;
        }

        default: {
          const name = UNSUPPORTED_OPCODES[op];
          throw invalid(
            name
              ? `unsupported pickle opcode ${name} (${hexByte(op)}) at offset ${this.opStart}`
              : `unknown pickle opcode ${hexByte(op)} at offset ${this.opStart}`,
          );
        }
      }
    }
  }

  // --- Reading the input. Every read checks the remaining length first. ---

  private need(count: number, what: string): void {
    if (count > this.bytes.length - this.pos) this.truncated(what, count);
  }

  private truncated(what: string, count?: number): never {
    const left = this.bytes.length - this.pos;
    throw invalid(
      `pickle is truncated: ${what} at offset ${this.opStart} needs ` +
        `${count ?? "more"} bytes but only ${left} remain`,
    );
  }

  private u8(): number {
    this.need(1, "an opcode argument");
    return this.bytes[this.pos++]!;
  }

  private view(count: number): DataView {
    this.need(count, "an opcode argument");
    const view = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.pos, count);
    this.pos += count;
    return view;
  }

  private u32(): number {
    return this.view(4).getUint32(0, true);
  }

  /** An 8-byte length; anything past 2^53 is certainly longer than the input. */
  private u64(): number {
    const view = this.view(8);
    return view.getUint32(4, true) * 2 ** 32 + view.getUint32(0, true);
  }

  /** LONG1: a little-endian two's-complement integer of `count` bytes. */
  private long(count: number): number | bigint {
    this.need(count, "LONG1");
    let value = 0n;
    for (let i = count - 1; i >= 0; i--) value = (value << 8n) | BigInt(this.bytes[this.pos + i]!);
    if (count > 0 && this.bytes[this.pos + count - 1]! & 0x80) value -= 1n << BigInt(8 * count);
    this.pos += count;
    const small = Number(value);
    return Number.isSafeInteger(small) ? small : value;
  }

  private text(length: number): string {
    this.need(length, "a string");
    const slice = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    try {
      return utf8.decode(slice);
    } catch {
      throw invalid(`pickle has invalid UTF-8 in the string at offset ${this.opStart}`);
    }
  }

  /** A newline-terminated argument of GLOBAL. */
  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) this.truncated("GLOBAL");
    const text = lenientUtf8.decode(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return text;
  }

  // --- The stack and the memo. ---

  private push(value: PickleValue): void {
    if (this.stack.length + this.marks.length >= this.maxStack) this.tooDeep();
    this.stack.push(value);
  }

  private tooDeep(): never {
    throw invalid(`pickle stack is deeper than ${this.maxStack} at offset ${this.opStart}`);
  }

  private floor(): number {
    return this.marks.at(-1) ?? 0;
  }

  private pop(): PickleValue {
    return this.popN(1)[0]!;
  }

  /** The top value, which must lie above the innermost MARK. */
  private top(): PickleValue {
    if (this.stack.length <= this.floor()) this.underflow();
    return this.stack[this.stack.length - 1]!;
  }

  private popN(count: number): PickleValue[] {
    if (this.stack.length - this.floor() < count) this.underflow();
    return this.stack.splice(this.stack.length - count, count);
  }

  private popMark(): PickleValue[] {
    const mark = this.marks.pop();
    if (mark === undefined) {
      throw invalid(`malformed pickle: no MARK for the opcode at offset ${this.opStart}`);
    }
    return this.stack.splice(mark);
  }

  private underflow(): never {
    throw invalid(`malformed pickle: stack underflow at offset ${this.opStart}`);
  }

  private put(index: number): void {
    if (!this.memo.has(index) && this.memo.size >= this.maxMemo) {
      throw invalid(`pickle memo has more than ${this.maxMemo} entries at offset ${this.opStart}`);
    }
    this.memo.set(index, this.top());
  }

  private get(index: number): void {
    const value = this.memo.get(index);
    if (value === undefined) {
      throw invalid(
        `malformed pickle: memo entry ${index} read at offset ${this.opStart} is unset`,
      );
    }
    this.push(value);
  }

  // --- Containers. ---

  private list(value: PickleValue): PickleValue[] {
    if (!Array.isArray(value)) {
      throw invalid(`malformed pickle: append to ${describe(value)} at offset ${this.opStart}`);
    }
    return value;
  }

  private dict(value: PickleValue): PickleDict {
    if (!(value instanceof PickleDict)) {
      throw invalid(`malformed pickle: setitem on ${describe(value)} at offset ${this.opStart}`);
    }
    return value;
  }

  private setItems(dict: PickleDict, flat: PickleValue[]): void {
    if (flat.length % 2 !== 0) {
      throw invalid(`malformed pickle: odd number of dict items at offset ${this.opStart}`);
    }
    for (let i = 0; i < flat.length; i += 2) {
      const key = flat[i]!;
      if (!isKey(key)) {
        throw invalid(`unsupported dict key (${describe(key)}) at offset ${this.opStart}`);
      }
      dict.entries.set(key, flat[i + 1]!);
    }
  }

  // --- Globals and calls: the security boundary. ---

  private resolveGlobal(module: string, name: string): PickleGlobal {
    const qualified = `${module}.${name}`;
    const role = ALLOWED_GLOBALS.get(qualified);
    if (!role) {
      throw invalid(
        `forbidden global ${quote(qualified)} at offset ${this.opStart}: a checkpoint may ` +
          `only reference collections.OrderedDict and torch's tensor and storage types; ` +
          `refusing to load a pickle that could run code`,
      );
    }
    return new PickleGlobal(module, name, role);
  }

  private call(callable: PickleValue, args: PickleValue, opcode: string): PickleValue {
    if (!(callable instanceof PickleGlobal) || callable.role === "type") {
      throw invalid(
        `refusing ${opcode} on ${describe(callable)} at offset ${this.opStart}: ` +
          `not an allow-listed callable`,
      );
    }
    if (!(args instanceof PickleTuple)) {
      throw invalid(`malformed pickle: ${opcode} arguments at offset ${this.opStart} not a tuple`);
    }
    if (callable.role === "dict") {
      if (args.items.length > 0) {
        throw invalid(
          `unsupported ${callable.qualifiedName} with arguments at offset ${this.opStart}`,
        );
      }
      return new PickleDict();
    }
    return new PickleCall(callable, args.items);
  }
}
