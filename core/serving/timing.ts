/**
 * @module
 * Per-request phase timings, reported in `Server-Timing`. Note that workerd only
 * advances clocks across I/O (a Spectre mitigation), so a phase that is pure
 * computation can read 0 ms in production even though it took time.
 */

/**
 * `decode` is the request body parsed (UTF-8 and JSON.parse, or the binary
 * tensor data framing) and its inputs decoded into typed arrays; reading the
 * body off the wire is not in it.
 */
export type Phase = "resolve" | "decode" | "load" | "compute";

export class Timing {
  private readonly durations = new Map<Phase, number>([
    ["resolve", 0],
    ["decode", 0],
    ["load", 0],
    ["compute", 0],
  ]);

  async measure<T>(phase: Phase, work: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await work();
    } finally {
      this.durations.set(phase, this.durations.get(phase)! + performance.now() - start);
    }
  }

  entries(): [Phase, number][] {
    return [...this.durations];
  }
}
