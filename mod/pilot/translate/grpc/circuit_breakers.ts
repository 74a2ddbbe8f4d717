/**
 * Circuit breakers (gRFC A32): gRPC reads max_requests of the DEFAULT priority, from Istio's
 * connectionPool.http.http2MaxRequests; the other limits are emitted for parity with Envoy.
 */
import { create } from "@bufbuild/protobuf";
import {
  type CircuitBreakers,
  CircuitBreakers_ThresholdsSchema,
  CircuitBreakersSchema,
} from "#gen/envoy/config/cluster/v3/circuit_breaker_pb.ts";
import { RoutingPriority } from "#gen/envoy/config/core/v3/base_pb.ts";
import type { ConnectionPoolSettings } from "../../../galley/kinds/networking.ts";

/** The circuit breakers for a connection pool setting; undefined when it sets no limit. */
export function circuitBreakers(pool: ConnectionPoolSettings | undefined): CircuitBreakers | undefined {
  const limits = {
    ...(pool?.http?.http2MaxRequests ? { maxRequests: pool.http.http2MaxRequests } : {}),
    ...(pool?.tcp?.maxConnections ? { maxConnections: pool.tcp.maxConnections } : {}),
    ...(pool?.http?.http1MaxPendingRequests ? { maxPendingRequests: pool.http.http1MaxPendingRequests } : {}),
    ...(pool?.http?.maxRetries ? { maxRetries: pool.http.maxRetries } : {}),
  };
  if (Object.keys(limits).length === 0) return undefined;
  return create(CircuitBreakersSchema, {
    thresholds: [create(CircuitBreakers_ThresholdsSchema, { priority: RoutingPriority.DEFAULT, ...limits })],
  });
}
