/**
 * The HTTP filter chain of every HTTP connection manager, built from an ordered list of
 * configurers. Each configurer returns the filters it contributes (possibly none) for a
 * listener; the router is always last.
 *
 * Security filters (JWT authentication, RBAC, and when mixer runs its ext_authz and rate limit)
 * are configurers too: they go at the start of {@link HTTP_FILTER_CONFIGURERS} (or
 * {@link MIXER_HTTP_FILTER_CONFIGURERS}), before fault injection, so a denied request is never
 * delayed or aborted with a misleading status. Their per-route settings, like fault and CORS,
 * travel in `typed_per_filter_config`.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type HttpFilter,
  HttpFilterSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { ApiVersion } from "#gen/envoy/config/core/v3/config_source_pb.ts";
import { CorsSchema } from "#gen/envoy/extensions/filters/http/cors/v3/cors_pb.ts";
import { ExtAuthzSchema } from "#gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.ts";
import { RateLimitSchema } from "#gen/envoy/extensions/filters/http/ratelimit/v3/rate_limit_pb.ts";
import { HTTPFaultSchema } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import { RouterSchema } from "#gen/envoy/extensions/filters/http/router/v3/router_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import { mixerFilterSettings } from "../../api/mixer/filter_settings.ts";
import { durationFromString, typedConfig } from "./conversion.ts";
import { buildRbac, rbacHttpFilters } from "./authz.ts";
import { CORS_FILTER } from "./cors.ts";
import { customAuthzFilter } from "./ext_authz.ts";
import { FAULT_FILTER } from "./fault.ts";
import { jwtFilter, jwtIssuers } from "./jwt.ts";
import type { HttpFilterConfigurer, HttpFilterContext } from "./http_filter_context.ts";

/** The HTTP filter name of external authorization (mixer's Check). */
export const EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz";
/** The HTTP filter name of rate limiting (mixer's quotas). */
export const RATE_LIMIT_FILTER = "envoy.filters.http.ratelimit";

/** The HTTP filter name of the router. */
export const ROUTER_FILTER = "envoy.filters.http.router";

export type { HttpFilterConfigurer, HttpFilterContext, TrafficDirection } from "./http_filter_context.ts";

/**
 * Authorization (AuthorizationPolicy) on inbound and gateway connection managers: first the
 * CUSTOM policies' filters (ext_authz.ts: per provider a shadow RBAC filter and ext_authz, or
 * a fail-closed DENY), then one RBAC filter per action (AUDIT, DENY, ALLOW, in that order) for
 * the policies selecting the proxy's workload; none where no policy applies and on outbound
 * connection managers. CUSTOM before DENY and ALLOW is Istio's order.
 */
export const rbacFilter: HttpFilterConfigurer = (ctx) =>
  ctx.direction === "outbound" ? [] : [
    ...customAuthzFilter(ctx),
    ...rbacHttpFilters(
      buildRbac(
        ctx.push.authorizationPolicies(ctx.proxy),
        "http",
        // Request principals and request.auth.* where the JWT filter runs (sidecar inbound, gateways).
        jwtIssuers(ctx.push, ctx.proxy),
      ),
    ),
  ];

/** A gRPC service reached through the Envoy cluster `clusterName`. */
function envoyGrpc(clusterName: string, timeoutMs?: number) {
  return {
    targetSpecifier: { case: "envoyGrpc" as const, value: { clusterName } },
    ...(timeoutMs === undefined ? {} : { timeout: durationFromString(`${timeoutMs}ms`) }),
  };
}

/**
 * Mixer's policy check as Envoy's ext_authz, on sidecar inbound connection managers when mixer
 * runs (`push.features.mixer`): gRPC Authorization service on the cluster and timeout of
 * {@link mixerFilterSettings}, `failure_mode_allow` from MeshConfig `mixer.failOpen`, and the
 * peer certificate sent along (mixer reads `source.principal` from its URI SAN when Envoy gives
 * no principal). Nothing elsewhere or when mixer is off.
 */
export const mixerAuthzFilter: HttpFilterConfigurer = (ctx) => {
  if (!ctx.push.features.mixer || ctx.direction !== "inbound") return [];
  const s = mixerFilterSettings(ctx.push.mesh).extAuthz;
  return [
    create(HttpFilterSchema, {
      name: EXT_AUTHZ_FILTER,
      configType: {
        case: "typedConfig",
        value: typedConfig(
          ExtAuthzSchema,
          create(ExtAuthzSchema, {
            services: { case: "grpcService", value: envoyGrpc(s.clusterName, s.timeoutMs) },
            transportApiVersion: ApiVersion.V3,
            failureModeAllow: s.failureModeAllow,
            includePeerCertificate: true,
          }),
        ),
      },
    }),
  ];
};

