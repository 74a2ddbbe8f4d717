/**
 * What proxyless gRPC clients cannot express of a proxy's plans, listed instead of dropped:
 * one entry per resource and field, with the reason. Cluster entries come from the cluster
 * plans (load balancers, slow start, zone-aware routing, connection-pool limits gRPC does not
 * read, outlier-detection parts, TLS modes, auto mTLS, non-EDS discovery); route entries from
 * the route plans of each service port (matches no gRPC call can meet, redirects, direct
 * responses, rewrites, mirrors, header changes, CORS, retry conditions, JWT claims); server
 * entries from the AuthorizationPolicies selecting a server (CUSTOM enforced as DENY, AUDIT left
 * out; see tls.ts) and from its Sidecar's ingress listeners (listener_inbound.ts); endpoints of
 * another network reached through its gateway, which routes by an SNI gRPC clients do not send,
 * are listed per cluster and network. The renderers in this
 * folder make the same decisions; this file only names them.
 *
 * @module
 */
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import { autoMtlsSettings } from "../cluster.ts";
import type { OutboundClusterPlan } from "../cluster_plan.ts";
import { byString } from "../conversion.ts";
import { type NetworkView, networkView, splitHorizon } from "../endpoint.ts";
import { claimConditions, type RoutePlan, serviceRoutePlans } from "../route_plan.ts";
import { grpcClusterPlans } from "./cluster.ts";
import { ingressGaps } from "./listener_inbound.ts";
import { ignoredRetryOn } from "./retry.ts";
import { unmatchableReason } from "./route_match.ts";
import { joinHostPort } from "./names.ts";

/** One thing a gRPC client is not given, and why. */
export interface GrpcUnsupported {
  /**
   * `cluster NAME`, `route HOST:PORT` (the route configuration of the service's full name) or
   * `server listeners` (every server listener of the proxy).
   */
  readonly resource: string;
  /** The config field, relative to the merged traffic policy or to the VirtualService. */
  readonly field: string;
  readonly reason: string;
}

type Gap = Omit<GrpcUnsupported, "resource">;
type LoadBalancerSettings = OutboundClusterPlan["policy"]["loadBalancer"];
type HTTPRoute = NonNullable<RoutePlan["http"]>;

const NOT_READ = "gRPC clients do not read it (gRFC A32 reads only max_requests)";

function loadBalancerGaps(lb: LoadBalancerSettings): Gap[] {
  const out: Gap[] = [];
  const simple = lb?.simple;
  if (simple && simple !== "ROUND_ROBIN" && simple !== "UNSPECIFIED") {
    out.push({
      field: "loadBalancer.simple",
      reason: `${simple} is sent as ROUND_ROBIN: gRPC clients balance by round robin or ring hash only`,
    });
  }
  const ch = lb?.consistentHash;
  if (ch?.maglev) {
    out.push({
      field: "loadBalancer.consistentHash.maglev",
      reason: "sent as a ring hash: gRPC has no maglev",
    });
  }
  if (ch?.httpCookie) {
    out.push({
      field: "loadBalancer.consistentHash.httpCookie",
      reason: "gRPC calls carry no cookies; calls are spread over the ring at random",
    });
  }
  if (ch?.httpQueryParameterName) {
    out.push({
      field: "loadBalancer.consistentHash.httpQueryParameterName",
      reason: "gRPC calls carry no query string; calls are spread over the ring at random",
    });
  }
  if (lb?.warmupDurationSecs || lb?.warmup) {
    out.push({
      field: lb?.warmupDurationSecs ? "loadBalancer.warmupDurationSecs" : "loadBalancer.warmup",
      reason: "gRPC clients have no slow start; new endpoints get their full share at once",
    });
  }
  if (lb?.zoneAwareLbSetting && lb?.zoneAwareLbSetting.enabled !== false) {
    out.push({
      field: "loadBalancer.zoneAwareLbSetting",
      reason: "gRPC clients have no zone-aware routing; locality weights and priorities still apply",
    });
  }
  return out;
}

