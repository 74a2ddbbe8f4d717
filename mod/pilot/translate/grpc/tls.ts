/**
 * Transport security for proxyless gRPC (gRFC A29). gRPC takes mTLS from a cluster's (client
 * side) or a filter chain's (server side) transport socket, naming certificate provider
 * instances of its bootstrap rather than SDS secrets: the node agent's bootstrap defines the
 * `file_watcher` instance `default`, whose certificate `default` is the workload identity and
 * `ROOTCA` the mesh root (Istio's grpcgen names them the same way).
 *
 * - Client: a DestinationRule's ISTIO_MUTUAL (the cluster plan's merged policy) gives an
 *   UpstreamTlsContext verifying the server's SPIFFE identities, with the SNI Envoy sends. Auto-mTLS is deliberately not applied to gRPC clients, as in Istio's
 *   grpcgen: a client only honours the context when it was built with xDS credentials and a
 *   bootstrap with certificate providers (grpc-js-xds rejects the whole cluster otherwise), and
 *   gRPC servers cannot serve PERMISSIVE, so opting in stays explicit. Other modes (SIMPLE,
 *   MUTUAL with files or credentialName) need certificates gRPC can only take from provider
 *   instances meshd's bootstrap does not define, so they stay plaintext. Both are reported by
 *   unsupported.ts.
 * - Server: PeerAuthentication STRICT gives a DownstreamTlsContext requiring client
 *   certificates. gRPC matches filter chains only on transport protocol `raw_buffer` (gRFC
 *   A36) and cannot tell TLS from plaintext on one port, so PERMISSIVE, like DISABLE, serves
 *   plaintext (Istio's grpcgen does the same).
 * - Authorization: {@link serverRbacFilters} gives the RBAC HTTP filters (gRFC A41) for a
 *   server's connection manager, ahead of the router. gRPC has no ext_authz, so CUSTOM rules
 *   are enforced as DENY (the calls the authorizer would have been asked about are refused,
 *   never let through); gRPC RBAC has no LOG action, so AUDIT policies are left out. Both are
 *   reported by unsupported.ts. gRPC refuses two HTTP filters of one name, so each action's
 *   filter has its own (`envoy.filters.http.rbac.CUSTOM`, `.DENY`, and the plain name for ALLOW).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { type TransportSocket, TransportSocketSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { RBAC_Action, RBACSchema } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { CertificateValidationContextSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/common_pb.ts";
import {
  CommonTlsContextSchema,
  DownstreamTlsContextSchema,
  UpstreamTlsContextSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import type { HttpFilter } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import type { Endpoint } from "../../model/service.ts";
import { effectiveMtlsMode } from "../authn.ts";
import { badCustomRbac, buildRbac, HTTP_RBAC_FILTER, type RbacConfig, rbacHttpFilters } from "../authz.ts";
import { customRulesByProvider } from "../ext_authz.ts";
import type { OutboundClusterPlan } from "../cluster_plan.ts";
import { exactMatcher } from "../conversion.ts";
import { istioMtlsSni, SDS_ROOT_CA, SDS_WORKLOAD_CERT, TLS_TRANSPORT_SOCKET } from "../tls.ts";

/** The certificate provider instance of the gRPC bootstrap the node agent writes. */
export const CERTIFICATE_PROVIDER_INSTANCE = "default";

/** The workload identity and the mesh root, as certificate provider instances. */
function meshCommonTlsContext(sans: readonly string[]) {
  return create(CommonTlsContextSchema, {
    tlsCertificateProviderInstance: {
      instanceName: CERTIFICATE_PROVIDER_INSTANCE,
      certificateName: SDS_WORKLOAD_CERT,
    },
    validationContextType: {
      case: "validationContext",
      value: create(CertificateValidationContextSchema, {
        caCertificateProviderInstance: {
          instanceName: CERTIFICATE_PROVIDER_INSTANCE,
          certificateName: SDS_ROOT_CA,
        },
        matchSubjectAltNames: sans.map(exactMatcher),
      }),
    },
  });
}

