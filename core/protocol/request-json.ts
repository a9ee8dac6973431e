/**
 * @module
 * The JSON body of an inference request, with messages that say what is wrong.
 * (The body is size-limited before it is read.)
 */
import { invalid } from "../errors";

export function decodeRequestJson(text: string): unknown {
  if (text.trim() === "") throw invalid("request body is empty; send an inference request as JSON");
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalid(`request body is not valid JSON: ${(error as Error).message}`);
  }
}
