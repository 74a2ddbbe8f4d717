/**
 * Statuses across protocols: gRPC codes (which are google.rpc codes) to the HTTP statuses a proxy
 * answers a denied request with.
 *
 * @module
 */
import { Codes } from "./adapters/adapter.ts";

const HTTP: Readonly<Record<number, number>> = {
  [Codes.OK]: 200,
  [Codes.CANCELLED]: 499,
  [Codes.UNKNOWN]: 500,
  [Codes.INVALID_ARGUMENT]: 400,
  [Codes.DEADLINE_EXCEEDED]: 504,
  [Codes.NOT_FOUND]: 404,
  [Codes.ALREADY_EXISTS]: 409,
  [Codes.PERMISSION_DENIED]: 403,
  [Codes.RESOURCE_EXHAUSTED]: 429,
  [Codes.FAILED_PRECONDITION]: 400,
  [Codes.ABORTED]: 409,
  [Codes.OUT_OF_RANGE]: 400,
  [Codes.UNIMPLEMENTED]: 501,
  [Codes.INTERNAL]: 500,
  [Codes.UNAVAILABLE]: 503,
  [Codes.DATA_LOSS]: 500,
  [Codes.UNAUTHENTICATED]: 401,
};

/** The HTTP status for a gRPC code (Istio's mapping); 500 for codes it does not know. */
export function httpStatusOf(code: number): number {
  return HTTP[code] ?? 500;
}
