/**
 * DestinationRule traffic policy on clusters (merged for a port and subset by mod/api's
 * `mergeTrafficPolicy`): one small configurer per part of it (load balancer with slow start,
 * connection pool with the retry budget, HTTP protocol options with HTTP/2 keepalive, outlier
 * detection, locality weighting or zone-aware routing), and the TCP proxy's tunneling config
 * for `tunnel`. TLS lives in tls.ts. The shared pieces (thresholds, outlier detection, ring size) are what proxyless gRPC
 * renders too (grpc/cluster.ts).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type Cluster,
  Cluster_CommonLbConfig_LocalityWeightedLbConfigSchema,
  Cluster_CommonLbConfig_ZoneAwareLbConfigSchema,
  Cluster_CommonLbConfigSchema,
  Cluster_DiscoveryType,
  Cluster_LbPolicy,
  Cluster_LeastRequestLbConfigSchema,
  Cluster_MaglevLbConfigSchema,
  Cluster_RingHashLbConfigSchema,
  Cluster_RoundRobinLbConfigSchema,
  type Cluster_SlowStartConfig,
  Cluster_SlowStartConfigSchema,
  UpstreamConnectionOptionsSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import {
  type CircuitBreakers_Thresholds,
  type CircuitBreakers_Thresholds_RetryBudget,
  CircuitBreakers_Thresholds_RetryBudgetSchema,
  CircuitBreakers_ThresholdsSchema,
  CircuitBreakersSchema,
} from "#gen/envoy/config/cluster/v3/circuit_breaker_pb.ts";
import {
  type OutlierDetection as EnvoyOutlierDetection,
  OutlierDetectionSchema,
} from "#gen/envoy/config/cluster/v3/outlier_detection_pb.ts";
import { HttpProtocolOptionsSchema as CommonHttpProtocolOptionsSchema } from "#gen/envoy/config/core/v3/protocol_pb.ts";
import {
  type HttpProtocolOptions,
  HttpProtocolOptionsSchema,
} from "#gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.ts";
import type {
  ConnectionPoolSettings,
  LoadBalancerSettings,
  OutlierDetection,
  TrafficPolicy,
} from "../../api/kinds/networking.ts";
import { isHttp2Protocol, isHttpProtocol, type ServicePort } from "../model/service.ts";
import { PercentSchema } from "#gen/envoy/type/v3/percent_pb.ts";
import {
  type TcpProxy_TunnelingConfig,
  TcpProxy_TunnelingConfigSchema,
} from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { isIP } from "node:net";
import { durationFromString, secondsFromString, typedConfig } from "./conversion.ts";

/** A DestinationRule's `retryBudget`. */
export type RetryBudget = NonNullable<TrafficPolicy["retryBudget"]>;

/** A DestinationRule's `tunnel`. */
export type TunnelSettings = NonNullable<TrafficPolicy["tunnel"]>;

const MAX_UINT32 = 4294967295;

/** Istio's circuit-breaker defaults: no limits (Envoy's own defaults cause 503s during churn). */
export function defaultThresholds(): CircuitBreakers_Thresholds {
  return create(CircuitBreakers_ThresholdsSchema, {
    maxConnections: MAX_UINT32,
    maxPendingRequests: MAX_UINT32,
    maxRequests: MAX_UINT32,
    maxRetries: MAX_UINT32,
    trackRemaining: true,
  });
}

/** Istio's retry budget defaults: 20% of active requests, at least 3 concurrent retries. */
export const RETRY_BUDGET_DEFAULTS = { percent: 20, minRetryConcurrency: 3 } as const;

/**
 * A DestinationRule `retryBudget` as Envoy's: the percent of active requests that may be
 * retries and the minimum concurrent retries, each defaulting as in Istio.
 */
export function retryBudgetConfig(budget: RetryBudget): CircuitBreakers_Thresholds_RetryBudget {
  return create(CircuitBreakers_Thresholds_RetryBudgetSchema, {
    budgetPercent: { value: budget.percent ?? RETRY_BUDGET_DEFAULTS.percent },
    minRetryConcurrency: budget.minRetryConcurrency || RETRY_BUDGET_DEFAULTS.minRetryConcurrency,
  });
}

/**
 * The circuit-breaker thresholds for a connection pool: Istio's unlimited defaults, with the
 * pool's request, pending-request, retry and connection limits, and the retry budget when one
 * is set (both renderings use these).
 */
export function circuitBreakerThresholds(
  pool: ConnectionPoolSettings | undefined,
  retryBudget?: RetryBudget,
): CircuitBreakers_Thresholds {
  const t = defaultThresholds();
  if (retryBudget) t.retryBudget = retryBudgetConfig(retryBudget);
  const http = pool?.http;
  if (http?.http2MaxRequests) t.maxRequests = http.http2MaxRequests;
  if (http?.http1MaxPendingRequests) t.maxPendingRequests = http.http1MaxPendingRequests;
  if (http?.maxRetries) t.maxRetries = http.maxRetries;
  if (pool?.tcp?.maxConnections) t.maxConnections = pool.tcp.maxConnections;
  return t;
}

