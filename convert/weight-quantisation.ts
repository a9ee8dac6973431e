/**
 * @module
 * How the int8 compilers quantise weights: per output channel, symmetric,
 * with the clipping range that minimises the squared error; and the SQNR
 * figures their reports print.
 */

/** Signal-to-quantisation-noise ratio of `scale`-quantised weights, in dB. */
function quantiseChannel(w: Float32Array, n: number, col: number, scale: number, out?: Int8Array) {
  let signal = 0;
  let noise = 0;
  for (let i = col; i < w.length; i += n) {
    const v = w[i]!;
    const q = scale > 0 ? Math.max(-127, Math.min(127, Math.round(v / scale))) : 0;
    if (out) out[i] = q;
    const e = v - q * scale;
    signal += v * v;
    noise += e * e;
  }
  return { signal, noise };
}

export const db = (signal: number, noise: number) =>
  noise === 0 ? 200 : 10 * Math.log10(signal / noise);

/**
 * Per-output-channel symmetric int8 weights of a K×N matrix (row-major, a
 * column per output channel). Each channel's clipping range is the one (of 60
 * candidates between 40 % and 100 % of its absmax) with the least squared
 * error; plain absmax is reported beside it.
 */
export function quantiseWeights(weights: Float32Array, k: number, n: number) {
  const q = new Int8Array(k * n);
  const scales = new Float32Array(n);
  let signal = 0;
  let noise = 0;
  let absmaxNoise = 0;
  for (let col = 0; col < n; col++) {
    let absmax = 0;
    for (let i = col; i < weights.length; i += n) absmax = Math.max(absmax, Math.abs(weights[i]!));
    const baseline = quantiseChannel(weights, n, col, Math.fround(absmax / 127));
    let best = { scale: Math.fround(absmax / 127), noise: baseline.noise };
    for (let step = 1; step < 60; step++) {
      const scale = Math.fround((absmax * (1 - step * 0.01)) / 127);
      const { noise: e } = quantiseChannel(weights, n, col, scale);
      if (e < best.noise) best = { scale, noise: e };
    }
    quantiseChannel(weights, n, col, best.scale, q);
    scales[col] = best.scale;
    signal += baseline.signal;
    noise += best.noise;
    absmaxNoise += baseline.noise;
  }
  return { q, scales, sqnrDb: db(signal, noise), absmaxSqnrDb: db(signal, absmaxNoise) };
}
