/**
 * Fault injection: a VirtualService route's `fault` as the per-route config of Envoy's
 * `envoy.filters.http.fault` filter.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { FaultDelaySchema } from "#gen/envoy/extensions/filters/common/fault/v3/fault_pb.ts";
import {
  FaultAbortSchema,
  type HTTPFault,
  HTTPFaultSchema,
} from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import { grpcStatusNames, type HTTPFaultInjection } from "../../galley/kinds/networking.ts";
import { durationFromString, fractionalPercent } from "./conversion.ts";

/** The HTTP filter (and per-route config key) name of fault injection. */
export const FAULT_FILTER = "envoy.filters.http.fault";

/** A gRPC status name ("UNAVAILABLE") or number ("14") as its code. */
export function grpcStatusCode(status: string): number {
  if (/^\d+$/.test(status)) return Number(status);
  const i = grpcStatusNames.indexOf(status.toUpperCase());
  if (i < 0) throw new Error(`translate: unknown gRPC status ${JSON.stringify(status)}`);
  return i;
}

/**
 * The HTTPFault for a route, or undefined when it injects nothing Envoy supports: a fixed
 * delay and an HTTP or gRPC abort, each with its percentage as parts per million (exponential
 * delays and HTTP/2 resets are not supported by Envoy's filter and are left out).
 */
export function translateFault(fault: HTTPFaultInjection | undefined): HTTPFault | undefined {
  if (!fault) return undefined;
  const out = create(HTTPFaultSchema, {});
  const d = fault.delay;
  if (d?.fixedDelay) {
    const pct = d.percentage?.value ?? d.percent;
    out.delay = create(FaultDelaySchema, {
      faultDelaySecifier: { case: "fixedDelay", value: durationFromString(d.fixedDelay) },
      ...(pct !== undefined ? { percentage: fractionalPercent(pct) } : {}),
    });
  }
  const a = fault.abort;
  if (a && (a.httpStatus !== undefined || a.grpcStatus !== undefined)) {
    out.abort = create(FaultAbortSchema, {
      errorType: a.httpStatus !== undefined
        ? { case: "httpStatus", value: a.httpStatus }
        : { case: "grpcStatus", value: grpcStatusCode(a.grpcStatus!) },
      ...(a.percentage ? { percentage: fractionalPercent(a.percentage.value ?? 0) } : {}),
    });
  }
  return out.delay || out.abort ? out : undefined;
}