/**
 * Connection pool (and retry budget) → circuit-breaker thresholds, connect timeout and TCP
 * keepalive. Always sets circuit breakers (the defaults when the pool says nothing).
 */
export function applyConnectionPool(
  cluster: Cluster,
  pool: ConnectionPoolSettings | undefined,
  retryBudget?: RetryBudget,
): void {
  const t = circuitBreakerThresholds(pool, retryBudget);
  const tcp = pool?.tcp;
  if (tcp?.connectTimeout) cluster.connectTimeout = durationFromString(tcp.connectTimeout);
  const ka = tcp?.tcpKeepalive;
  if (ka) {
    cluster.upstreamConnectionOptions = create(UpstreamConnectionOptionsSchema, {
      tcpKeepalive: {
        ...(ka.probes ? { keepaliveProbes: ka.probes } : {}),
        ...(ka.time ? { keepaliveTime: secondsFromString(ka.time) } : {}),
        ...(ka.interval ? { keepaliveInterval: secondsFromString(ka.interval) } : {}),
      },
    });
  }
  cluster.circuitBreakers = create(CircuitBreakersSchema, { thresholds: [t] });
}

/** The type URL key Envoy reads upstream HTTP options under. */
export const HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/**
 * Builds the upstream HTTP protocol options for a port, or undefined when Envoy's defaults
 * (HTTP/1.1, no limits) apply: HTTP/2 for HTTP2/GRPC ports or an explicit h2 upgrade, the
 * client's protocol when `useClientProtocol`, and idle timeout, requests per connection,
 * connection lifetime, and for HTTP/2 concurrent streams and connection keepalive (PING
 * interval and timeout, `http2KeepAlive`) from the connection pool.
 */
export function httpProtocolOptions(
  port: ServicePort,
  pool: ConnectionPoolSettings | undefined,
): HttpProtocolOptions | undefined {
  if (!isHttpProtocol(port.protocol)) return undefined;
  const http = pool?.http;
  const upgrade = http?.h2UpgradePolicy;
  const h2 = upgrade === "UPGRADE" || (upgrade !== "DO_NOT_UPGRADE" && isHttp2Protocol(port.protocol));
  const idle = http?.idleTimeout ?? pool?.tcp?.idleTimeout;
  const lifetime = pool?.tcp?.maxConnectionDuration;
  const perConnection = http?.maxRequestsPerConnection;
  const common = idle || lifetime || perConnection
    ? create(CommonHttpProtocolOptionsSchema, {
      ...(idle ? { idleTimeout: durationFromString(idle) } : {}),
      ...(lifetime ? { maxConnectionDuration: durationFromString(lifetime) } : {}),
      ...(perConnection ? { maxRequestsPerConnection: perConnection } : {}),
    })
    : undefined;
  if (!h2 && !common && !http?.useClientProtocol) return undefined;
  const streams = http?.maxConcurrentStreams;
  const keepalive = http?.http2KeepAlive;
  const h2Options = {
    ...(streams ? { maxConcurrentStreams: streams } : {}),
    ...(keepalive
      ? {
        connectionKeepalive: {
          ...(keepalive.interval ? { interval: durationFromString(keepalive.interval) } : {}),
          ...(keepalive.timeout ? { timeout: durationFromString(keepalive.timeout) } : {}),
        },
      }
      : {}),
  };
  return create(HttpProtocolOptionsSchema, {
    ...(common ? { commonHttpProtocolOptions: common } : {}),
    upstreamProtocolOptions: http?.useClientProtocol
      ? { case: "useDownstreamProtocolConfig", value: { httpProtocolOptions: {}, http2ProtocolOptions: {} } }
      : h2
      ? {
        case: "explicitHttpConfig",
        value: {
          protocolConfig: {
            case: "http2ProtocolOptions",
            value: h2Options,
          },
        },
      }
      : { case: "explicitHttpConfig", value: { protocolConfig: { case: "httpProtocolOptions", value: {} } } },
  });
}

/** Sets the cluster's upstream HTTP protocol options for `port` (see {@link httpProtocolOptions}). */
export function applyHttpProtocolOptions(
  cluster: Cluster,
  port: ServicePort,
  pool: ConnectionPoolSettings | undefined,
): void {
  const options = httpProtocolOptions(port, pool);
  if (options) {
    cluster.typedExtensionProtocolOptions[HTTP_PROTOCOL_OPTIONS_KEY] = typedConfig(
      HttpProtocolOptionsSchema,
      options,
    );
  }
}

