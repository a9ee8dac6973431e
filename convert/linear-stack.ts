/**
 * @module
 * Turns the state_dict of a stack of `Linear` layers into a standard ONNX
 * model (opset 13, dynamic batch axis): Gemm(transB=1) per layer with the
 * chosen activation between layers — the graph `torch.onnx.export` writes for
 * such a module. Whatever cannot be inferred from the weights alone is refused.
 */
import { invalid } from "../core/errors";
import { ElemType, buildModel, type Initializer, type NodeSpec } from "./onnx";

export const ACTIVATIONS = ["relu", "tanh", "sigmoid", "gelu", "none"] as const;
export type Activation = (typeof ACTIVATIONS)[number];

/** The part of a tensor the converter needs (what `readStateDict` returns). */
export interface StateDictTensor {
  dtype: string;
  shape: number[];
  data: ArrayLike<number | bigint>;
}

export interface LinearLayer {
  /** The module path, e.g. `layer1` or `net.0`. */
  name: string;
  inFeatures: number;
  outFeatures: number;
  weightKey: string;
  /** [out, in], row-major, as PyTorch stores it. */
  weight: Float32Array;
  biasKey?: string;
  bias?: Float32Array;
}

const FLOAT_DTYPES = new Set(["float32", "float16", "bfloat16", "float64"]);

/** Groups `…weight`/`…bias` keys into Linear layers, in the order they are stored. */
export function linearLayers(stateDict: ReadonlyMap<string, StateDictTensor>): LinearLayer[] {
  const byName = new Map<
    string,
    { weight?: [string, StateDictTensor]; bias?: [string, StateDictTensor] }
  >();
  for (const [key, tensor] of stateDict) {
    const match = /^(?:(.*)\.)?(weight|bias)$/.exec(key);
    if (!match) {
      throw invalid(
        `'${key}' is not the weight or bias of a Linear layer; only stacks of Linear layers convert from .pth — export other models to ONNX with torch.onnx.export`,
      );
    }
    if (!FLOAT_DTYPES.has(tensor.dtype)) {
      throw invalid(`'${key}' holds ${tensor.dtype} values; Linear weights must be floating point`);
    }
    const name = match[1] ?? "";
    const entry = byName.get(name) ?? {};
    entry[match[2] as "weight" | "bias"] = [key, tensor];
    byName.set(name, entry);
  }
  if (byName.size === 0) throw invalid("the state_dict holds no tensors");

  const layers: LinearLayer[] = [];
  for (const [name, { weight, bias }] of byName) {
    const label = name || "(root)";
    if (!weight) throw invalid(`layer '${label}' has a bias but no weight`);
    const [weightKey, w] = weight;
    if (w.shape.length !== 2) {
      const kind = w.shape.length === 4 ? " (a convolution's)" : "";
      throw invalid(
        `'${weightKey}' has shape [${w.shape.join(", ")}]${kind}; a Linear weight is 2-D [out_features, in_features]`,
      );
    }
    const [outFeatures, inFeatures] = w.shape as [number, number];
    const layer: LinearLayer = {
      name: label,
      inFeatures,
      outFeatures,
      weightKey,
      weight: toFloat32(w),
    };
    if (bias) {
      const [biasKey, b] = bias;
      if (b.shape.length !== 1 || b.shape[0] !== outFeatures) {
        throw invalid(
          `'${biasKey}' has shape [${b.shape.join(", ")}]; layer '${label}' needs [${outFeatures}]`,
        );
      }
      layer.biasKey = biasKey;
      layer.bias = toFloat32(b);
    }
    const previous = layers.at(-1);
    if (previous && previous.outFeatures !== inFeatures) {
      throw invalid(
        `layer '${label}' takes ${inFeatures} inputs but the layer before it, '${previous.name}', produces ${previous.outFeatures}; the layers do not form a stack`,
      );
    }
    layers.push(layer);
  }
  return layers;
}

function toFloat32(tensor: StateDictTensor): Float32Array {
  return tensor.data instanceof Float32Array
    ? tensor.data
    : Float32Array.from(tensor.data as ArrayLike<number>);
}

export interface ConvertOptions {
  activation?: Activation;
  inputName?: string;
  outputName?: string;
}

/**
 * ONNX for the layer stack: input [batch, in] → Gemm → activation → … → Gemm
 * → output [batch, out]. The activation goes between layers, not after the last.
 */
export function linearStackToOnnx(layers: LinearLayer[], options: ConvertOptions = {}): Uint8Array {
  const activation = options.activation ?? "relu";
  const inputName = options.inputName ?? "input";
  const outputName = options.outputName ?? "output";
  const nodes: NodeSpec[] = [];
  const initializers: Initializer[] = [];
  let current = inputName;
  const constant = (name: string, value: number) => {
    if (!initializers.some((i) => i.name === name)) {
      initializers.push({ name, type: ElemType.FLOAT, dims: [], data: Float32Array.of(value) });
    }
    return name;
  };

  for (const [i, layer] of layers.entries()) {
    const last = i === layers.length - 1;
    initializers.push({
      name: layer.weightKey,
      type: ElemType.FLOAT,
      dims: [layer.outFeatures, layer.inFeatures],
      data: layer.weight,
    });
    const inputs = [current, layer.weightKey];
    if (layer.biasKey && layer.bias) {
      initializers.push({
        name: layer.biasKey,
        type: ElemType.FLOAT,
        dims: [layer.outFeatures],
        data: layer.bias,
      });
      inputs.push(layer.biasKey);
    }
    const gemmOut = last ? outputName : `${layer.name}.out`;
    nodes.push({
      op: "Gemm",
      name: layer.name,
      inputs,
      outputs: [gemmOut],
      attributes: { transB: 1 },
    });
    current = gemmOut;
    if (last || activation === "none") continue;

    const out = `${layer.name}.act`;
    switch (activation) {
      case "relu":
        nodes.push({ op: "Relu", inputs: [current], outputs: [out] });
        break;
      case "tanh":
        nodes.push({ op: "Tanh", inputs: [current], outputs: [out] });
        break;
      case "sigmoid":
        nodes.push({ op: "Sigmoid", inputs: [current], outputs: [out] });
        break;
      case "gelu": {
        // Opset 13 has no Gelu: the exact erf form, as torch.onnx exports nn.GELU().
        const p = `${layer.name}.gelu`;
        nodes.push({
          op: "Div",
          inputs: [current, constant("gelu.sqrt2", Math.SQRT2)],
          outputs: [`${p}.scaled`],
        });
        nodes.push({ op: "Erf", inputs: [`${p}.scaled`], outputs: [`${p}.erf`] });
        nodes.push({
          op: "Add",
          inputs: [`${p}.erf`, constant("gelu.one", 1)],
          outputs: [`${p}.plus1`],
        });
        nodes.push({ op: "Mul", inputs: [current, `${p}.plus1`], outputs: [`${p}.prod`] });
        nodes.push({
          op: "Mul",
          inputs: [`${p}.prod`, constant("gelu.half", 0.5)],
          outputs: [out],
        });
        break;
      }
    }
    current = out;
  }

  const first = layers[0]!;
  const lastLayer = layers.at(-1)!;
  return buildModel(
    nodes,
    [{ name: inputName, type: ElemType.FLOAT, dims: ["batch", first.inFeatures] }],
    [{ name: outputName, type: ElemType.FLOAT, dims: ["batch", lastLayer.outFeatures] }],
    13,
    initializers,
  );
}