function clusterGaps(plan: OutboundClusterPlan, push: PushContext): Gap[] {
  const out: Gap[] = [];
  const { policy } = plan;
  if (plan.discovery !== "EDS") {
    out.push({
      field: "resolution",
      reason: plan.discovery === "ORIGINAL_DST"
        ? "gRPC clients cannot pass calls through to their original destination; the cluster has the service's IP endpoints only"
        : `${plan.discovery}: gRPC clients take endpoints over EDS only; IP endpoints are sent, host names left out`,
    });
  }
  out.push(...loadBalancerGaps(policy.loadBalancer));
  const tcp = policy.connectionPool?.tcp;
  const http = policy.connectionPool?.http;
  const notRead: [string, unknown][] = [
    ["connectionPool.tcp.maxConnections", tcp?.maxConnections],
    ["connectionPool.tcp.tcpKeepalive", tcp?.tcpKeepalive],
    ["connectionPool.tcp.maxConnectionDuration", tcp?.maxConnectionDuration],
    ["connectionPool.tcp.idleTimeout", tcp?.idleTimeout],
    ["connectionPool.http.http1MaxPendingRequests", http?.http1MaxPendingRequests],
    ["connectionPool.http.maxRetries", http?.maxRetries],
    ["connectionPool.http.maxRequestsPerConnection", http?.maxRequestsPerConnection],
    ["connectionPool.http.idleTimeout", http?.idleTimeout],
    ["connectionPool.http.h2UpgradePolicy", http?.h2UpgradePolicy],
    ["connectionPool.http.useClientProtocol", http?.useClientProtocol],
    ["connectionPool.http.maxConcurrentStreams", http?.maxConcurrentStreams],
    ["connectionPool.http.http2KeepAlive", http?.http2KeepAlive],
  ];
  for (const [field, value] of notRead) if (value !== undefined) out.push({ field, reason: NOT_READ });
  if (policy.retryBudget) {
    out.push({
      field: "retryBudget",
      reason: "gRPC clients have no retry budget (gRFC A32 reads only max_requests)",
    });
  }
  if (policy.tunnel) {
    out.push({
      field: "tunnel",
      reason: "gRPC clients connect to endpoints directly; they do not tunnel over HTTP CONNECT",
    });
  }
  if (policy.proxyProtocol) {
    out.push({ field: "proxyProtocol", reason: "gRPC clients send no PROXY protocol header" });
  }
  const od = policy.outlierDetection;
  if (od) {
    if (od.consecutive5xxErrors || od.consecutiveGatewayErrors || od.consecutiveErrors) {
      out.push({
        field: "outlierDetection.consecutive5xxErrors",
        reason: "gRPC has no consecutive-error ejection (gRFC A50): sent as failure-percentage ejection " +
          "over at least that many calls as well",
      });
    }
    if (od.minHealthPercent !== undefined) {
      out.push({
        field: "outlierDetection.minHealthPercent",
        reason: "gRPC clients have no panic threshold",
      });
    }
    if (od.splitExternalLocalOriginErrors || od.consecutiveLocalOriginFailures !== undefined) {
      out.push({
        field: "outlierDetection.splitExternalLocalOriginErrors",
        reason: "gRPC clients do not tell local-origin failures apart",
      });
    }
  }
  const mode = policy.tls?.mode;
  if (mode === "SIMPLE" || mode === "MUTUAL") {
    out.push({
      field: "tls.mode",
      reason: `${mode} is sent as plaintext: gRPC takes certificates only from the certificate ` +
        "provider instances of its bootstrap, which hold the mesh identity",
    });
  } else if (!mode && autoMtlsSettings(plan, push)) {
    out.push({
      field: "tls (auto mTLS)",
      reason: "Envoy uses mTLS here automatically; a gRPC client only with an explicit ISTIO_MUTUAL " +
        "DestinationRule, as it needs xDS credentials and a bootstrap with certificate providers",
    });
  }
  return out;
}

