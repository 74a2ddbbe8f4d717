/**
 * AuthorizationPolicy `action: CUSTOM`: requests matching a CUSTOM rule are sent to the external
 * authorizer that `provider.name` names among MeshConfig `extensionProviders`
 * (`envoyExtAuthzGrpc` or `envoyExtAuthzHttp`), as Istio's authz builder does:
 *
 * - Per provider, two HTTP filters before the other RBAC filters: an RBAC filter whose
 *   *shadow* rules are the CUSTOM rules (authz.ts `buildCustomRbac`; shadow rules decide
 *   nothing, they only record the matching policy's name in the dynamic metadata
 *   `envoy.filters.http.rbac` / `istio_ext_authz_shadow_effective_policy_id`), then
 *   `envoy.filters.http.ext_authz`, enabled (`filter_enabled_metadata`) only when that name
 *   starts with the provider's prefix. So the authorizer is asked only about requests a CUSTOM
 *   rule matches, and its answer is enforced before DENY and ALLOW policies are looked at.
 * - The provider's `service` is looked up in the registry as Istio does (the rule is mod/api
 *   ext_authz_provider.ts, which `meshd analyze` applies too): `NAMESPACE/HOST` (a
 *   short HOST is qualified in NAMESPACE, mod/api `resolveHost`), or a host name found in
 *   exactly one namespace; the filter calls the service's cluster `outbound|PORT||HOST`. The
 *   port must be one of the service's, and the service visible to the proxy (exportTo, Sidecar
 *   egress), or the cluster would not exist. meshd's own mixer is a provider like any other: a
 *   ServiceEntry for meshd's address and its gRPC port makes its ext_authz Check reachable.
 * - Fail closed, as Istio: when the provider is not defined, is not an external authorizer,
 *   cannot be resolved, or when one workload's CUSTOM policies name several providers, the
 *   CUSTOM rules are enforced as DENY (`authz.ts` `badCustomRbac`): exactly the requests the
 *   authorizer would have been asked about are refused. {@link customAuthzProblems} says why.
 * - Applies to sidecar inbound and gateway connection managers (not outbound).
 * - TCP chains (sidecar inbound, gateway TCP and TLS servers), as Istio: per provider a network
 *   RBAC filter with the CUSTOM rules (TCP fields only) as shadow rules, then
 *   `envoy.filters.network.ext_authz` enabled by the shadow rules' metadata, both before the
 *   network RBAC filters of the other actions ({@link tcpAuthzFilters}). Only gRPC providers can
 *   check a connection; an HTTP provider's CUSTOM rules do nothing on TCP chains (as in Istio),
 *   which {@link customAuthzTcpSkipped} reports. A provider that cannot be used fails closed on
 *   TCP chains too.
 * - Proxyless gRPC servers have no ext_authz: grpc/tls.ts enforces the CUSTOM rules as DENY
 *   ({@link customRulesByProvider}, `badCustomRbac`), so they never fail open.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { ApiVersion } from "#gen/envoy/config/core/v3/config_source_pb.ts";
import { HeaderValueSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { GrpcServiceSchema } from "#gen/envoy/config/core/v3/grpc_service_pb.ts";
import { HttpUriSchema } from "#gen/envoy/config/core/v3/http_uri_pb.ts";
import {
  AuthorizationRequestSchema,
  AuthorizationResponseSchema,
  type ExtAuthz,
  ExtAuthzSchema,
  HttpServiceSchema,
} from "#gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.ts";
import { RBACSchema as HttpRbacSchema } from "#gen/envoy/extensions/filters/http/rbac/v3/rbac_pb.ts";
import {
  type ExtAuthz as NetworkExtAuthz,
  ExtAuthzSchema as NetworkExtAuthzSchema,
} from "#gen/envoy/extensions/filters/network/ext_authz/v3/ext_authz_pb.ts";
import { RBACSchema as NetworkRbacSchema } from "#gen/envoy/extensions/filters/network/rbac/v3/rbac_pb.ts";
import { type Filter, FilterSchema } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import {
  type HttpFilter,
  HttpFilterSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { RBAC } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { type MetadataMatcher, MetadataMatcherSchema } from "#gen/envoy/type/matcher/v3/metadata_pb.ts";
import {
  type ListStringMatcher,
  ListStringMatcherSchema,
  type StringMatcher,
  StringMatcherSchema,
} from "#gen/envoy/type/matcher/v3/string_pb.ts";
import {
  findExtAuthzProvider,
  findProviderService,
  severalCustomProviders,
} from "../../api/ext_authz_provider.ts";
import type { ExtAuthzGrpcProvider, ExtAuthzHttpProvider } from "../../api/kinds/mesh_config.ts";
import type { AuthorizationPolicySpec } from "../../api/kinds/security.ts";
import type { Resource } from "../../api/resource.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import type { Service } from "../model/service.ts";
import {
  badCustomRbac,
  buildCustomRbac,
  buildRbac,
  customPolicyPrefix,
  HTTP_RBAC_FILTER,
  NETWORK_RBAC_FILTER,
  type RbacFlavor,
  rbacNetworkFilters,
} from "./authz.ts";
import { outboundClusterName } from "./cluster_name.ts";
import { durationFromString, typedConfig } from "./conversion.ts";
import type { HttpFilterConfigurer } from "./http_filter_context.ts";

/** The HTTP filter name of external authorization. */
const HTTP_EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz";
/** The network filter name of external authorization. */
export const NETWORK_EXT_AUTHZ_FILTER = "envoy.filters.network.ext_authz";
/** The stat prefix of TCP authorization filters (Istio's). */
const TCP_STAT_PREFIX = "tcp.";

