/**
 * Parity between the two translations: for every golden input, the proxyless-gRPC resources
 * agree with the Envoy ones for the same proxy on every field both data planes can express —
 * cluster load balancer, ring size, circuit breakers, outlier detection, TLS (SANs and SNI),
 * connect timeout and EDS names; endpoints (addresses, weights, localities and priorities; another
 * network's as its gateways, each cluster reached that way reported for gRPC); and,
 * for sidecars, each service's routes: matching, destinations and weights, timeout, retries,
 * faults and hash policies. Fields only one side has (Envoy's cookie hashing, rewrites, gRPC's
 * failure-percentage ejection) are left out of the comparison; what gRPC cannot express is
 * reported by grpcUnsupported and is checked for here too.
 */
import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { isIP } from "node:net";
import { type Cluster, Cluster_LbPolicy } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import type { HeaderMatcher, Route, RouteMatch } from "#gen/envoy/config/route/v3/route_components_pb.ts";
import type { RouteConfiguration } from "#gen/envoy/config/route/v3/route_pb.ts";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { HTTPFaultSchema } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import { UpstreamTlsContextSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import type { TransportSocket } from "#gen/envoy/config/core/v3/base_pb.ts";
import { ProxyProtocolUpstreamTransportSchema } from "#gen/envoy/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol_pb.ts";
import { RAW_BUFFER_TRANSPORT_SOCKET } from "../../../mod/pilot/translate/cluster.ts";
import type { FractionalPercent } from "#gen/envoy/type/v3/percent_pb.ts";
import { buildClusters, buildEndpoints, buildRoutes } from "../../../mod/pilot/translate/mod.ts";
import {
  buildGrpcClusters,
  buildGrpcEndpoints,
  buildGrpcRoutes,
  grpcUnsupported,
} from "../../../mod/pilot/translate/grpc/mod.ts";
import { TRANSLATE_REGISTRY } from "../../../mod/pilot/translate/type_registry.ts";
import { mergeTrafficPolicy } from "../../../mod/api/mod.ts";
import { parseOutboundClusterName } from "../../../mod/pilot/translate/cluster_name.ts";
import { networkView } from "../../../mod/pilot/translate/endpoint.ts";
import type { PushContext } from "../../../mod/pilot/model/push_context.ts";
import type { Proxy } from "../../../mod/pilot/model/proxy.ts";
import { caseNames, readCase } from "./_golden.ts";
import { pushFrom, sidecar } from "../_push.ts";

// --- clusters ---------------------------------------------------------------------------------

function ms(d: Duration | undefined): number | undefined {
  return d === undefined ? undefined : Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
}

/** The socket inside a PROXY protocol wrapper (proxyProtocol is reported for gRPC), else `ts`. */
function unwrapProxyProtocol(ts: TransportSocket | undefined): TransportSocket | undefined {
  if (!ts || ts.configType.case !== "typedConfig") return ts;
  const wrapper = anyUnpack(ts.configType.value, ProxyProtocolUpstreamTransportSchema);
  if (!wrapper) return ts;
  // The plaintext socket a cluster without TLS gets wrapped is no TLS at all.
  return wrapper.transportSocket?.name === RAW_BUFFER_TRANSPORT_SOCKET ? undefined : wrapper.transportSocket;
}

function tlsView(c: Cluster) {
  const ts = unwrapProxyProtocol(c.transportSocket);
  if (!ts || ts.configType.case !== "typedConfig") return undefined;
  const ctx = anyUnpack(ts.configType.value, UpstreamTlsContextSchema);
  if (!ctx) return "not an UpstreamTlsContext";
  const v = ctx.commonTlsContext?.validationContextType;
  const sans = v?.case === "validationContext"
    ? v.value.matchSubjectAltNames
    : v?.case === "combinedValidationContext"
    ? v.value.defaultValidationContext?.matchSubjectAltNames ?? []
    : [];
  return {
    sni: ctx.sni,
    sans: sans.map((m) => `${m.matchPattern.case}:${String(m.matchPattern.value)}`).sort(),
  };
}

/** What both a gRPC client and Envoy read from a cluster. */
function clusterView(c: Cluster) {
  const hashing = c.lbPolicy === Cluster_LbPolicy.RING_HASH || c.lbPolicy === Cluster_LbPolicy.MAGLEV;
  const t = c.circuitBreakers?.thresholds[0];
  const od = c.outlierDetection;
  return {
    consistentHash: hashing,
    ringSize: c.lbConfig.case === "ringHashLbConfig" ? c.lbConfig.value.minimumRingSize : undefined,
    connectTimeoutMs: ms(c.connectTimeout),
    maxRequests: t?.maxRequests,
    maxConnections: t?.maxConnections,
    maxPendingRequests: t?.maxPendingRequests,
    maxRetries: t?.maxRetries,
    outlier: od
      ? {
        intervalMs: ms(od.interval),
        baseEjectionMs: ms(od.baseEjectionTime),
        maxEjectionPercent: od.maxEjectionPercent,
        consecutive5xx: od.consecutive5xx,
        enforcingConsecutive5xx: od.enforcingConsecutive5xx,
        consecutiveGatewayFailure: od.consecutiveGatewayFailure,
        enforcingConsecutiveGatewayFailure: od.enforcingConsecutiveGatewayFailure,
        enforcingSuccessRate: od.enforcingSuccessRate,
      }
      : undefined,
    edsName: c.edsClusterConfig?.serviceName,
  };
}

function isEds(c: Cluster): boolean {
  return c.clusterDiscoveryType.case === "type" && c.clusterDiscoveryType.value === 3;
}

/** The TLS mode the DestinationRule itself sets for a cluster name, if any. */
function explicitTlsMode(push: PushContext, proxy: Proxy, name: string): string | undefined {
  const parsed = parseOutboundClusterName(name)!;
  const rule = push.destinationRule(proxy, parsed.host)?.spec;
  return mergeTrafficPolicy(rule, parsed.port, parsed.subset || undefined).tls?.mode;
}

/** "resource field" of every reported gap, to check that what a comparison skips is reported. */
function reported(push: PushContext, proxy: Proxy): Set<string> {
  return new Set(grpcUnsupported(push, proxy).map((u) => `${u.resource} ${u.field}`));
}

function expectReported(gaps: Set<string>, key: string, out: string[]): void {
  if (![...gaps].some((g) => g.startsWith(key))) out.push(`not reported by grpcUnsupported: ${key}`);
}

function clusterDifferences(push: PushContext, proxy: Proxy): string[] {
  const envoy = new Map(buildClusters(push, proxy).map((c) => [c.name, c]));
  const gaps = reported(push, proxy);
  const out: string[] = [];
  for (const g of buildGrpcClusters(push, proxy)) {
    const e = envoy.get(g.name);
    if (!e) {
      out.push(`${g.name}: no Envoy cluster of that name`);
      continue;
    }
    const want = clusterView(e);
    const got = clusterView(g);
    if (!isEds(e)) {
      // A DNS or ORIGINAL_DST cluster has no EDS name in Envoy; gRPC takes every cluster over EDS.
      got.edsName = want.edsName;
      expectReported(gaps, `cluster ${g.name} resolution`, out);
    }
    if (e.lbPolicy === Cluster_LbPolicy.MAGLEV) {
      // A maglev table has no gRPC counterpart: gRPC gets a ring of the default size.
      got.ringSize = want.ringSize;
      expectReported(gaps, `cluster ${g.name} loadBalancer.consistentHash.maglev`, out);
    }
    if (JSON.stringify(want, big) !== JSON.stringify(got, big)) {
      out.push(`${g.name}: envoy ${JSON.stringify(want, big)}\n  grpc  ${JSON.stringify(got, big)}`);
    }
    const et = tlsView(e);
    const gt = tlsView(g);
    const mode = explicitTlsMode(push, proxy, g.name);
    // Auto-mTLS is Envoy-only (reported for gRPC); an explicit ISTIO_MUTUAL or none must agree.
    const comparable = mode === "ISTIO_MUTUAL" || gt !== undefined || (et === undefined);
    if (!comparable) expectReported(gaps, `cluster ${g.name} tls`, out);
    if (comparable && JSON.stringify(et) !== JSON.stringify(gt)) {
      out.push(`${g.name}: TLS envoy ${JSON.stringify(et)} grpc ${JSON.stringify(gt)}`);
    }
  }
  return out;
}

function big(_k: string, v: unknown): unknown {
  return typeof v === "bigint" ? v.toString() : v;
}

// --- endpoints --------------------------------------------------------------------------------

function claView(cla: ClusterLoadAssignment): string[] {
  const out: string[] = [];
  for (const group of cla.endpoints) {
    const l = group.locality;
    const loc = `${l?.region ?? ""}/${l?.zone ?? ""}/${l?.subZone ?? ""}`;
    for (const lb of group.lbEndpoints) {
      if (lb.hostIdentifier.case !== "endpoint") continue;
      const a = lb.hostIdentifier.value.address?.address;
      if (a?.case !== "socketAddress" || isIP(a.value.address) === 0) continue;
      const port = a.value.portSpecifier.case === "portValue" ? a.value.portSpecifier.value : 0;
      out.push(
        `${loc} p${group.priority} w${group.loadBalancingWeight ?? 0} ${a.value.address}:${port} w${
          lb.loadBalancingWeight ?? 1
        }`,
      );
    }
  }
  return out.sort();
}

function endpointDifferences(push: PushContext, proxy: Proxy): string[] {
  const envoy = new Map(buildEndpoints(push, proxy).map((c) => [c.clusterName, c]));
  const gaps = reported(push, proxy);
  // Another network's endpoints are sent as its gateways to both, as Istio does; a gRPC client
  // cannot pass the gateway (no SNI), which must be reported.
  const own = networkView(push, proxy).network;
  const gateways = own === undefined
    ? []
    : push.networkGateways.filter((gw) => gw.network !== own).map((gw) => ` ${gw.address}:${gw.port} `);
  const out: string[] = [];
  for (const g of buildGrpcEndpoints(push, proxy, "*")) {
    const e = envoy.get(g.clusterName);
    if (!e) continue; // DNS clusters carry their hosts inline in Envoy
    const want = claView(e);
    const got = claView(g);
    if (got.some((h) => gateways.some((gw) => h.includes(gw)))) {
      expectReported(gaps, `cluster ${g.clusterName} endpoints (network`, out);
    }
    if (JSON.stringify(want) !== JSON.stringify(got)) {
      out.push(`${g.clusterName}: envoy ${JSON.stringify(want)}\n  grpc  ${JSON.stringify(got)}`);
    }
  }
  return out;
}

// --- routes -----------------------------------------------------------------------------------

const GRPC_PATH = /^\/[^/]+\/[^/]+$/;

/** Whether a gRPC client can be given this Envoy match at all. */
function grpcExpressible(m: RouteMatch): boolean {
  if (m.queryParameters.length > 0) return false;
  const p = m.pathSpecifier;
  if (p.case === "prefix" && !p.value.startsWith("/")) return false;
  if (p.case === "path" && !GRPC_PATH.test(p.value)) return false;
  return true;
}

function headerView(h: HeaderMatcher): string {
  const s = h.headerMatchSpecifier;
  let kind = s.case as string;
  let value = "";
  if (s.case === "stringMatch") {
    kind = s.value.matchPattern.case ?? "";
    value = s.value.matchPattern.case === "safeRegex"
      ? s.value.matchPattern.value.regex
      : String(s.value.matchPattern.value);
  } else if (s.case === "exactMatch" || s.case === "prefixMatch") {
    kind = s.case === "exactMatch" ? "exact" : "prefix";
    value = s.value;
  } else if (s.case === "safeRegexMatch") {
    kind = "safeRegex";
    value = s.value.regex;
  } else if (s.case === "presentMatch") {
    kind = "present";
  }
  return `${h.name} ${h.invertMatch ? "!" : ""}${kind}:${value}`;
}

function matchView(m: RouteMatch) {
  const p = m.pathSpecifier;
  return {
    path: `${p.case}:${p.case === "safeRegex" ? p.value.regex : String(p.value)}`,
    caseSensitive: m.caseSensitive ?? true,
    headers: m.headers.map(headerView).sort(),
  };
}

function percentPpm(p: FractionalPercent | undefined): number {
  if (!p) return 0;
  const scale = [10_000, 100, 1][p.denominator] ?? 1;
  return p.numerator * scale;
}

const GRPC_CODES = new Set([
  "cancelled",
  "deadline-exceeded",
  "internal",
  "resource-exhausted",
  "unavailable",
]);
const MEANS_UNAVAILABLE = new Set([
  "5xx",
  "gateway-error",
  "reset",
  "reset-before-request",
  "connect-failure",
  "refused-stream",
  "retriable-status-codes",
]);

function retryCodes(retryOn: string, statusCodes: readonly number[]): string {
  const codes = new Set<string>();
  for (const raw of retryOn.split(",")) {
    const p = raw.trim();
    if (GRPC_CODES.has(p)) codes.add(p);
    else if (p === "retriable-status-codes" ? statusCodes.includes(503) : MEANS_UNAVAILABLE.has(p)) {
      codes.add("unavailable");
    }
  }
  return [...codes].sort().join(",");
}

function actionView(r: Route) {
  const fault = r.typedPerFilterConfig["envoy.filters.http.fault"];
  const f = fault ? anyUnpack(fault, TRANSLATE_REGISTRY) : undefined;
  const hf = f && f.$typeName === HTTPFaultSchema.typeName
    ? f as unknown as import("#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts").HTTPFault
    : undefined;
  const faultView = hf
    ? {
      delayMs: hf.delay?.faultDelaySecifier.case === "fixedDelay"
        ? ms(hf.delay.faultDelaySecifier.value)
        : undefined,
      delayPpm: hf.delay ? percentPpm(hf.delay.percentage) : undefined,
      abort: hf.abort ? `${hf.abort.errorType.case}:${hf.abort.errorType.value}` : undefined,
      abortPpm: hf.abort ? percentPpm(hf.abort.percentage) : undefined,
    }
    : undefined;
  if (r.action.case !== "route") return { kind: r.action.case, fault: faultView };
  const a = r.action.value;
  const clusters: Record<string, number> = {};
  if (a.clusterSpecifier.case === "cluster") clusters[a.clusterSpecifier.value] = 1;
  else if (a.clusterSpecifier.case === "weightedClusters") {
    const list = a.clusterSpecifier.value.clusters;
    const total = list.reduce((s, c) => s + (c.weight ?? 0), 0);
    for (const c of list) clusters[c.name] = (clusters[c.name] ?? 0) + (c.weight ?? 0) / total;
  }
  const timeout = a.maxStreamDuration?.grpcTimeoutHeaderMax ?? a.maxStreamDuration?.maxStreamDuration ??
    a.timeout;
  const rp = a.retryPolicy;
  const codes = rp ? retryCodes(rp.retryOn, rp.retriableStatusCodes) : "";
  const hashes = [
    ...new Set(a.hashPolicy.flatMap((h) => {
      const p = h.policySpecifier;
      if (p.case === "header") return [`header:${p.value.headerName.toLowerCase()}`];
      if (p.case === "connectionProperties" && p.value.sourceIp) return ["source"];
      if (p.case === "filterState" && p.value.key === "io.grpc.channel_id") return ["source"];
      return [];
    })),
  ].sort();
  return {
    kind: "route",
    clusters,
    timeoutMs: ms(timeout) ?? 0,
    retry: codes === "" ? undefined : {
      codes,
      numRetries: rp!.numRetries ?? 1,
      perTryTimeoutMs: ms(rp!.perTryTimeout),
      backoffMs: ms(rp!.retryBackOff?.baseInterval),
    },
    fault: faultView,
    hashes,
  };
}

function routeDifferences(push: PushContext, proxy: Proxy): string[] {
  if (proxy.type !== "sidecar") return [];
  const envoy = new Map<string, RouteConfiguration>(buildRoutes(push, proxy).map((rc) => [rc.name, rc]));
  const gaps = reported(push, proxy);
  const out: string[] = [];
  for (const rc of buildGrpcRoutes(push, proxy, "*")) {
    const name = rc.name;
    const colon = name.lastIndexOf(":");
    const port = name.slice(colon + 1);
    const vh = envoy.get(port)?.virtualHosts.find((v) => v.name === name);
    if (!vh) continue; // a short name, a TCP port, or a host Envoy's sidecar does not route
    if (vh.routes.some((r) => !grpcExpressible(r.match!))) expectReported(gaps, `route ${name} `, out);
    const want = vh.routes.filter((r) => grpcExpressible(r.match!)).map((r) => ({
      name: r.name,
      match: matchView(r.match!),
      action: actionView(r),
    }));
    const got = rc.virtualHosts[0]!.routes.map((r) => ({
      name: r.name,
      match: matchView(r.match!),
      action: actionView(r),
    }));
    // Routes gRPC cannot forward (redirects, direct responses) fail calls instead: compare matches only.
    for (let i = 0; i < Math.max(want.length, got.length); i++) {
      const w = want[i];
      const g = got[i];
      if (w && g && w.action.kind !== "route") {
        g.action = w.action;
        expectReported(gaps, `route ${name} `, out);
      }
    }
    if (want.length === 0 && got.length === 1 && got[0]!.name === "no-route") continue;
    const ws = JSON.stringify(want);
    const gs = JSON.stringify(got);
    if (ws !== gs) out.push(`${name}:\n  envoy ${ws}\n  grpc  ${gs}`);
  }
  return out;
}

// --- the cases --------------------------------------------------------------------------------

function check(push: PushContext, proxy: Proxy): void {
  const problems = [
    ...clusterDifferences(push, proxy),
    ...endpointDifferences(push, proxy),
    ...routeDifferences(push, proxy),
  ];
  expect(problems.join("\n")).toBe("");
}

describe("Envoy and proxyless gRPC agree on every golden input", () => {
  for (const name of caseNames()) {
    test(`parity: ${name}`, () => {
      const { push, proxy } = readCase(name);
      check(push, proxy);
    });
  }
});

describe("Envoy and proxyless gRPC agree on the merged DestinationRule policy", () => {
  // The DestinationRule of cluster_traffic_policy.test.ts: port-level settings at 9090, a subset
  // policy and subset port-level settings at 8080.
  const push = pushFrom(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc, namespace: app }
spec:
  hosts: [svc.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - { number: 8080, name: http, protocol: HTTP }
    - { number: 9090, name: grpc, protocol: GRPC }
  endpoints:
    - { address: 10.1.0.1, labels: { version: v1 }, serviceAccount: svc }
    - { address: 10.1.0.2, labels: { version: v2 }, serviceAccount: svc }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: svc, namespace: app }
spec:
  host: svc.app.svc.cluster.local
  trafficPolicy:
    loadBalancer: { simple: RANDOM }
    outlierDetection: { consecutive5xxErrors: 5 }
    tls: { mode: ISTIO_MUTUAL }
    portLevelSettings:
      - port: { number: 9090 }
        loadBalancer: { simple: ROUND_ROBIN }
  subsets:
    - name: v2
      labels: { version: v2 }
      trafficPolicy:
        connectionPool: { tcp: { maxConnections: 7 } }
        loadBalancer: { consistentHash: { httpHeaderName: x-user } }
        portLevelSettings:
          - port: { number: 8080 }
            tls: { mode: DISABLE }
`);
  test("parity: port-level settings replace the level above for both", () => {
    check(push, sidecar("10.1.9.9", "app"));
  });
});