/**
 * Outlier detection as Envoy's message: consecutive-5xx and gateway-error ejection (the
 * deprecated `consecutiveErrors` counts gateway errors, as Istio does), interval, ejection time
 * and percentage, local-origin errors when split; success-rate ejection turned off. Proxyless
 * gRPC renders the same message and adds failure-percentage ejection (grpc/cluster.ts).
 */
export function outlierDetectionConfig(od: OutlierDetection): EnvoyOutlierDetection {
  const out = create(OutlierDetectionSchema, { enforcingSuccessRate: 0 });
  if (od.consecutive5xxErrors !== undefined) {
    out.consecutive5xx = od.consecutive5xxErrors;
    out.enforcingConsecutive5xx = od.consecutive5xxErrors > 0 ? 100 : 0;
  }
  const gateway = od.consecutiveGatewayErrors ?? od.consecutiveErrors;
  if (gateway !== undefined) {
    out.consecutiveGatewayFailure = gateway;
    out.enforcingConsecutiveGatewayFailure = gateway > 0 ? 100 : 0;
  }
  if (od.interval) out.interval = durationFromString(od.interval);
  if (od.baseEjectionTime) out.baseEjectionTime = durationFromString(od.baseEjectionTime);
  if (od.maxEjectionPercent) out.maxEjectionPercent = od.maxEjectionPercent;
  if (od.splitExternalLocalOriginErrors) {
    out.splitExternalLocalOriginErrors = true;
    if (od.consecutiveLocalOriginFailures) {
      out.consecutiveLocalOriginFailure = od.consecutiveLocalOriginFailures;
      out.enforcingConsecutiveLocalOriginFailure = 100;
    }
    out.enforcingLocalOriginSuccessRate = 0;
  }
  return out;
}

/**
 * Outlier detection on an Envoy cluster ({@link outlierDetectionConfig}), with the panic
 * threshold at `minHealthPercent` (0, i.e. never panic, unless set).
 */
export function applyOutlierDetection(cluster: Cluster, od: OutlierDetection | undefined): void {
  if (!od) return;
  cluster.outlierDetection = outlierDetectionConfig(od);
  cluster.commonLbConfig ??= create(Cluster_CommonLbConfigSchema, {});
  cluster.commonLbConfig.healthyPanicThreshold = create(PercentSchema, { value: od.minHealthPercent ?? 0 });
}

/**
 * Slow start for a load balancer: `warmupDurationSecs`, or `warmup` with its window, minimum
 * weight percent and aggression; undefined when neither is set.
 */
export function slowStartConfig(lb: LoadBalancerSettings | undefined): Cluster_SlowStartConfig | undefined {
  if (lb?.warmupDurationSecs) {
    return create(Cluster_SlowStartConfigSchema, {
      slowStartWindow: durationFromString(lb.warmupDurationSecs),
    });
  }
  const w = lb?.warmup;
  if (!w?.duration) return undefined;
  return create(Cluster_SlowStartConfigSchema, {
    slowStartWindow: durationFromString(w.duration),
    ...(w.aggression !== undefined ? { aggression: { defaultValue: w.aggression, runtimeKey: "" } } : {}),
    ...(w.minimumPercent !== undefined ? { minWeightPercent: { value: w.minimumPercent } } : {}),
  });
}

/** Envoy's and gRPC's default ring size for consistent hashing. */
export const DEFAULT_RING_SIZE = 1024;

/** The minimum ring size of a consistent-hash setting (ringHash, the deprecated field, or 1024). */
export function ringHashSize(ch: NonNullable<LoadBalancerSettings["consistentHash"]>): number {
  return ch.ringHash?.minimumRingSize ?? ch.minimumRingSize ?? DEFAULT_RING_SIZE;
}

function setSimpleLb(cluster: Cluster, policy: Cluster_LbPolicy, lb: LoadBalancerSettings | undefined): void {
  cluster.lbPolicy = policy;
  const slowStart = slowStartConfig(lb);
  if (!slowStart) return;
  cluster.lbConfig = policy === Cluster_LbPolicy.ROUND_ROBIN
    ? {
      case: "roundRobinLbConfig",
      value: create(Cluster_RoundRobinLbConfigSchema, { slowStartConfig: slowStart }),
    }
    : {
      case: "leastRequestLbConfig",
      value: create(Cluster_LeastRequestLbConfigSchema, { slowStartConfig: slowStart }),
    };
}

/**
 * The load balancer: LEAST_REQUEST unless told otherwise (Istio's default), ROUND_ROBIN,
 * RANDOM, PASSTHROUGH (the cluster becomes ORIGINAL_DST), or a consistent hash (RING_HASH, or
 * MAGLEV when asked). ORIGINAL_DST clusters always use CLUSTER_PROVIDED.
 */
