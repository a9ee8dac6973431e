/**
 * @module
 * Mapping between OIP datatypes and onnxruntime's tensor types, and reading a
 * session's input/output signature as OIP tensor specs.
 */
import type { InferenceSession, Tensor as OrtTensor } from "onnxruntime-web";
import { invalid, unavailable } from "../../errors";
import type { Datatype, TensorSpec } from "../../protocol/datatypes";

const TO_ORT: Record<Datatype, OrtTensor.Type> = {
  BOOL: "bool",
  UINT8: "uint8",
  UINT16: "uint16",
  UINT32: "uint32",
  UINT64: "uint64",
  INT8: "int8",
  INT16: "int16",
  INT32: "int32",
  INT64: "int64",
  FP32: "float32",
  FP64: "float64",
};

const FROM_ORT = new Map<string, Datatype>(
  Object.entries(TO_ORT).map(([oip, ort]) => [ort, oip as Datatype]),
);

export const toOrtType = (datatype: Datatype): OrtTensor.Type => TO_ORT[datatype];

export function fromOrtType(type: string, what: string): Datatype {
  const datatype = FROM_ORT.get(type);
  if (!datatype) throw unavailable(`${what} has ONNX type '${type}', which Pinion cannot serve`);
  return datatype;
}

/** Symbolic or unknown dimensions (`"batch"`, -1) become -1, as OIP asks. */
export function specsFromMetadata(
  metadata: readonly InferenceSession.ValueMetadata[],
  kind: "input" | "output",
): TensorSpec[] {
  return metadata.map((value) => {
    const what = `${kind} '${value.name}'`;
    if (!value.isTensor) throw unavailable(`${what} is not a tensor, which Pinion cannot serve`);
    return {
      name: value.name,
      datatype: fromOrtType(value.type, what),
      shape: value.shape.map((dim) => (typeof dim === "number" && dim >= 0 ? dim : -1)),
    };
  });
}

/**
 * Opens an ONNX model just long enough to read its signature; used at publish
 * time so a model that ORT cannot load is refused then, not at the first request.
 */
export async function readOnnxSignature(
  ort: typeof import("onnxruntime-web"),
  bytes: Uint8Array,
): Promise<{ inputs: TensorSpec[]; outputs: TensorSpec[] }> {
  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes);
  } catch (cause) {
    throw invalid(
      `not a loadable ONNX model: ${cause instanceof Error ? cause.message : String(cause)}`,
    );
  }
  try {
    return {
      inputs: specsFromMetadata(session.inputMetadata, "input"),
      outputs: specsFromMetadata(session.outputMetadata, "output"),
    };
  } finally {
    await session.release();
  }
}