/**
 * The transport socket for a planned cluster, or undefined for plaintext: mesh mTLS when the
 * DestinationRule's merged policy says ISTIO_MUTUAL (see the module notes), verifying the
 * rule's `subjectAltNames` or else the plan's identities (the SPIFFE identities of the port's
 * workloads and the service's own `subjectAltNames`), with Istio's SNI as Envoy sends it.
 */
export function clientTransportSocket(plan: OutboundClusterPlan): TransportSocket | undefined {
  const tls = plan.policy.tls;
  if (tls?.mode !== "ISTIO_MUTUAL") return undefined;
  const sans = tls.subjectAltNames && tls.subjectAltNames.length > 0 ? tls.subjectAltNames : plan.identities;
  const context = create(UpstreamTlsContextSchema, {
    commonTlsContext: meshCommonTlsContext(sans),
    sni: tls.sni ||
      istioMtlsSni({ host: plan.service.hostname, port: plan.port.number, subset: plan.subset }),
  });
  return create(TransportSocketSchema, {
    name: TLS_TRANSPORT_SOCKET,
    configType: { case: "typedConfig", value: anyPack(UpstreamTlsContextSchema, context) },
  });
}

/**
 * The transport socket of the server listener for `instance` of `proxy`: mTLS requiring a
 * client certificate when PeerAuthentication makes the port STRICT, else undefined
 * (plaintext; see the module notes for PERMISSIVE).
 */
export function serverTransportSocket(
  push: PushContext,
  proxy: Proxy,
  instance: Endpoint,
): TransportSocket | undefined {
  if (effectiveMtlsMode(push, proxy, instance.port) !== "STRICT") return undefined;
  const context = create(DownstreamTlsContextSchema, {
    commonTlsContext: meshCommonTlsContext([]),
    requireClientCertificate: true,
  });
  return create(TransportSocketSchema, {
    name: TLS_TRANSPORT_SOCKET,
    configType: { case: "typedConfig", value: anyPack(DownstreamTlsContextSchema, context) },
  });
}

/** The gRPC filter name of each action's RBAC filter (unique, as gRPC requires). */
export const GRPC_RBAC_FILTER_NAMES: Readonly<Record<"CUSTOM" | "DENY" | "ALLOW", string>> = {
  CUSTOM: `${HTTP_RBAC_FILTER}.CUSTOM`,
  DENY: `${HTTP_RBAC_FILTER}.DENY`,
  ALLOW: HTTP_RBAC_FILTER,
};

/**
 * The CUSTOM rules of `policies` (every provider's) as one DENY config, each rule named as
 * Envoy's fail-closed rules are (authz.ts `badCustomRbac`); undefined when no policy is CUSTOM.
 */
export function grpcCustomDenyRbac(
  policies: Parameters<typeof customRulesByProvider>[0],
): RbacConfig | undefined {
  const groups = customRulesByProvider(policies, "http");
  if (groups.length === 0) return undefined;
  const denied = groups.map((g) => badCustomRbac(g.rules));
  const rules = create(RBACSchema, {
    action: RBAC_Action.DENY,
    policies: Object.assign({}, ...denied.map((d) => d.policies)),
  });
  return { action: "DENY", rules };
}

/**
 * The RBAC HTTP filters (gRFC A41) of a gRPC server of `proxy`, to go before the router: the
 * CUSTOM rules enforced as DENY, then the DENY and ALLOW policies selecting its workload (AUDIT
 * left out, see the module notes); none when no policy applies.
 */
export function serverRbacFilters(push: PushContext, proxy: Proxy): HttpFilter[] {
  const policies = push.authorizationPolicies(proxy);
  const custom = grpcCustomDenyRbac(policies);
  const named: [string, RbacConfig][] = [
    ...(custom ? [[GRPC_RBAC_FILTER_NAMES.CUSTOM, custom] as [string, RbacConfig]] : []),
    ...buildRbac(policies, "http").flatMap((c): [string, RbacConfig][] =>
      c.action === "AUDIT" ? [] : [[GRPC_RBAC_FILTER_NAMES[c.action], c]]
    ),
  ];
  return named.map(([name, config]) => {
    const filter = rbacHttpFilters([config])[0]!;
    filter.name = name;
    return filter;
  });
}