/**
 * Mixer's quotas as Envoy's rate-limit filter, on sidecar inbound connection managers when mixer
 * runs: the domain of {@link mixerFilterSettings}, `failure_mode_deny` = not `mixer.failOpen`,
 * the RateLimitService on mixer's cluster (v3). The filter calls the service only for routes or
 * virtual hosts with `rate_limits` actions; the inbound virtual hosts carry them when mixer runs
 * (rate_limit.ts), whether or not any quota rule exists, so listeners need not change when quota
 * rules come and go.
 */
export const mixerRateLimitFilter: HttpFilterConfigurer = (ctx) => {
  if (!ctx.push.features.mixer || ctx.direction !== "inbound") return [];
  const s = mixerFilterSettings(ctx.push.mesh).rateLimit;
  return [
    create(HttpFilterSchema, {
      name: RATE_LIMIT_FILTER,
      configType: {
        case: "typedConfig",
        value: typedConfig(
          RateLimitSchema,
          create(RateLimitSchema, {
            domain: s.domain,
            timeout: durationFromString(`${s.timeoutMs}ms`),
            failureModeDeny: s.failureModeDeny,
            rateLimitService: { grpcService: envoyGrpc(s.clusterName), transportApiVersion: ApiVersion.V3 },
          }),
        ),
      },
    }),
  ];
};

/** Fault injection, configured per route; a no-op where no route asks for faults. */
export const faultFilter: HttpFilterConfigurer = () => [
  create(HttpFilterSchema, {
    name: FAULT_FILTER,
    configType: { case: "typedConfig", value: typedConfig(HTTPFaultSchema, create(HTTPFaultSchema, {})) },
  }),
];

/** CORS, configured per route; a no-op where no route has a CORS policy. */
export const corsFilter: HttpFilterConfigurer = () => [
  create(HttpFilterSchema, {
    name: CORS_FILTER,
    configType: { case: "typedConfig", value: typedConfig(CorsSchema, create(CorsSchema, {})) },
  }),
];

/** The router: sends the request upstream. Must be last. */
export const routerFilter: HttpFilterConfigurer = () => [
  create(HttpFilterSchema, {
    name: ROUTER_FILTER,
    configType: { case: "typedConfig", value: typedConfig(RouterSchema, create(RouterSchema, {})) },
  }),
];

/**
 * The configurers every connection manager runs, in filter order: JWT authentication, RBAC,
 * fault, CORS, router. JWT comes first so RBAC can read the verified token's metadata.
 */
export const HTTP_FILTER_CONFIGURERS: readonly HttpFilterConfigurer[] = [
  jwtFilter,
  rbacFilter,
  faultFilter,
  corsFilter,
  routerFilter,
];

/**
 * The configurers when mixer runs: JWT authentication, RBAC, mixer's ext_authz, mixer's rate
 * limit, fault, CORS, router. Security and quota come before fault injection, as in
 * {@link HTTP_FILTER_CONFIGURERS}.
 */
export const MIXER_HTTP_FILTER_CONFIGURERS: readonly HttpFilterConfigurer[] = [
  jwtFilter,
  rbacFilter,
  mixerAuthzFilter,
  mixerRateLimitFilter,
  faultFilter,
  corsFilter,
  routerFilter,
];

/** The configurer list for a push: {@link MIXER_HTTP_FILTER_CONFIGURERS} when mixer runs. */
export function httpFilterConfigurers(push: PushContext): readonly HttpFilterConfigurer[] {
  return push.features.mixer ? MIXER_HTTP_FILTER_CONFIGURERS : HTTP_FILTER_CONFIGURERS;
}

/**
 * The HTTP filters of one connection manager: each configurer's filters in list order (by
 * default the push's list, see {@link httpFilterConfigurers}). Throws when the last filter is
 * not the router (a request would never leave Envoy).
 */
export function buildHttpFilters(
  ctx: HttpFilterContext,
  configurers: readonly HttpFilterConfigurer[] = httpFilterConfigurers(ctx.push),
): HttpFilter[] {
  const filters = configurers.flatMap((c) => c(ctx));
  if (filters.at(-1)?.name !== ROUTER_FILTER) {
    throw new Error(
      `translate: the last HTTP filter must be ${ROUTER_FILTER}, got ${filters.at(-1)?.name ?? "none"}`,
    );
  }
  return filters;
}
