/**
 * What happens to int32 accumulators after the GEMM.
 *
 *   requantize (QLinearMatMul):  y = saturate(nearest(f32(acc) * multiplier[col]) + zero_point)
 *                                multiplier[col] = (a_scale * b_scale[col]) / y_scale, in f32
 *   dequantize (fused layers):   y = act(f32(acc) * (a_scale[row] * w_scale[col]) + bias[col])
 *
 * Both as ONNX Runtime computes them, op for op in f32, so results are bit-exact.
 */

export const ACTIVATION_NONE: i32 = 0;
export const ACTIVATION_RELU: i32 = 1;

/**
 * Requantises M×N int32 accumulators at `acc` to bytes at `y`. `bScales` holds
 * one f32 per column when `perColumn`, else one.
 */
export function requantize(
  acc: usize, m: i32, n: i32,
  aScale: f32, bScales: usize, perColumn: bool, yScale: f32,
  yZeroPoint: i32, signed: bool, y: usize,
): void {
  const lo: i32 = signed ? -128 : 0;
  const hi: i32 = signed ? 127 : 255;
  // Clamp in f32 before rounding (as ORT does): the conversion to i32 is then always in range.
  const minimum = <f32>(lo - yZeroPoint);
  const maximum = <f32>(hi - yZeroPoint);
  for (let col = 0; col < n; col++) {
    const multiplier: f32 = (aScale * load<f32>(bScales + (perColumn ? <usize>col << 2 : 0))) / yScale;
    for (let r = 0; r < m; r++) {
      const at = <usize>r * <usize>n + <usize>col;
      const v: f32 = min(max(<f32>load<i32>(acc + (at << 2)) * multiplier, minimum), maximum);
      store<u8>(y + at, <u8>(<i32>nearest(v) + yZeroPoint));
    }
  }
}

/**
 * Dequantises M×N int32 accumulators to f32: each row with its own activation
 * scale (one f32 per row at `aScales`), each column with its weight scale;
 * adds the bias (none when `bias` is 0) and applies the activation. The
 * product a_scale[row] · w_scale[col] is rounded to f32 first, then the
 * accumulator is multiplied by it, as the ONNX graph does.
 */
export function dequantizeAccumulators(
  acc: usize, m: i32, n: i32,
  aScales: usize, wScales: usize, bias: usize, activation: i32, y: usize,
): void {
  const zero = f32x4.splat(0);
  for (let r = 0; r < m; r++) {
    const aScale = load<f32>(aScales + (<usize>r << 2));
    const as = f32x4.splat(aScale);
    const rowAcc = acc + ((<usize>r * <usize>n) << 2);
    const rowOut = y + ((<usize>r * <usize>n) << 2);
    let col = 0;
    for (; col + 4 <= n; col += 4) {
      const off = <usize>col << 2;
      let v = f32x4.mul(f32x4.convert_i32x4_s(v128.load(rowAcc + off)), f32x4.mul(as, v128.load(wScales + off)));
      if (bias) v = f32x4.add(v, v128.load(bias + off));
      // pmax is one instruction; v is never NaN (finite products and sums), where it would differ.
      if (activation == ACTIVATION_RELU) v = f32x4.pmax(zero, v);
      v128.store(rowOut + off, v);
    }
    for (; col < n; col++) {
      const off = <usize>col << 2;
      let v: f32 = <f32>load<i32>(rowAcc + off) * (aScale * load<f32>(wScales + off));
      if (bias) v = v + load<f32>(bias + off);
      if (activation == ACTIVATION_RELU) v = max(v, <f32>0);
      store<f32>(rowOut + off, v);
    }
  }
}