/**
 * Endpoints of another network, sent (as to Envoy, and as Istio sends them) as that network's
 * gateways: the gateway's AUTO_PASSTHROUGH server picks the endpoint by the SNI
 * `outbound_.PORT_.SUBSET_.HOST`, which a gRPC client does not send (gRFC A29 ignores the
 * cluster's `sni`), so calls that land on the gateway fail. One entry per such network.
 */
function networkGaps(plan: OutboundClusterPlan, view: NetworkView): Gap[] {
  if (!view.network || view.gateways.length === 0) return [];
  const sni = `outbound_.${plan.port.number}_.${plan.subset}_.${plan.service.hostname}`;
  const byNetwork = new Map<string, string[]>();
  for (const e of splitHorizon(plan.endpoints, view)) {
    if (!e.source.startsWith("network gateway ") || !e.network) continue;
    const list = byNetwork.get(e.network) ?? [];
    const at = `${e.address}:${e.port}`;
    if (!list.includes(at)) list.push(at);
    byNetwork.set(e.network, list);
  }
  return [...byNetwork.entries()].sort(([a], [b]) => byString(a, b)).map(([network, gateways]) => ({
    field: `endpoints (network ${network})`,
    reason:
      `sent as network ${network}'s gateway ${gateways.sort(byString).join(", ")}, as Envoy gets them; ` +
      `its AUTO_PASSTHROUGH server routes by SNI ${sni}, which gRPC clients do not send ` +
      "(gRFC A29 ignores the cluster's sni): calls sent there fail",
  }));
}

const ENVOY_ONLY = "not applied by gRPC clients";

function ruleGaps(http: HTTPRoute): Gap[] {
  const out: Gap[] = [];
  if (http.rewrite) out.push({ field: "rewrite", reason: ENVOY_ONLY });
  if (http.mirror || (http.mirrors?.length ?? 0) > 0) out.push({ field: "mirror", reason: ENVOY_ONLY });
  if (http.headers || http.route?.some((d) => d.headers)) out.push({ field: "headers", reason: ENVOY_ONLY });
  if (http.corsPolicy) out.push({ field: "corsPolicy", reason: ENVOY_ONLY });
  const r = http.retries;
  if (r?.retryOn) {
    const ignored = ignoredRetryOn(r.retryOn);
    if (ignored.length > 0) {
      out.push({
        field: "retries.retryOn",
        reason: `gRPC retries on gRPC status codes only; ${ignored.join(",")} left out`,
      });
    }
  }
  if (r?.retryRemoteLocalities) out.push({ field: "retries.retryRemoteLocalities", reason: ENVOY_ONLY });
  if (r?.retryIgnorePreviousHosts !== undefined) {
    out.push({ field: "retries.retryIgnorePreviousHosts", reason: ENVOY_ONLY });
  }
  if (http.fault?.delay?.exponentialDelay) {
    out.push({ field: "fault.delay.exponentialDelay", reason: "no fault filter injects exponential delays" });
  }
  if (http.fault?.abort?.http2Error) {
    out.push({ field: "fault.abort.http2Error", reason: "no fault filter injects HTTP/2 errors" });
  }
  return out;
}

function routeGaps(plan: RoutePlan): Gap[] {
  const at = (f: string) => (plan.path ? `${plan.path.replace(/\.match\[\d+\]$/, "")}.${f}` : f);
  const unmatchable = unmatchableReason(plan.match);
  if (unmatchable) return [{ field: plan.path, reason: `route left out: ${unmatchable}` }];
  const out: Gap[] = [];
  if (plan.action === "redirect") {
    out.push({
      field: at("redirect"),
      reason: "gRPC clients cannot follow redirects; calls fail with its status",
    });
  } else if (plan.action === "direct") {
    out.push({
      field: at("directResponse"),
      reason: "gRPC clients cannot be answered directly; calls fail with its status",
    });
  }
  if (plan.http) out.push(...ruleGaps(plan.http).map((g) => ({ ...g, field: at(g.field) })));
  return out;
}

