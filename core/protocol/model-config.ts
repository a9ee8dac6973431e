/**
 * @module
 * Triton's model configuration extension: a published version described as
 * the JSON form of Triton's `ModelConfig` message (model_config.proto), so
 * tools that read `max_batch_size`, `dims` or `data_type` work against Pinion.
 */
import type { Manifest } from "../registry/manifest";
import type { TensorSpec } from "./datatypes";

/**
 * The `max_batch_size` reported for a model whose inputs and outputs all have a
 * dynamic first axis. Pinion has no batch limit of its own: a request's rows
 * are bounded by the body and response limits (`MAX_REQUEST_BYTES`,
 * `MAX_RESPONSE_BYTES`, `MAX_RESPONSE_ELEMENTS`). This is the number of rows a
 * client may plan for; larger batches are answered as long as they fit those
 * limits.
 */
export const CONFIG_MAX_BATCH_SIZE = 1024;

/** One tensor as Triton's config spells it. */
export interface ModelConfigTensor {
  name: string;
  /** `TYPE_FP32`, … ; BYTES is `TYPE_STRING`, as in Triton. */
  data_type: string;
  /** Without the batch axis when `max_batch_size` > 0; -1 marks a dynamic dimension. */
  dims: number[];
  /**
   * Set on an output the version's labels name the classes of (its last axis
   * has one class per label), as Triton marks a classifier's output; the labels
   * themselves are the config's `parameters.labels`.
   */
  label_filename?: string;
}

export interface ModelConfig {
  name: string;
  platform: string;
  backend: string;
  /** Every published version is served, so the policy is always `all`. */
  version_policy: { all: Record<string, never> };
  max_batch_size: number;
  input: ModelConfigTensor[];
  output: ModelConfigTensor[];
  /** Pinion's own fields, under a name Triton does not use. */
  parameters: Record<string, { string_value: string }>;
}

/** Triton's name for an OIP datatype: `TYPE_` and the datatype, BYTES being `TYPE_STRING`. */
export function tritonDataType(datatype: string): string {
  return datatype === "BYTES" ? "TYPE_STRING" : `TYPE_${datatype}`;
}

/** Whether every tensor's first axis is dynamic: the model batches over it. */
function batches(tensors: readonly TensorSpec[]): boolean {
  return tensors.every((tensor) => tensor.shape.length > 0 && tensor.shape[0] === -1);
}

/** The name a labelled output's `label_filename` gives: the labels artifact, as a file. */
export const LABEL_FILENAME = "labels.txt";

/**
 * The Triton-shaped configuration of one published version; `labels` (the
 * version's labels artifact, if it has one) are listed in `parameters.labels`,
 * one per line as published, and mark the outputs they name the classes of.
 */
export function modelConfig(manifest: Manifest, labels?: readonly string[]): ModelConfig {
  const batched = batches([...manifest.inputs, ...manifest.outputs]);
  const tensor = (spec: TensorSpec): ModelConfigTensor => ({
    name: spec.name,
    data_type: tritonDataType(spec.datatype),
    dims: batched ? spec.shape.slice(1) : [...spec.shape],
  });
  const labelled = (spec: TensorSpec): ModelConfigTensor =>
    labels && spec.shape.length > 0 && spec.shape[spec.shape.length - 1] === labels.length
      ? { ...tensor(spec), label_filename: LABEL_FILENAME }
      : tensor(spec);
  return {
    name: manifest.name,
    // Every published version is an ONNX model; the int8 runtime runs a plan compiled from it.
    platform: "onnxruntime_onnx",
    backend: manifest.runtime === "int8" ? "pinion_int8" : "onnxruntime",
    version_policy: { all: {} },
    max_batch_size: batched ? CONFIG_MAX_BATCH_SIZE : 0,
    input: manifest.inputs.map(tensor),
    output: manifest.outputs.map(labelled),
    parameters: {
      version: { string_value: String(manifest.version) },
      runtime: { string_value: manifest.runtime },
      ...(labels ? { labels: { string_value: labels.join("\n") } } : {}),
    },
  };
}