/** Where the RBAC filter's shadow rules record the matching policy's name (Istio's key). */
export const CUSTOM_SHADOW_POLICY_KEY = "istio_ext_authz_shadow_effective_policy_id";

/** The stat prefix of the shadow rules, which also prefixes their metadata keys. */
const CUSTOM_SHADOW_STAT_PREFIX = "istio_ext_authz_";

/** Istio's timeout for an authorizer call when the provider names none. */
const DEFAULT_TIMEOUT = "600s";

/** The cluster an external authorizer is reached through. */
export interface ProviderTarget {
  /** The service's host name. */
  readonly hostname: string;
  /** `outbound|PORT||HOST`. */
  readonly cluster: string;
}

/** A provider resolved for one proxy: its ext_authz filter config, or why it cannot be used. */
export type ResolvedProvider =
  | {
    readonly ok: true;
    readonly target: ProviderTarget;
    readonly extAuthz: ExtAuthz;
    /** The network filter's config: gRPC providers only (an HTTP authorizer cannot check a connection). */
    readonly networkExtAuthz?: NetworkExtAuthz;
  }
  | { readonly ok: false; readonly reason: string };

/** What CUSTOM policies do on one proxy, per provider name (sorted). */
export interface CustomAuthzPlan {
  readonly providers: readonly {
    readonly provider: string;
    /** The CUSTOM rules naming this provider (action DENY, for shadow or fail-closed use). */
    readonly rules: RBAC;
    /** Set when these rules are enforced as DENY instead of asking the authorizer. */
    readonly problem?: string;
    readonly extAuthz?: ExtAuthz;
    readonly networkExtAuthz?: NetworkExtAuthz;
  }[];
}

/**
 * Finds the cluster of a provider's `service` and `port` for `proxy`, or says why there is none
 * (see the module notes for the lookup rules).
 */
export function lookupProviderTarget(
  push: PushContext,
  proxy: Proxy,
  service: string,
  port: number,
): ProviderTarget | { readonly reason: string } {
  const visible = push.visibleServices(proxy);
  const found = findProviderService(push.services, service, port, (s) => visible.includes(s));
  if (!found.ok) return { reason: found.reason };
  const svc: Service = found.value;
  return { hostname: svc.hostname, cluster: outboundClusterName(port, svc.hostname) };
}

/** Istio's header list: `*x` a suffix, `x*` a prefix, else exact; case-insensitive. */
function headerList(headers: readonly string[] | undefined): ListStringMatcher | undefined {
  if (!headers || headers.length === 0) return undefined;
  const pattern = (h: string): StringMatcher["matchPattern"] =>
    h.startsWith("*")
      ? { case: "suffix", value: h.slice(1) }
      : h.endsWith("*")
      ? { case: "prefix", value: h.slice(0, -1) }
      : { case: "exact", value: h };
  return create(ListStringMatcherSchema, {
    patterns: headers.map((h) => create(StringMatcherSchema, { matchPattern: pattern(h), ignoreCase: true })),
  });
}

