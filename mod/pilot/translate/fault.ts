/**
 * Fault injection: which faults a rule injects (decided once, carried by route plans and
 * rendered by both data planes), and that decision as the per-route config of Envoy's
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
import { grpcStatusNames, type HTTPFaultInjection } from "../../api/kinds/networking.ts";
import { durationFromString, fractionalPercent } from "./conversion.ts";

/** The HTTP filter (and per-route config key) name of fault injection. */
export const FAULT_FILTER = "envoy.filters.http.fault";

/** A fault to inject: a fixed delay and/or an abort, each with its percentage if given. */
export interface FaultDecision {
  readonly delay?: { readonly fixedDelay: string; readonly percent?: number };
  readonly abort?: {
    readonly httpStatus?: number;
    readonly grpcStatus?: number;
    readonly percent?: number;
  };
}

/** A gRPC status name ("UNAVAILABLE") or number ("14") as its code. */
export function grpcStatusCode(status: string): number {
  if (/^\d+$/.test(status)) return Number(status);
  const i = grpcStatusNames.indexOf(status.toUpperCase());
  if (i < 0) throw new Error(`translate: unknown gRPC status ${JSON.stringify(status)}`);
  return i;
}

/**
 * The faults of a rule that a fault filter can inject, decided once for both data planes (the
 * route plan carries it): a fixed delay, and an HTTP or gRPC abort (the HTTP status wins when
 * both are given). Percentages stay unset when the rule leaves them unset: Istio then injects
 * into no request. Exponential delays and HTTP/2 resets are left out (no data plane filter has
 * them).
 */
export function decideFault(fault: HTTPFaultInjection | undefined): FaultDecision | undefined {
  if (!fault) return undefined;
  const d = fault.delay;
  const delayPct = d?.percentage?.value ?? d?.percent;
  const delay = d?.fixedDelay
    ? { fixedDelay: d.fixedDelay, ...(delayPct !== undefined ? { percent: delayPct } : {}) }
    : undefined;
  const a = fault.abort;
  const abort = a && (a.httpStatus !== undefined || a.grpcStatus !== undefined)
    ? {
      ...(a.httpStatus !== undefined
        ? { httpStatus: a.httpStatus }
        : { grpcStatus: grpcStatusCode(a.grpcStatus!) }),
      ...(a.percentage ? { percent: a.percentage.value ?? 0 } : {}),
    }
    : undefined;
  if (!delay && !abort) return undefined;
  return { ...(delay ? { delay } : {}), ...(abort ? { abort } : {}) };
}

/**
 * The HTTPFault for a fault decision, each percentage as parts per million; a percentage the
 * rule left unset stays unset (Envoy then injects into no request, as Istio documents).
 */
export function renderFault(decision: FaultDecision | undefined): HTTPFault | undefined {
  if (!decision) return undefined;
  const out = create(HTTPFaultSchema, {});
  const d = decision.delay;
  if (d) {
    out.delay = create(FaultDelaySchema, {
      faultDelaySecifier: { case: "fixedDelay", value: durationFromString(d.fixedDelay) },
      ...(d.percent !== undefined ? { percentage: fractionalPercent(d.percent) } : {}),
    });
  }
  const a = decision.abort;
  if (a) {
    out.abort = create(FaultAbortSchema, {
      errorType: a.httpStatus !== undefined
        ? { case: "httpStatus", value: a.httpStatus }
        : { case: "grpcStatus", value: a.grpcStatus! },
      ...(a.percent !== undefined ? { percentage: fractionalPercent(a.percent) } : {}),
    });
  }
  return out;
}

/**
 * The HTTPFault for a route, or undefined when it injects nothing Envoy supports: a fixed
 * delay and an HTTP or gRPC abort (exponential delays and HTTP/2 resets are left out).
 */
export function translateFault(fault: HTTPFaultInjection | undefined): HTTPFault | undefined {
  return renderFault(decideFault(fault));
}