type VirtualServiceResource = NonNullable<ReturnType<typeof serviceRoutePlans>["vs"]>;

/**
 * Matches on JWT claims (`@request.auth.claims`): a gRPC client verifies no token, so it has no
 * claims (as on a sidecar's outbound routes): a route needing a claim is left out, and
 * `withoutHeaders` on claims hold for every call.
 */
function claimGaps(vs: VirtualServiceResource): Gap[] {
  const out: Gap[] = [];
  (vs.spec.http ?? []).forEach((http, i) =>
    (http.match ?? []).forEach((m, j) => {
      const claims = claimConditions(m);
      if (claims.length === 0) return;
      out.push({
        field: `http[${i}].match[${j}]`,
        reason: claims.some((c) => !c.invert)
          ? "route left out: matches @request.auth.claims, and gRPC clients verify no JWT"
          : "withoutHeaders on @request.auth.claims hold for every call: gRPC clients verify no JWT",
      });
    })
  );
  return out;
}

/**
 * AuthorizationPolicies a gRPC server cannot enforce as written: CUSTOM (no ext_authz; its rules
 * are enforced as DENY, so it fails closed) and AUDIT (gRPC RBAC has no LOG action). Only for a
 * proxy that serves something.
 */
function serverAuthzGaps(push: PushContext, proxy: Proxy): GrpcUnsupported[] {
  if (push.instancesOf(proxy).length === 0) return [];
  return push.authorizationPolicies(proxy).flatMap((p): GrpcUnsupported[] => {
    const field = `AuthorizationPolicy ${p.metadata.namespace}/${p.metadata.name}`;
    if (p.spec.action === "CUSTOM") {
      return [{
        resource: "server listeners",
        field: `${field} action: CUSTOM (ext_authz)`,
        reason: `gRPC servers have no ext_authz: the calls its rules match are denied instead of asking ` +
          `provider ${JSON.stringify(p.spec.provider?.name ?? "")}`,
      }];
    }
    if (p.spec.action === "AUDIT") {
      return [{
        resource: "server listeners",
        field: `${field} action: AUDIT`,
        reason: "gRPC RBAC has no LOG action; the policy is left out",
      }];
    }
    return [];
  });
}

function byResourceAndField(a: GrpcUnsupported, b: GrpcUnsupported): number {
  return byString(a.resource, b.resource) || byString(a.field, b.field);
}

/**
 * Everything the gRPC resources of `proxy` leave out or approximate, compared with what the
 * same plans give Envoy, sorted by resource and field. Empty when gRPC expresses it all.
 */
export function grpcUnsupported(push: PushContext, proxy: Proxy): GrpcUnsupported[] {
  const out: GrpcUnsupported[] = [];
  const routed = new Set<string>();
  const view = networkView(push, proxy);
  for (const plan of grpcClusterPlans(push, proxy)) {
    for (const gap of [...clusterGaps(plan, push), ...networkGaps(plan, view)]) {
      out.push({ resource: `cluster ${plan.name}`, ...gap });
    }
    if (plan.subset !== "") continue;
    const name = joinHostPort(plan.service.hostname, plan.port.number);
    if (routed.has(name)) continue;
    routed.add(name);
    const { vs, routes } = serviceRoutePlans(push, proxy, plan.service.hostname, plan.port.number);
    const prefix = vs ? `${vs.metadata.namespace}/${vs.metadata.name} ` : "";
    for (const route of routes) {
      for (const gap of routeGaps(route)) {
        out.push({ resource: `route ${name}`, field: `${prefix}${gap.field}`, reason: gap.reason });
      }
    }
    for (const gap of vs ? claimGaps(vs) : []) {
      out.push({ resource: `route ${name}`, field: `${prefix}${gap.field}`, reason: gap.reason });
    }
  }
  out.push(...serverAuthzGaps(push, proxy));
  out.push(...ingressGaps(push, proxy).map((g) => ({ resource: "server listeners", ...g })));
  return out.sort(byResourceAndField);
}