/** `filter_enabled_metadata`: the shadow rules of the RBAC filter `rbacFilter` matched a policy of `provider`. */
function enabledFor(provider: string, rbacFilter = HTTP_RBAC_FILTER): MetadataMatcher {
  return create(MetadataMatcherSchema, {
    filter: rbacFilter,
    path: [{ segment: { case: "key", value: CUSTOM_SHADOW_POLICY_KEY } }],
    value: {
      matchPattern: {
        case: "stringMatch",
        value: create(StringMatcherSchema, {
          matchPattern: { case: "prefix", value: customPolicyPrefix(provider) },
        }),
      },
    },
  });
}

/** The settings both provider kinds share. */
function commonSettings(provider: string, p: ExtAuthzGrpcProvider | ExtAuthzHttpProvider) {
  const body = p.includeRequestBodyInCheck;
  return {
    transportApiVersion: ApiVersion.V3,
    failureModeAllow: p.failOpen ?? false,
    clearRouteCache: p.clearRouteCache ?? false,
    ...(p.statusOnError ? { statusOnError: { code: Number(p.statusOnError) } } : {}),
    ...(body
      ? {
        withRequestBody: {
          maxRequestBytes: body.maxRequestBytes ?? 0,
          allowPartialMessage: body.allowPartialMessage ?? false,
          packAsBytes: body.packAsBytes ?? false,
        },
      }
      : {}),
    filterEnabledMetadata: enabledFor(provider),
  };
}

/** The ext_authz config of a gRPC provider (envoy.service.auth.v3.Authorization on the cluster). */
function grpcExtAuthz(provider: string, p: ExtAuthzGrpcProvider, target: ProviderTarget): ExtAuthz {
  const grpcService = create(GrpcServiceSchema, {
    targetSpecifier: {
      case: "envoyGrpc",
      value: { clusterName: target.cluster, authority: target.hostname },
    },
    timeout: durationFromString(p.timeout ?? DEFAULT_TIMEOUT),
  });
  return create(ExtAuthzSchema, {
    ...commonSettings(provider, p),
    services: { case: "grpcService", value: grpcService },
  });
}

/** The network ext_authz config of a gRPC provider: the connection checked once, before any byte passes. */
function grpcNetworkExtAuthz(
  provider: string,
  p: ExtAuthzGrpcProvider,
  target: ProviderTarget,
): NetworkExtAuthz {
  return create(NetworkExtAuthzSchema, {
    statPrefix: TCP_STAT_PREFIX,
    failureModeAllow: p.failOpen ?? false,
    transportApiVersion: ApiVersion.V3,
    grpcService: {
      targetSpecifier: {
        case: "envoyGrpc",
        value: { clusterName: target.cluster, authority: target.hostname },
      },
      timeout: durationFromString(p.timeout ?? DEFAULT_TIMEOUT),
    },
    filterEnabledMetadata: enabledFor(provider, NETWORK_RBAC_FILTER),
  });
}

/** The ext_authz config of an HTTP provider (the request's headers sent to HOST + pathPrefix). */
function httpExtAuthz(provider: string, p: ExtAuthzHttpProvider, target: ProviderTarget): ExtAuthz {
  const additional = Object.keys(p.includeAdditionalHeadersInCheck ?? {}).sort();
  const upstream = headerList(p.headersToUpstreamOnAllow);
  const clientOnDeny = headerList(p.headersToDownstreamOnDeny);
  const clientOnAllow = headerList(p.headersToDownstreamOnAllow);
  const httpService = create(HttpServiceSchema, {
    pathPrefix: p.pathPrefix ?? "",
    serverUri: create(HttpUriSchema, {
      uri: `http://${target.hostname}`,
      httpUpstreamType: { case: "cluster", value: target.cluster },
      timeout: durationFromString(p.timeout ?? DEFAULT_TIMEOUT),
    }),
    ...(additional.length > 0
      ? {
        authorizationRequest: create(AuthorizationRequestSchema, {
          headersToAdd: additional.map((key) =>
            create(HeaderValueSchema, { key, value: p.includeAdditionalHeadersInCheck![key]! })
          ),
        }),
      }
      : {}),
    ...(upstream || clientOnDeny || clientOnAllow
      ? {
        authorizationResponse: create(AuthorizationResponseSchema, {
          ...(upstream ? { allowedUpstreamHeaders: upstream } : {}),
          ...(clientOnDeny ? { allowedClientHeaders: clientOnDeny } : {}),
          ...(clientOnAllow ? { allowedClientHeadersOnSuccess: clientOnAllow } : {}),
        }),
      }
      : {}),
  });
  // includeHeadersInCheck is Istio's deprecated name, used only when the new one is absent.
  const allowed = headerList(p.includeRequestHeadersInCheck) ?? headerList(p.includeHeadersInCheck);
  return create(ExtAuthzSchema, {
    ...commonSettings(provider, p),
    services: { case: "httpService", value: httpService },
    ...(allowed ? { allowedHeaders: allowed } : {}),
  });
}

