/**
 * @module
 * The `pinion` CLI's exit codes, for CI scripts: 0 done (or nothing to do),
 * 1 unexpected error, 2 usage or invalid request, 3 a gate refused the
 * promotion, 4 conflict (concurrent changes kept winning), 5 authentication,
 * 6 model, version or alias not found.
 */
import { PinionError } from "../core/errors";
import type { PromotionOutcome } from "../core/serving/promoter";

export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  gatesFailed: 3,
  conflict: 4,
  auth: 5,
  notFound: 6,
} as const;

const EXIT_OF_KIND: Partial<Record<PinionError["kind"], number>> = {
  // The caller's request (or file) cannot be accepted as it is.
  invalid_argument: EXIT.usage,
  payload_too_large: EXIT.usage,
  result_too_large: EXIT.usage,
  length_required: EXIT.usage,
  precondition_failed: EXIT.usage,
  refused: EXIT.usage,
  conflict: EXIT.conflict,
  unauthenticated: EXIT.auth,
  not_found: EXIT.notFound,
};

/** A command's failure: our own errors by kind, anything else is unexpected. */
export function exitCodeOfError(error: unknown): number {
  return error instanceof PinionError ? (EXIT_OF_KIND[error.kind] ?? EXIT.error) : EXIT.error;
}

/** A promotion or rollback that ran: only a gate's refusal fails the command. */
export function exitCodeOfOutcome(outcome: PromotionOutcome): number {
  return outcome.status === "gates-failed" ? EXIT.gatesFailed : EXIT.ok;
}