export function applyLoadBalancer(cluster: Cluster, lb: LoadBalancerSettings | undefined): void {
  if (isOriginalDst(cluster)) {
    cluster.lbPolicy = Cluster_LbPolicy.CLUSTER_PROVIDED;
    return;
  }
  switch (lb?.simple) {
    case "ROUND_ROBIN":
      setSimpleLb(cluster, Cluster_LbPolicy.ROUND_ROBIN, lb);
      break;
    case "RANDOM":
      cluster.lbPolicy = Cluster_LbPolicy.RANDOM;
      break;
    case "PASSTHROUGH":
      cluster.clusterDiscoveryType = { case: "type", value: Cluster_DiscoveryType.ORIGINAL_DST };
      cluster.lbPolicy = Cluster_LbPolicy.CLUSTER_PROVIDED;
      cluster.edsClusterConfig = undefined;
      cluster.loadAssignment = undefined;
      return;
    default:
      setSimpleLb(cluster, Cluster_LbPolicy.LEAST_REQUEST, lb);
  }
  const ch = lb?.consistentHash;
  if (!ch) return;
  if (ch.maglev) {
    cluster.lbPolicy = Cluster_LbPolicy.MAGLEV;
    cluster.lbConfig = ch.maglev.tableSize
      ? {
        case: "maglevLbConfig",
        value: create(Cluster_MaglevLbConfigSchema, { tableSize: BigInt(ch.maglev.tableSize) }),
      }
      : { case: undefined };
    return;
  }
  cluster.lbPolicy = Cluster_LbPolicy.RING_HASH;
  const size = ringHashSize(ch);
  cluster.lbConfig = {
    case: "ringHashLbConfig",
    value: create(Cluster_RingHashLbConfigSchema, { minimumRingSize: BigInt(size) }),
  };
}

/**
 * A DestinationRule `tunnel` as the TCP proxy's tunneling config: the connection is carried in
 * an HTTP CONNECT request (POST when `protocol: POST`) for `targetHost:targetPort` to the
 * cluster's endpoints, which are the tunnel proxies.
 */
export function tunnelingConfig(tunnel: TunnelSettings): TcpProxy_TunnelingConfig {
  const host = isIP(tunnel.targetHost) === 6 ? `[${tunnel.targetHost}]` : tunnel.targetHost;
  return create(TcpProxy_TunnelingConfigSchema, {
    hostname: `${host}:${tunnel.targetPort}`,
    usePost: tunnel.protocol === "POST",
  });
}

/** True for clusters whose discovery type is ORIGINAL_DST. */
export function isOriginalDst(cluster: Cluster): boolean {
  return cluster.clusterDiscoveryType.case === "type" &&
    cluster.clusterDiscoveryType.value === Cluster_DiscoveryType.ORIGINAL_DST;
}

/**
 * Turns on locality-weighted balancing when the locality settings need it: `distribute`
 * weights, or `failover` or `failoverPriority` together with outlier detection (without it Envoy never fails over).
 * The weights and priorities themselves are set on the endpoints (locality_lb.ts). Otherwise
 * `zoneAwareLbSetting` turns on Envoy's zone-aware routing (the two are one choice in Envoy;
 * locality weighting wins when both apply).
 */
export function applyLocalityLbConfig(cluster: Cluster, lb: LoadBalancerSettings | undefined): void {
  if (localityWeighted(lb, cluster.outlierDetection !== undefined)) {
    cluster.commonLbConfig ??= create(Cluster_CommonLbConfigSchema, {});
    cluster.commonLbConfig.localityConfigSpecifier = {
      case: "localityWeightedLbConfig",
      value: create(Cluster_CommonLbConfig_LocalityWeightedLbConfigSchema, {}),
    };
    return;
  }
  const zoneAware = lb?.zoneAwareLbSetting;
  if (!zoneAware || zoneAware.enabled === false) return;
  cluster.commonLbConfig ??= create(Cluster_CommonLbConfigSchema, {});
  cluster.commonLbConfig.localityConfigSpecifier = {
    case: "zoneAwareLbConfig",
    value: create(Cluster_CommonLbConfig_ZoneAwareLbConfigSchema, {
      routingEnabled: { value: 100 },
      ...(zoneAware.minClusterSize !== undefined ? { minClusterSize: BigInt(zoneAware.minClusterSize) } : {}),
    }),
  };
}

/** True when the locality settings need locality-weighted balancing (see {@link applyLocalityLbConfig}). */
export function localityWeighted(lb: LoadBalancerSettings | undefined, outlierDetection: boolean): boolean {
  const setting = lb?.localityLbSetting;
  if (!setting || setting.enabled === false) return false;
  const failover = ((setting.failover?.length ?? 0) > 0 || (setting.failoverPriority?.length ?? 0) > 0) &&
    outlierDetection;
  return (setting.distribute?.length ?? 0) > 0 || failover;
}