/**
 * Resolves the extension provider `name` of the proxy's MeshConfig into an ext_authz config,
 * or says why it cannot be used (not defined, not an external authorizer, service not found).
 */
export function resolveExtAuthzProvider(push: PushContext, proxy: Proxy, name: string): ResolvedProvider {
  const found = findExtAuthzProvider(push.mesh.extensionProviders, name);
  if (!found.ok) return { ok: false, reason: found.reason };
  const { config, grpc, http } = found.value;
  const target = lookupProviderTarget(push, proxy, config.service, config.port);
  if ("reason" in target) {
    return { ok: false, reason: `extension provider ${JSON.stringify(name)}: ${target.reason}` };
  }
  if (grpc) {
    return {
      ok: true,
      target,
      extAuthz: grpcExtAuthz(name, grpc, target),
      networkExtAuthz: grpcNetworkExtAuthz(name, grpc, target),
    };
  }
  return { ok: true, target, extAuthz: httpExtAuthz(name, http!, target) };
}

/** The CUSTOM policies among `policies`, grouped by provider name (sorted by name). */
function byProvider(
  policies: readonly Resource<AuthorizationPolicySpec>[],
): [string, Resource<AuthorizationPolicySpec>[]][] {
  const groups = new Map<string, Resource<AuthorizationPolicySpec>[]>();
  for (const p of policies) {
    if (p.spec.action !== "CUSTOM") continue;
    const name = p.spec.provider?.name ?? "";
    groups.set(name, [...(groups.get(name) ?? []), p]);
  }
  return [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The rules of the CUSTOM policies among `policies`, one RBAC config (action DENY, names with
 * the provider's prefix) per provider name, sorted by provider; `flavor` says which fields the
 * chain can evaluate (authz.ts `buildCustomRbac`).
 */
export function customRulesByProvider(
  policies: readonly Resource<AuthorizationPolicySpec>[],
  flavor: RbacFlavor,
): { readonly provider: string; readonly rules: RBAC }[] {
  return byProvider(policies).map(([provider, group]) => ({
    provider,
    rules: buildCustomRbac(group, flavor, provider),
  }));
}

/**
 * What the CUSTOM policies selecting `proxy` do, per provider: the rules (with the fields a
 * `flavor` chain can evaluate), and either the provider's ext_authz configs or the problem for
 * which the rules are enforced as DENY. Several providers for one workload are a problem for
 * all of them (Istio's default).
 */
export function planCustomAuthz(
  push: PushContext,
  proxy: Proxy,
  flavor: RbacFlavor = "http",
): CustomAuthzPlan {
  const groups = customRulesByProvider(push.authorizationPolicies(proxy), flavor);
  const several = severalCustomProviders(groups.map((g) => g.provider));
  return {
    providers: groups.map(({ provider, rules }) => {
      if (several) return { provider, rules, problem: several };
      const resolved = resolveExtAuthzProvider(push, proxy, provider);
      if (!resolved.ok) return { provider, rules, problem: resolved.reason };
      return {
        provider,
        rules,
        extAuthz: resolved.extAuthz,
        ...(resolved.networkExtAuthz ? { networkExtAuthz: resolved.networkExtAuthz } : {}),
      };
    }),
  };
}

/**
 * Why CUSTOM policies selecting `proxy` are enforced as DENY instead of asking their provider,
 * one line per provider with a problem; empty when every provider can be used.
 */
export function customAuthzProblems(push: PushContext, proxy: Proxy): string[] {
  return planCustomAuthz(push, proxy).providers.flatMap((p) =>
    p.problem ? [`CUSTOM provider ${JSON.stringify(p.provider)}: ${p.problem}`] : []
  );
}

/**
 * The CUSTOM providers of `proxy` whose rules do nothing on its TCP chains, one line each: HTTP
 * authorizers cannot check a connection (Istio skips them there too). Empty when there are none.
 */
export function customAuthzTcpSkipped(push: PushContext, proxy: Proxy): string[] {
  return planCustomAuthz(push, proxy, "tcp").providers.flatMap((p) =>
    p.extAuthz && !p.networkExtAuthz
      ? [
        `CUSTOM provider ${JSON.stringify(p.provider)}: an HTTP authorizer (envoyExtAuthzHttp) cannot ` +
        "check TCP connections; its CUSTOM rules are not applied on TCP filter chains",
      ]
      : []
  );
}

function rbacNetworkFilter(
  rbac: { rules?: RBAC; shadowRules?: RBAC; shadowRulesStatPrefix?: string },
): Filter {
  return create(FilterSchema, {
    name: NETWORK_RBAC_FILTER,
    configType: {
      case: "typedConfig",
      value: typedConfig(
        NetworkRbacSchema,
        create(NetworkRbacSchema, { ...rbac, statPrefix: TCP_STAT_PREFIX }),
      ),
    },
  });
}

/**
 * The network filters of a {@link CustomAuthzPlan} built for TCP chains, in order: per gRPC
 * provider the shadow RBAC filter and network ext_authz, per provider with a problem the
 * fail-closed DENY filter, nothing for HTTP providers (see the module notes).
 */
export function customAuthzNetworkFilters(plan: CustomAuthzPlan): Filter[] {
  return plan.providers.flatMap((p) => {
    if (p.problem) return [rbacNetworkFilter({ rules: badCustomRbac(p.rules) })];
    if (!p.networkExtAuthz) return [];
    return [
      rbacNetworkFilter({ shadowRules: p.rules, shadowRulesStatPrefix: CUSTOM_SHADOW_STAT_PREFIX }),
      create(FilterSchema, {
        name: NETWORK_EXT_AUTHZ_FILTER,
        configType: { case: "typedConfig", value: typedConfig(NetworkExtAuthzSchema, p.networkExtAuthz) },
      }),
    ];
  });
}

/**
 * Every authorization filter of a TCP chain of `proxy`, in Istio's order: CUSTOM
 * ({@link customAuthzNetworkFilters}), then the network RBAC filters of AUDIT, DENY and ALLOW
 * policies. Goes before the TCP proxy.
 */
export function tcpAuthzFilters(push: PushContext, proxy: Proxy): Filter[] {
  return [
    ...customAuthzNetworkFilters(planCustomAuthz(push, proxy, "tcp")),
    ...rbacNetworkFilters(buildRbac(push.authorizationPolicies(proxy), "tcp")),
  ];
}

function rbacHttpFilter(
  rbac: { rules?: RBAC; shadowRules?: RBAC; shadowRulesStatPrefix?: string },
): HttpFilter {
  return create(HttpFilterSchema, {
    name: HTTP_RBAC_FILTER,
    configType: { case: "typedConfig", value: typedConfig(HttpRbacSchema, create(HttpRbacSchema, rbac)) },
  });
}

/** The HTTP filters of a {@link CustomAuthzPlan}, in order (see the module notes). */
export function customAuthzHttpFilters(plan: CustomAuthzPlan): HttpFilter[] {
  return plan.providers.flatMap((p) =>
    p.extAuthz
      ? [
        rbacHttpFilter({ shadowRules: p.rules, shadowRulesStatPrefix: CUSTOM_SHADOW_STAT_PREFIX }),
        create(HttpFilterSchema, {
          name: HTTP_EXT_AUTHZ_FILTER,
          configType: { case: "typedConfig", value: typedConfig(ExtAuthzSchema, p.extAuthz) },
        }),
      ]
      : [rbacHttpFilter({ rules: badCustomRbac(p.rules) })]
  );
}

/**
 * CUSTOM authorization on inbound and gateway connection managers: per provider the shadow
 * RBAC filter and ext_authz, or the fail-closed DENY filter; nothing on outbound ones or where
 * no CUSTOM policy selects the workload.
 */
export const customAuthzFilter: HttpFilterConfigurer = (ctx) =>
  ctx.direction === "outbound" ? [] : customAuthzHttpFilters(planCustomAuthz(ctx.push, ctx.proxy));
