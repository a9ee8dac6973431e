/**
 * Int8 matrix multiplication with int32 accumulation.
 *
 * Both operands are widened to i16 with their zero points already subtracted
 * (values in [-255, 255]), K padded with zeros to a multiple of 8, so the hot
 * loop is nothing but loads, `i32x4.dot_i16x8_s` and adds:
 *
 *   A (activations) -> `widenRows`:   M rows of Kp i16, row-major
 *   B (weights)     -> `packColumns`: Np columns of Kp i16, column after column
 *                      (N padded with zero columns to a multiple of 4)
 *
 * Weights are packed once, at load; activations are widened per call. Integer
 * sums are exact and associative modulo 2^32, so the blocking below gives the
 * same bits as any other summation order (ONNX MatMulInteger's contract).
 */

export const K_ALIGN: i32 = 8;
export const N_ALIGN: i32 = 4;

// @ts-ignore: decorator
@inline
export function paddedK(k: i32): i32 {
  return (k + K_ALIGN - 1) & ~(K_ALIGN - 1);
}

// @ts-ignore: decorator
@inline
export function paddedN(n: i32): i32 {
  return (n + N_ALIGN - 1) & ~(N_ALIGN - 1);
}

// @ts-ignore: decorator
@inline
function loadByte(p: usize, signed: bool): i32 {
  return signed ? <i32>load<i8>(p) : <i32>load<u8>(p);
}

/**
 * Widens M×K bytes at `a` (row-major) to M×Kp i16 at `out`, minus the zero
 * point: one per tensor (`zeroPointPerRow` false, value at `zeroPoints`) or
 * one per row.
 */
export function widenRows(
  a: usize, m: i32, k: i32, signed: bool,
  zeroPoints: usize, zeroPointPerRow: bool, out: usize,
): void {
  const kp = paddedK(k);
  for (let r = 0; r < m; r++) {
    const zp = loadByte(zeroPoints + (zeroPointPerRow ? <usize>r : 0), signed);
    const zpv = i16x8.splat(<i16>zp);
    const src = a + <usize>r * <usize>k;
    const dst = out + ((<usize>r * <usize>kp) << 1);
    let i = 0;
    for (; i + 16 <= k; i += 16) {
      const bytes = v128.load(src + <usize>i);
      const lo = signed ? i16x8.extend_low_i8x16_s(bytes) : i16x8.extend_low_i8x16_u(bytes);
      const hi = signed ? i16x8.extend_high_i8x16_s(bytes) : i16x8.extend_high_i8x16_u(bytes);
      v128.store(dst + (<usize>i << 1), i16x8.sub(lo, zpv));
      v128.store(dst + (<usize>i << 1), i16x8.sub(hi, zpv), 16);
    }
    for (; i < k; i++) store<i16>(dst + (<usize>i << 1), <i16>(loadByte(src + <usize>i, signed) - zp));
    for (; i < kp; i++) store<i16>(dst + (<usize>i << 1), 0);
  }
}

/**
 * Packs the K×N byte matrix at `b` (row-major, as MatMul's B) into Np columns
 * of Kp i16 at `out`, minus the zero point: one per tensor or one per column.
 * `out` must hold `packedBytes(k, n)` bytes.
 */
export function packColumns(
  b: usize, k: i32, n: i32, signed: bool,
  zeroPoints: usize, zeroPointPerColumn: bool, out: usize,
): void {
  const kp = paddedK(k);
  const np = paddedN(n);
  for (let c = 0; c < np; c++) {
    const dst = out + ((<usize>c * <usize>kp) << 1);
    if (c >= n) {
      memory.fill(dst, 0, <usize>kp << 1);
      continue;
    }
    const zp = loadByte(zeroPoints + (zeroPointPerColumn ? <usize>c : 0), signed);
    let i = 0;
    for (; i < k; i++) {
      store<i16>(dst + (<usize>i << 1), <i16>(loadByte(b + <usize>i * <usize>n + <usize>c, signed) - zp));
    }
    for (; i < kp; i++) store<i16>(dst + (<usize>i << 1), 0);
  }
}

export function packedBytes(k: i32, n: i32): usize {
  return (<usize>paddedN(n) * <usize>paddedK(k)) << 1;
}

// @ts-ignore: decorator
@inline
function hsum(v: v128): i32 {
  const pairs = i32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return i32x4.extract_lane(i32x4.add(pairs, i32x4.shuffle(pairs, pairs, 1, 0, 3, 2)), 0);
}

