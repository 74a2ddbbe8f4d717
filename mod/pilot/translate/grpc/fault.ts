/**
 * Fault injection for gRPC clients (gRFC A33): route_plan.ts's fault decision as a per-route
 * override of the fault filter, and the overrides that fail every call for routes gRPC cannot
 * forward.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Any, anyPack } from "@bufbuild/protobuf/wkt";
import { FaultDelaySchema } from "#gen/envoy/extensions/filters/common/fault/v3/fault_pb.ts";
import { FaultAbortSchema, HTTPFaultSchema } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import { durationFromString, fractionalPercent } from "../conversion.ts";
import type { FaultDecision } from "../fault.ts";

/**
 * The fault filter override for a route plan's fault decision, packed; undefined for none.
 * Percentages are always written: a percentage the rule left unset is 0 (Istio injects into no
 * request then, and Envoy reads an absent percentage the same way), so gRPC clients cannot
 * read it otherwise.
 */
export function faultOverride(decision: FaultDecision | undefined): Any | undefined {
  if (!decision) return undefined;
  const d = decision.delay;
  const delay = d
    ? create(FaultDelaySchema, {
      faultDelaySecifier: { case: "fixedDelay", value: durationFromString(d.fixedDelay) },
      percentage: fractionalPercent(d.percent ?? 0),
    })
    : undefined;
  const a = decision.abort;
  const abort = a
    ? create(FaultAbortSchema, {
      errorType: a.httpStatus !== undefined
        ? { case: "httpStatus", value: a.httpStatus }
        : { case: "grpcStatus", value: a.grpcStatus! },
      percentage: fractionalPercent(a.percent ?? 0),
    })
    : undefined;
  return anyPack(HTTPFaultSchema, create(HTTPFaultSchema, { delay, abort }));
}

/** A fault override that fails every call with a gRPC status code (routes gRPC cannot forward). */
export function failAll(code: number): Any {
  return anyPack(
    HTTPFaultSchema,
    create(HTTPFaultSchema, {
      abort: create(FaultAbortSchema, {
        errorType: { case: "grpcStatus", value: code },
        percentage: fractionalPercent(100),
      }),
    }),
  );
}

/** A fault override that fails every call with what an HTTP status maps to in gRPC. */
export function failAllHttp(status: number): Any {
  return anyPack(
    HTTPFaultSchema,
    create(HTTPFaultSchema, {
      abort: create(FaultAbortSchema, {
        errorType: { case: "httpStatus", value: status },
        percentage: fractionalPercent(100),
      }),
    }),
  );
}
