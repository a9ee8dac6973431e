/**
 * @module
 * The peak the int8 GEMM is measured against: its inner instruction, `pmaddwd`
 * (`i32x4.dot_i16x8_s` in WASM SIMD), issued twice per cycle, 8 MACs each, at
 * the clock the OS reports for this CPU.
 */
import { readFileSync } from "node:fs";
import { cpus } from "node:os";

/** GOP/s at two `pmaddwd` (8 MACs each, 2 ops a MAC) per cycle, and the clock used; undefined when unknown. */
export function pmaddwdPeakGops(): { gops: number; mhz: number } | undefined {
  // Node reports 0 on some VMs; /proc/cpuinfo still says the clock.
  let mhz = cpus()[0]?.speed ?? 0;
  if (!mhz) {
    try {
      mhz = Math.round(
        Number(/cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? 0),
      );
    } catch {
      mhz = 0;
    }
  }
  return mhz > 0 ? { gops: (2 * 8 * 2 * mhz * 1e6) / 1e9, mhz } : undefined;
}
