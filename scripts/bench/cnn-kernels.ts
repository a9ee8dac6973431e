/**
 * @module
 * The convolution part of `npm run bench:kernels`: MobileNetV2-like layers at
 * batch 1 through the kernels' flat ABI (NHWC), against onnxruntime-web's
 * fp32 Conv (NCHW, graph optimisations on, one thread) on the same layer.
 * GOP/s = 2·MACs / time. Also prints what an NCHW activation layout would
 * add per layer: one `nhwcToNchw` of the layer's output (the GEMM writes
 * [pixels × cout], i.e. NHWC), as a share of the layer's time.
 */
import { readFile } from "node:fs/promises";
import { kernelsPath } from "../lib/kernels-node";
import { ort, session } from "../lib/onnx-graph";
import { oneNodeModel } from "../lib/onnx-node-model";

type Runner = () => unknown | Promise<unknown>;

interface Layer {
  label: string;
  h: number;
  c: number;
  k: number;
  stride: number;
  cout: number;
  depthwise?: boolean;
}

/** Input side h (square), channels in, kernel, stride, channels out (same padding). */
const LAYERS: Layer[] = [
  { label: "stem 3×3 s2", h: 96, c: 3, k: 3, stride: 2, cout: 32 },
  { label: "3×3 s1", h: 24, c: 32, k: 3, stride: 1, cout: 64 },
  { label: "1×1 expand", h: 24, c: 24, k: 1, stride: 1, cout: 144 },
  { label: "1×1 project", h: 12, c: 192, k: 1, stride: 1, cout: 64 },
  { label: "dw 3×3 s1", h: 48, c: 96, k: 3, stride: 1, cout: 96, depthwise: true },
  { label: "dw 3×3 s2", h: 24, c: 144, k: 3, stride: 2, cout: 144, depthwise: true },
  { label: "dw 3×3 s1", h: 12, c: 384, k: 3, stride: 1, cout: 384, depthwise: true },
];

interface Abi {
  memory: WebAssembly.Memory;
  allocate(bytes: number): number;
  mark(): number;
  release(to: number): void;
  packColumns(...args: number[]): void;
  packedBytes(k: number, n: number): number;
  convInt8ScratchBytes(...args: number[]): number;
  convInt8(...args: number[]): number;
  depthwiseConv(...args: number[]): void;
  nhwcToNchw(x: number, batch: number, c: number, hw: number, y: number): void;
}

function seeded(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

const fmt = (v: number, digits = 1) => v.toFixed(digits).padStart(8);

/**
 * Measures every layer whose label matches `only` (all when unset) with the
 * caller's `measure` (median seconds per call of each runner) and prints a
 * table; `peak` is the pmaddwd estimate in GOP/s.
 */
export async function benchConvolutions(
  measure: (runners: Runner[]) => Promise<number[]>,
  print: (line: string) => void,
  peak: number,
  only?: string,
): Promise<void> {
  const bytes = await readFile(kernelsPath("release"));
  const abi = (await WebAssembly.instantiate(await WebAssembly.compile(new Uint8Array(bytes)), {}))
    .exports as unknown as Abi;
  const put = (data: Float32Array | Int8Array | Uint8Array) => {
    const ptr = abi.allocate(data.byteLength);
    new Uint8Array(abi.memory.buffer, ptr, data.byteLength).set(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
    return ptr;
  };
  print("");
  print("convolutions, batch 1, NHWC in WASM (ORT: NCHW fp32 Conv); GOP/s = 2·MACs / time");
  print(
    [
      "layer".padEnd(14),
      "in → out".padEnd(22),
      "MMACs".padStart(6),
      "pinion".padStart(8),
      "ort f32".padStart(8),
      "ratio".padStart(7),
      "%peak".padStart(6),
      "→NCHW".padStart(7),
    ].join(" "),
  );
  for (const layer of LAYERS) {
    const name = `${layer.label} ${layer.h}²×${layer.c}`;
    if (only && !`cnn ${name}`.includes(only)) continue;
    const { h, c, k, stride, cout } = layer;
    const pad = (k - 1) >> 1;
    const out = Math.floor((h + 2 * pad - k) / stride) + 1;
    const taps = layer.depthwise ? k * k : k * k * c;
    const macs = out * out * cout * taps;
    const rand = seeded(h * 7919 + c * 104729 + k);
    const x = Float32Array.from({ length: h * h * c }, () => rand() * 2 - 1);
    const mark = abi.mark();
    const px = put(x);
    const py = abi.allocate(out * out * cout * 4);
    const pt = abi.allocate(out * out * cout * 4);
    const bias = Float32Array.from({ length: cout }, () => rand() * 0.1);
    const pbias = put(bias);
    let pinion: Runner;
    let wf: Float32Array;
    if (layer.depthwise) {
      wf = Float32Array.from({ length: k * k * c }, () => rand() - 0.5);
      const pw = put(wf); // tap-major (the ORT copy below is channel-major; the values do not matter)
      pinion = () =>
        abi.depthwiseConv(
          px,
          1,
          h,
          h,
          c,
          k,
          k,
          stride,
          stride,
          pad,
          pad,
          out,
          out,
          pw,
          pbias,
          2,
          0,
          6,
          py,
        );
    } else {
      const kk = k * k * c;
      const w8 = Int8Array.from({ length: kk * cout }, () => Math.floor(rand() * 256) - 128);
      const scales = Float32Array.from({ length: cout }, () => 0.01);
      wf = Float32Array.from(w8, (v) => v * 0.01);
      const packed = abi.allocate(abi.packedBytes(kk, cout));
      abi.packColumns(put(w8), kk, cout, 1, put(Int8Array.of(0)), 0, packed);
      const scratch = abi.allocate(abi.convInt8ScratchBytes(h, h, c, k, k, out, out, cout));
      const pscales = put(scales);
      pinion = () =>
        abi.convInt8(
          px,
          1,
          h,
          h,
          c,
          k,
          k,
          stride,
          stride,
          pad,
          pad,
          out,
          out,
          packed,
          cout,
          pscales,
          pbias,
          2,
          0,
          6,
          py,
          scratch,
        );
    }
    const model = oneNodeModel(
      "Conv",
      [{ name: "x", dims: [1, c, h, h] }],
      [
        { name: "w", dims: layer.depthwise ? [c, 1, k, k] : [cout, c, k, k], data: wf },
        { name: "b", dims: [cout], data: bias },
      ],
      {
        kernel_shape: [k, k],
        strides: [stride, stride],
        pads: [pad, pad, pad, pad],
        group: layer.depthwise ? c : 1,
      },
    );
    const s = await session(model, true);
    const input = { x: new ort.Tensor("float32", x, [1, c, h, h]) };
    const [ours, theirs, transpose] = (await measure([
      pinion,
      () => s.run(input),
      () => abi.nhwcToNchw(py, 1, cout, out * out, pt),
    ])) as [number, number, number];
    abi.release(mark);
    const gops = (seconds: number) => (2 * macs) / seconds / 1e9;
    print(
      [
        layer.label.padEnd(14),
        `${h}²×${c} → ${out}²×${cout}`.padEnd(22),
        (macs / 1e6).toFixed(2).padStart(6),
        fmt(gops(ours)),
        fmt(gops(theirs)),
        `${(theirs / ours).toFixed(2)}×`.padStart(7),
        (layer.depthwise ? "-" : `${((gops(ours) / peak) * 100).toFixed(0)}%`).padStart(6),
        `${((transpose / ours) * 100).toFixed(0)}%`.padStart(7),
      ].join(" "),
    );
  }
}
