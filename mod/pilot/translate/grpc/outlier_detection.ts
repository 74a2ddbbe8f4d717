/**
 * Outlier detection (gRFC A50). gRPC implements Envoy's success-rate and failure-percentage
 * ejection but not the consecutive-error counts Istio configures, so Istio's
 * consecutive5xxErrors (or consecutiveErrors, consecutiveGatewayErrors) of N becomes
 * failure-percentage ejection: an endpoint that failed at least {@link FAILURE_THRESHOLD}% of at
 * least N calls in an interval is ejected. The consecutive counts are emitted as well, for
 * clients that implement them. Success-rate ejection, on by default in gRPC, is turned off, as
 * Istio does.
 */
import { create } from "@bufbuild/protobuf";
import {
  type OutlierDetection as EnvoyOutlier,
  OutlierDetectionSchema,
} from "#gen/envoy/config/cluster/v3/outlier_detection_pb.ts";
import type { OutlierDetection } from "../../../galley/kinds/networking.ts";
import { protoDuration } from "./durations.ts";

/** The failure percentage (of calls to one endpoint in one interval) that ejects it. */
export const FAILURE_THRESHOLD = 50;

/** The Envoy outlier detection for Istio's settings; undefined when there are none. */
export function outlierDetection(od: OutlierDetection | undefined): EnvoyOutlier | undefined {
  if (!od) return undefined;
  const consecutive5xx = od.consecutive5xxErrors ?? od.consecutiveErrors;
  const gateway = od.consecutiveGatewayErrors;
  const volume = [consecutive5xx, gateway].filter((n): n is number => n !== undefined && n > 0);
  const failureVolume = volume.length > 0 ? Math.min(...volume) : undefined;
  return create(OutlierDetectionSchema, {
    ...(consecutive5xx !== undefined
      ? { consecutive5xx, enforcingConsecutive5xx: consecutive5xx > 0 ? 100 : 0 }
      : {}),
    ...(gateway !== undefined
      ? { consecutiveGatewayFailure: gateway, enforcingConsecutiveGatewayFailure: gateway > 0 ? 100 : 0 }
      : {}),
    ...(od.splitExternalLocalOriginErrors ? { splitExternalLocalOriginErrors: true } : {}),
    ...(od.consecutiveLocalOriginFailures !== undefined
      ? { consecutiveLocalOriginFailure: od.consecutiveLocalOriginFailures }
      : {}),
    interval: protoDuration(od.interval),
    baseEjectionTime: protoDuration(od.baseEjectionTime),
    ...(od.maxEjectionPercent !== undefined
      ? { maxEjectionPercent: Math.min(100, Math.max(0, od.maxEjectionPercent)) }
      : {}),
    enforcingSuccessRate: 0,
    ...(failureVolume !== undefined
      ? {
        enforcingFailurePercentage: 100,
        failurePercentageThreshold: FAILURE_THRESHOLD,
        failurePercentageRequestVolume: failureVolume,
        failurePercentageMinimumHosts: 1,
      }
      : {}),
  });
}
