/**
 * How sidecars reach mixer: what pilot puts into Envoy's ext_authz, ratelimit and gRPC access-log
 * filters. Mixer's APIs share the gRPC port with xDS, so the cluster is the one every Istio-style
 * bootstrap already has for the discovery server.
 *
 * @module
 */
import type { MeshConfig } from "../kinds/mesh_config.ts";

/** The Envoy cluster of meshd's gRPC port in sidecar bootstraps (Istio's name). */
export const MIXER_CLUSTER = "xds-grpc";

/** Settings of the three Envoy filters that talk to mixer. */
export interface MixerFilterSettings {
  /** ext_authz (`envoy.filters.http.ext_authz`), gRPC service Authorization. */
  readonly extAuthz: {
    readonly clusterName: string;
    readonly timeoutMs: number;
    /** Let requests through when mixer cannot be reached (`failure_mode_allow`). */
    readonly failureModeAllow: boolean;
  };
  /** Rate limiting (`envoy.filters.http.ratelimit`), gRPC service RateLimitService. */
  readonly rateLimit: {
    readonly clusterName: string;
    readonly timeoutMs: number;
    /** The descriptor domain pilot sets; a domain naming a quota instance charges only that one. */
    readonly domain: string;
    /** Refuse requests when mixer cannot be reached (`failure_mode_deny`). */
    readonly failureModeDeny: boolean;
  };
  /** Access logs (`envoy.access_loggers.http_grpc`), gRPC service AccessLogService. */
  readonly accessLog: {
    readonly clusterName: string;
    readonly logName: string;
    readonly bufferFlushIntervalMs: number;
  };
}

/**
 * The request headers sidecars put into the descriptor they send mixer's rate-limit service,
 * each under the name of the attribute it becomes (mixer sets attribute-named descriptor
 * entries, see `bagFromDescriptor`). A header that is absent leaves out only its own entry
 * (`skip_if_absent`), so every request still gets its descriptor.
 */
export const RATE_LIMIT_REQUEST_HEADERS: readonly { readonly header: string; readonly attribute: string }[] =
  [
    { header: ":path", attribute: "request.path" },
    { header: ":method", attribute: "request.method" },
    { header: ":authority", attribute: "request.host" },
  ];

/**
 * The filter settings for a mesh: the failure mode follows `mixer.failOpen` (fail-open lets
 * requests through when mixer cannot answer; fail-closed refuses them).
 */
export function mixerFilterSettings(mesh: MeshConfig): MixerFilterSettings {
  const failOpen = mesh.mixer.failOpen;
  return {
    extAuthz: { clusterName: MIXER_CLUSTER, timeoutMs: 200, failureModeAllow: failOpen },
    rateLimit: { clusterName: MIXER_CLUSTER, timeoutMs: 100, domain: "meshd", failureModeDeny: !failOpen },
    accessLog: { clusterName: MIXER_CLUSTER, logName: "meshd-mixer", bufferFlushIntervalMs: 1_000 },
  };
}
