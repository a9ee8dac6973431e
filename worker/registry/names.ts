/**
 * @module
 * Model names and version numbers as they may appear in URLs and object keys.
 * Anything outside these forms is refused before it can become an R2 key.
 */
import { invalid } from "../errors";

/** Lowercase ASCII only: no slashes, no traversal, no Unicode look-alikes. */
export const MODEL_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Versions are positive integers, as in Triton's model repository. */
export const VERSION_PATTERN = /^[1-9][0-9]{0,8}$/;

export function checkModelName(name: string): string {
  if (!MODEL_NAME_PATTERN.test(name)) {
    throw invalid(
      `invalid model name ${JSON.stringify(name.slice(0, 80))}: use 1-64 characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit`,
    );
  }
  return name;
}

export function parseVersion(version: string): number {
  if (!VERSION_PATTERN.test(version)) {
    throw invalid(
      `invalid model version ${JSON.stringify(version.slice(0, 80))}: versions are positive integers such as 1, 2, 3`,
    );
  }
  return Number(version);
}
