/**
 * @module
 * Open Inference Protocol v2 (REST) payloads: request schemas, validated with
 * zod, and the response shapes Pinion produces. Tensor `data` is left `unknown`
 * here; the tensor codec checks it element by element with precise messages.
 */
import { z } from "zod";
import { echo, invalid } from "../errors";
import type { TensorSpec } from "./datatypes";

const parameterValue = z.union([z.string(), z.number(), z.boolean()]);
export const parametersSchema = z.record(z.string(), parameterValue);
export type Parameters = z.infer<typeof parametersSchema>;

const requestInputSchema = z.object({
  name: z.string().min(1),
  shape: z.array(z.unknown()),
  datatype: z.string(),
  parameters: parametersSchema.optional(),
  // Optional here so that a missing `data` gets the codec's clearer message.
  data: z.unknown().optional(),
});
export type RequestInput = Omit<z.infer<typeof requestInputSchema>, "shape"> & { shape: number[] };

const requestOutputSchema = z.object({
  name: z.string().min(1),
  parameters: parametersSchema.optional(),
});
export type RequestOutput = z.infer<typeof requestOutputSchema>;

export const inferenceRequestSchema = z.object({
  id: z.string().optional(),
  parameters: parametersSchema.optional(),
  inputs: z.array(requestInputSchema).min(1, "at least one input is required"),
  outputs: z.array(requestOutputSchema).optional(),
});
export type InferenceRequest = Omit<z.infer<typeof inferenceRequestSchema>, "inputs"> & {
  inputs: RequestInput[];
};

/** Validates a parsed JSON body as an inference request (400 on any mismatch). */
export function parseInferenceRequest(body: unknown): InferenceRequest {
  const result = inferenceRequestSchema.safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = issue.path.length ? echo(issue.path.join(".")) : "request body";
    throw invalid(`invalid inference request: ${path}: ${issue.message}`);
  }
  // Dimensions are checked (and bounded) by the tensor codec, with better messages than a schema.
  return result.data as InferenceRequest;
}

export interface ResponseOutput {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: Parameters;
  /** Absent for an output sent as binary tensor data (`parameters.binary_data_size`). */
  data?: number[] | boolean[] | string[];
}

export interface InferenceResponse {
  model_name: string;
  model_version: string;
  id?: string;
  parameters?: Parameters;
  outputs: ResponseOutput[];
}

export interface ServerMetadata {
  name: string;
  version: string;
  extensions: string[];
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export interface ModelReady {
  name: string;
  ready: boolean;
}
