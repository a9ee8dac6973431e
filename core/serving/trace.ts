/**
 * @module
 * What a request is told about how it was served, filled in by the data plane
 * as it goes and reported by the HTTP layer on the way out (also when the
 * request fails part way): the pinned version, the alias that chose it, the
 * runtime that ran it, and phase timings.
 */
import type { RuntimeName } from "../runtimes/runtime";
import { Timing } from "./timing";

export class Trace {
  readonly timing = new Timing();
  /** `name@version` of the version that answers. */
  model?: string;
  /** The alias that chose the version, if one did. */
  alias?: string;
  /** What ran it: an edge runtime, or "origin" when the GPU origin answered. */
  runtime?: RuntimeName;
  /** How many times the compute ran (benchmarks only; unset means once). */
  repeat?: number;
  /** How many times the decode ran (benchmarks only; unset means once). */
  decodeRepeat?: number;
  /** Whether the version had to be loaded into this isolate for this request. */
  coldLoad?: boolean;
  /** The response body's size in bytes, when the answer was encoded here. */
  bytesOut?: number;
}
