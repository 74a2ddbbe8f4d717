/**
 * Fault injection (gRFC A33): Istio's HTTPFaultInjection as a per-route override of the fault
 * filter. gRPC needs a percentage on every delay and abort; Istio's default is 100%.
 */
import { create } from "@bufbuild/protobuf";
import { type Any, anyPack } from "@bufbuild/protobuf/wkt";
import { FaultDelaySchema } from "#gen/envoy/extensions/filters/common/fault/v3/fault_pb.ts";
import { FaultAbortSchema, HTTPFaultSchema } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import {
  type FractionalPercent,
  FractionalPercent_DenominatorType,
  FractionalPercentSchema,
} from "#gen/envoy/type/v3/percent_pb.ts";
import { grpcStatusNames, type HTTPFaultInjection, type Percent } from "../../../galley/kinds/networking.ts";
import { protoDuration } from "./durations.ts";

/** A percentage (0..100, fractions allowed) as parts per million. */
export function fractionalPercent(percent: number): FractionalPercent {
  const clamped = Math.min(100, Math.max(0, percent));
  return create(FractionalPercentSchema, {
    numerator: Math.round(clamped * 10_000),
    denominator: FractionalPercent_DenominatorType.MILLION,
  });
}

function percentOf(p: Percent | undefined, legacy: number | undefined): FractionalPercent {
  return fractionalPercent(p?.value ?? legacy ?? 100);
}

/** The gRPC status code for a name such as "UNAVAILABLE"; undefined for unknown names. */
export function grpcStatusCode(name: string): number | undefined {
  const i = grpcStatusNames.indexOf(name.toUpperCase());
  return i < 0 ? undefined : i;
}

/**
 * The fault filter override for a route's faults, packed; undefined when the route injects
 * none gRPC can apply (http2Error aborts and exponential delays are not supported).
 */
export function faultOverride(fault: HTTPFaultInjection | undefined): Any | undefined {
  if (!fault) return undefined;
  const fixed = protoDuration(fault.delay?.fixedDelay);
  const delay = fault.delay && fixed
    ? create(FaultDelaySchema, {
      faultDelaySecifier: { case: "fixedDelay", value: fixed },
      percentage: percentOf(fault.delay.percentage, fault.delay.percent),
    })
    : undefined;
  const a = fault.abort;
  const code = a?.grpcStatus !== undefined ? grpcStatusCode(a.grpcStatus) : undefined;
  const abort = a && (code !== undefined || a.httpStatus !== undefined)
    ? create(FaultAbortSchema, {
      errorType: code !== undefined
        ? { case: "grpcStatus", value: code }
        : { case: "httpStatus", value: a.httpStatus! },
      percentage: percentOf(a.percentage, undefined),
    })
    : undefined;
  if (!delay && !abort) return undefined;
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
