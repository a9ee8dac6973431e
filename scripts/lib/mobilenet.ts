/**
 * @module
 * A MobileNetV2-shaped ONNX model with synthetic weights, for benchmarks: the
 * real architecture (Sandler et al. 2018: a 3×3 stride-2 stem, inverted
 * residual blocks — 1×1 expansion, 3×3 depthwise, 1×1 linear projection, a
 * residual Add where shapes allow — ReLU6 as Clip(0, 6), a 1×1 conv to 1280,
 * global average pooling, a classifier), BatchNorm already folded as
 * `torch.onnx.export` leaves it, and He-initialised weights from a fixed seed,
 * so runs are comparable. Nothing about it is trained: it measures speed, not
 * accuracy.
 */
import { ElemType, buildModel, type Initializer, type NodeSpec } from "../../convert/onnx";

/** (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2. */
const BLOCKS: [number, number, number, number][] = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

export interface MobileNetV2 {
  onnx: Uint8Array;
  /** Multiply-accumulates per image in convolutions and the classifier. */
  macs: number;
  /** Multiply-accumulates per image in group-1 convolutions (the int8 GEMM's work). */
  gemmMacs: number;
  parameters: number;
}

/** Seeded normal samples (mulberry32 + Box–Muller). */
export function normals(seed: number): () => number {
  let state = seed >>> 0 || 1;
  const uniform = () => {
    let t = (state = (state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

export function mobileNetV2(size = 96, classes = 1000, seed = 2018): MobileNetV2 {
  const normal = normals(seed);
  const nodes: NodeSpec[] = [];
  const initializers: Initializer[] = [
    { name: "relu6_min", type: ElemType.FLOAT, dims: [], data: Float32Array.of(0) },
    { name: "relu6_max", type: ElemType.FLOAT, dims: [], data: Float32Array.of(6) },
  ];
  let macs = 0;
  let gemmMacs = 0;
  let parameters = 0;
  let next = 0;
  const fresh = (prefix: string) => `${prefix}_${next++}`;
  let h = size;
  let w = size;

  const conv = (
    x: string,
    cin: number,
    cout: number,
    k: number,
    stride: number,
    group: number,
    relu6: boolean,
  ): string => {
    const weight = fresh("w");
    const bias = fresh("b");
    const fanIn = (cin / group) * k * k;
    const std = Math.sqrt(2 / fanIn);
    const count = cout * (cin / group) * k * k;
    initializers.push(
      {
        name: weight,
        type: ElemType.FLOAT,
        dims: [cout, cin / group, k, k],
        data: Float32Array.from({ length: count }, () => normal() * std),
      },
      {
        name: bias,
        type: ElemType.FLOAT,
        dims: [cout],
        data: Float32Array.from({ length: cout }, () => normal() * 0.05),
      },
    );
    parameters += count + cout;
    const pad = (k - 1) / 2;
    h = Math.floor((h + 2 * pad - k) / stride) + 1;
    w = Math.floor((w + 2 * pad - k) / stride) + 1;
    const work = h * w * count;
    macs += work;
    if (group === 1) gemmMacs += work;
    const y = fresh("conv");
    nodes.push({
      op: "Conv",
      inputs: [x, weight, bias],
      outputs: [y],
      attributes: {
        kernel_shape: [k, k],
        strides: [stride, stride],
        pads: [pad, pad, pad, pad],
        group,
      },
    });
    if (!relu6) return y;
    const z = fresh("relu6");
    nodes.push({ op: "Clip", inputs: [y, "relu6_min", "relu6_max"], outputs: [z] });
    return z;
  };

  let x = conv("input", 3, 32, 3, 2, 1, true);
  let channels = 32;
  for (const [t, c, n, s] of BLOCKS) {
    for (let i = 0; i < n; i++) {
      const stride = i === 0 ? s : 1;
      const hidden = channels * t;
      let y = t === 1 ? x : conv(x, channels, hidden, 1, 1, 1, true);
      y = conv(y, hidden, hidden, 3, stride, hidden, true);
      y = conv(y, hidden, c, 1, 1, 1, false);
      if (stride === 1 && channels === c) {
        const sum = fresh("add");
        nodes.push({ op: "Add", inputs: [x, y], outputs: [sum] });
        y = sum;
      }
      x = y;
      channels = c;
    }
  }
  x = conv(x, channels, 1280, 1, 1, 1, true);
  nodes.push({ op: "GlobalAveragePool", inputs: [x], outputs: ["pooled"] });
  nodes.push({ op: "Flatten", inputs: ["pooled"], outputs: ["features"], attributes: { axis: 1 } });
  const fcW = Float32Array.from({ length: classes * 1280 }, () => normal() * Math.sqrt(1 / 1280));
  initializers.push(
    { name: "fc_w", type: ElemType.FLOAT, dims: [classes, 1280], data: fcW },
    { name: "fc_b", type: ElemType.FLOAT, dims: [classes], data: new Float32Array(classes) },
  );
  parameters += classes * 1281;
  macs += classes * 1280;
  gemmMacs += classes * 1280;
  nodes.push({
    op: "Gemm",
    inputs: ["features", "fc_w", "fc_b"],
    outputs: ["logits"],
    attributes: { transB: 1 },
  });
  const onnx = buildModel(
    nodes,
    [{ name: "input", type: ElemType.FLOAT, dims: ["batch", 3, size, size] }],
    [{ name: "logits", type: ElemType.FLOAT, dims: ["batch", classes] }],
    13,
    initializers,
  );
  return { onnx, macs, gemmMacs, parameters };
}
