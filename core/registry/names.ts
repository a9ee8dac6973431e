/**
 * @module
 * Model names and version numbers as they may appear in URLs and object keys.
 * Anything outside these forms is refused before it can become an R2 key.
 */
import { z } from "zod";
import { invalid } from "../errors";

/** Lowercase ASCII only: no slashes, no traversal, no Unicode look-alikes. */
export const MODEL_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Versions are positive integers, as in Triton's model repository, of at most
 * nine digits. This is the one definition: URLs, listings, manifests, admin
 * requests and the CLI all accept exactly these, so the registry never writes
 * a version it could not list.
 */
export const MAX_VERSION = 999_999_999;
export const VERSION_PATTERN = /^[1-9][0-9]{0,8}$/;

/** A version number in JSON: manifests, admin requests, alias documents. */
export const versionSchema = z
  .number()
  .int()
  .min(1, "versions are positive integers")
  .max(MAX_VERSION, `versions are at most ${MAX_VERSION}`);

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
      `invalid model version ${JSON.stringify(version.slice(0, 80))}: versions are integers from 1 to ${MAX_VERSION}`,
    );
  }
  return Number(version);
}