/**
 * C[M×N] (i32, row-major, row stride `n`) = A16[M×Kp] · B16[Np×Kp]ᵀ.
 * Four rows × two columns per step while four rows remain (8 accumulators,
 * 6 loads and 8 dot products per 8 k); then one row × four columns.
 */
export function gemmI16(a16: usize, m: i32, k: i32, b16: usize, n: i32, c: usize): void {
  if (m <= 0 || n <= 0) return;
  const kp = paddedK(k);
  const rowBytes = <usize>kp << 1;
  const np = paddedN(n);
  let r = 0;
  for (; r + 4 <= m; r += 4) {
    const a0 = a16 + <usize>r * rowBytes;
    const a1 = a0 + rowBytes;
    const a2 = a1 + rowBytes;
    const a3 = a2 + rowBytes;
    for (let col = 0; col < np; col += 2) {
      const b0 = b16 + <usize>col * rowBytes;
      const b1 = b0 + rowBytes;
      let c00 = i32x4.splat(0), c01 = i32x4.splat(0);
      let c10 = i32x4.splat(0), c11 = i32x4.splat(0);
      let c20 = i32x4.splat(0), c21 = i32x4.splat(0);
      let c30 = i32x4.splat(0), c31 = i32x4.splat(0);
      for (let off: usize = 0; off < rowBytes; off += 16) {
        const w0 = v128.load(b0 + off);
        const w1 = v128.load(b1 + off);
        const x0 = v128.load(a0 + off);
        c00 = i32x4.add(c00, i32x4.dot_i16x8_s(x0, w0));
        c01 = i32x4.add(c01, i32x4.dot_i16x8_s(x0, w1));
        const x1 = v128.load(a1 + off);
        c10 = i32x4.add(c10, i32x4.dot_i16x8_s(x1, w0));
        c11 = i32x4.add(c11, i32x4.dot_i16x8_s(x1, w1));
        const x2 = v128.load(a2 + off);
        c20 = i32x4.add(c20, i32x4.dot_i16x8_s(x2, w0));
        c21 = i32x4.add(c21, i32x4.dot_i16x8_s(x2, w1));
        const x3 = v128.load(a3 + off);
        c30 = i32x4.add(c30, i32x4.dot_i16x8_s(x3, w0));
        c31 = i32x4.add(c31, i32x4.dot_i16x8_s(x3, w1));
      }
      const out = c + ((<usize>r * <usize>n + <usize>col) << 2);
      const stride = <usize>n << 2;
      store<i32>(out, hsum(c00));
      store<i32>(out + stride, hsum(c10));
      store<i32>(out + 2 * stride, hsum(c20));
      store<i32>(out + 3 * stride, hsum(c30));
      if (col + 1 < n) {
        store<i32>(out, hsum(c01), 4);
        store<i32>(out + stride, hsum(c11), 4);
        store<i32>(out + 2 * stride, hsum(c21), 4);
        store<i32>(out + 3 * stride, hsum(c31), 4);
      }
      if (col + 2 >= n) break;
    }
  }
  for (; r < m; r++) {
    const a0 = a16 + <usize>r * rowBytes;
    for (let col = 0; col < n; col += 4) {
      const b0 = b16 + <usize>col * rowBytes;
      const b1 = b0 + rowBytes;
      const b2 = b1 + rowBytes;
      const b3 = b2 + rowBytes;
      let s0 = i32x4.splat(0), s1 = i32x4.splat(0), s2 = i32x4.splat(0), s3 = i32x4.splat(0);
      for (let off: usize = 0; off < rowBytes; off += 16) {
        const x = v128.load(a0 + off);
        s0 = i32x4.add(s0, i32x4.dot_i16x8_s(x, v128.load(b0 + off)));
        s1 = i32x4.add(s1, i32x4.dot_i16x8_s(x, v128.load(b1 + off)));
        s2 = i32x4.add(s2, i32x4.dot_i16x8_s(x, v128.load(b2 + off)));
        s3 = i32x4.add(s3, i32x4.dot_i16x8_s(x, v128.load(b3 + off)));
      }
      const out = c + ((<usize>r * <usize>n + <usize>col) << 2);
      store<i32>(out, hsum(s0));
      if (col + 1 < n) store<i32>(out, hsum(s1), 4);
      if (col + 2 < n) store<i32>(out, hsum(s2), 8);
      if (col + 3 < n) store<i32>(out, hsum(s3), 12);
    }
  }
}
