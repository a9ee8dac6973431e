/**
 * @module
 * The JSON text of an inference response. JSON has no NaN or infinities, and
 * the OIP document's `tensor_data` allows numbers, strings and booleans but not
 * `null`; so a non-finite float is written as the string `"NaN"`,
 * `"Infinity"` or `"-Infinity"`, which validates against the document and which
 * Python's `float()` and numpy read back (`np.array(data, dtype=np.float32)`).
 * The binary tensor extension carries these values exactly.
 */
import type { InferenceResponse } from "./types";

/** How a non-finite number is spelled in response JSON. */
export function nonFiniteText(value: number): string {
  return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
}

function hasNonFinite(response: InferenceResponse): boolean {
  for (const output of response.outputs) {
    // An output sent as binary data has no `data` here.
    const data = (output.data ?? []) as readonly unknown[];
    for (let i = 0; i < data.length; i++) {
      const value = data[i];
      if (typeof value === "number" && !Number.isFinite(value)) return true;
    }
  }
  return false;
}

/** The response as JSON text, non-finite floats as strings (a replacer only when there are any). */
export function responseJson(response: InferenceResponse): string {
  if (!hasNonFinite(response)) return JSON.stringify(response);
  return JSON.stringify(response, (_key, value: unknown) =>
    typeof value === "number" && !Number.isFinite(value) ? nonFiniteText(value) : value,
  );
}
