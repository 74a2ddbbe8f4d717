/**
 * What a route does, decided once and rendered twice: as Envoy routes (route_action.ts, route.ts)
 * and as proxyless-gRPC routes (grpc/route.ts). A plan holds Istio's decisions, not either data
 * plane's encoding: which VirtualService routes a host, which of its rules and match conditions
 * apply to a proxy on a port (and that nothing after a catch-all is reached), where each rule
 * sends traffic (clusters, weights, the consistent hash each destination's DestinationRule
 * asks for), its timeout, its retries (Istio's default when unset), its faults, and its header
 * conditions in one order.
 *
 * Conditions on JWT claims (`@request.auth.claims.NAME` or `@request.auth.claims[A][B]` as a
 * header name, as Istio spells them) are not header conditions: they are decided here as
 * conditions on the payload the JWT filter verified ({@link ClaimCondition}). The JWT filter
 * runs on gateway connection managers (jwt.ts), and keeps each issuer's payload apart, so a
 * route with claim conditions is planned once per issuer of the RequestAuthentications that
 * select the gateway (any of them may have verified the token), its conditions read from that
 * issuer's payload; `withoutHeaders` conditions must hold in every issuer's payload (a missing
 * payload meets them, as a missing claim does in Istio), so they go in every copy, and a match
 * with only those is planned once. With no such issuer, or on a sidecar's outbound routes
 * (which have no JWT filter, as in Istio), no request has claims: a route needing one is left
 * out, one only excluding claims applies to all.
 *
 * @module
 */
import {
  type ClusterPolicy,
  hostCovers,
  mergeTrafficPolicy,
  resolveHost,
  selectorMatches,
} from "../../api/mod.ts";
import { type PushContext, qualifyGateway } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { outboundClusterName } from "./cluster_name.ts";
import { byString, isPresenceMatch } from "./conversion.ts";
import { decideFault, type FaultDecision } from "./fault.ts";
import { jwtIssuers } from "./jwt.ts";

export { decideFault, type FaultDecision, grpcStatusCode } from "./fault.ts";

// The VirtualService types, as the PushContext hands them to translation.
type VirtualServiceResource = ReturnType<PushContext["virtualServices"]>[number];
type VirtualServiceSpec = VirtualServiceResource["spec"];
type HTTPRoute = NonNullable<VirtualServiceSpec["http"]>[number];
type HTTPMatchRequest = NonNullable<HTTPRoute["match"]>[number];
type HTTPRetry = NonNullable<HTTPRoute["retries"]>;
type HTTPRouteDestination = NonNullable<HTTPRoute["route"]>[number];
type Destination = HTTPRouteDestination["destination"];
type StringMatch = NonNullable<HTTPMatchRequest["uri"]>;
type ConsistentHashLB = NonNullable<NonNullable<ClusterPolicy["loadBalancer"]>["consistentHash"]>;

/** Header names that address JWT claims; matching on them needs the JWT filter's metadata. */
export const CLAIM_HEADER_PREFIX = "@request.auth.claims";

/** The name Istio gives the route of a service that has no VirtualService. */
export const DEFAULT_ROUTE_NAME = "default";

/** Where routes are being built: a listener port and the gateway names it serves ("mesh" for sidecars). */
export interface RouteScope {
  readonly proxy: Proxy;
  readonly port: number;
  /** "mesh", or the "namespace/name" of each gateway the listener serves. */
  readonly gateways: readonly string[];
}

/** What route planning reads: the push, the listener's scope, and whether the listener terminates TLS. */
export interface RouteContext extends RouteScope {
  readonly push: PushContext;
  /** True when the listener terminates TLS (redirects then default to https). */
  readonly tls?: boolean;
}

/** One destination of a rule, resolved to its cluster. */
export interface DestinationPlan {
  /** As the VirtualService wrote it (per-destination header changes live here). */
  readonly source?: HTTPRouteDestination;
  /** `outbound|PORT|SUBSET|HOST`. */
  readonly cluster: string;
  readonly host: string;
  readonly port: number;
  readonly subset: string;
  /** The rule's weight (0 when unset). */
  readonly weight: number;
  /** The consistent hash the DestinationRule sets for this cluster, if any. */
  readonly consistentHash?: ConsistentHashLB;
}

/** Retries as Istio decides them: attempts, conditions (Istio's retryOn text) and timing. */
export interface RetryDecision {
  readonly attempts: number;
  /** Istio's `retryOn`: Envoy conditions, gRPC status names and HTTP status numbers. */
  readonly retryOn: string;
  readonly perTryTimeout?: string;
  readonly backoff?: string;
  /** Set when the VirtualService says; undefined keeps the data plane's default. */
  readonly retryIgnorePreviousHosts?: boolean;
  readonly retryRemoteLocalities?: boolean;
}

/** One header condition of a match: `match` undefined means "present". */
export interface HeaderCondition {
  readonly name: string;
  readonly match?: StringMatch;
  readonly invert: boolean;
}

/** One condition on a claim of the verified JWT payload: `match` undefined means "present". */
export interface ClaimCondition {
  /** The claim and nested keys below the payload (`["groups"]`, `["nested", "key"]`). */
  readonly path: readonly string[];
  readonly match?: StringMatch;
  readonly invert: boolean;
}

/** A claim condition bound to the issuer whose verified payload it reads. */
export interface IssuerClaimCondition extends ClaimCondition {
  readonly issuer: string;
}

/** One route, before it is rendered. */
export interface RoutePlan {
  /** Istio's route name: the rule's name and the match's name, joined by "." (or "default"). */
  readonly name: string;
  /** The rule; undefined for the default route of a service without a VirtualService. */
  readonly http?: HTTPRoute;
  /** Namespace of the VirtualService (hosts in it are resolved there). */
  readonly vsNamespace: string;
  /** The match condition; undefined matches everything. */
  readonly match?: HTTPMatchRequest;
  /** The match's conditions on JWT claims, each bound to the issuer whose payload it reads. */
  readonly claims?: readonly IssuerClaimCondition[];
  /** Where it is in the VirtualService: `http[i].match[j]`, for reports. */
  readonly path: string;
  readonly action: "forward" | "redirect" | "direct";
  /** For "forward": every destination, in the rule's order. */
  readonly destinations: readonly DestinationPlan[];
  readonly timeout?: string;
  /** Undefined: no retries. */
  readonly retry?: RetryDecision;
  readonly fault?: FaultDecision;
}

/** Istio's default `retryOn`, as a VirtualService would spell it. */
export const DEFAULT_RETRY_ON_TEXT =
  "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,503";
/** Istio's default number of retries. */
export const DEFAULT_RETRY_ATTEMPTS = 2;

/**
 * Istio's retry rule: its default (2 attempts on connection failures, refused streams, gRPC
 * unavailable and cancelled, and 503) when `retries` is unset, none for `attempts` 0 (or
 * less), else the default overridden by what the rule sets.
 */
export function decideRetry(retries: HTTPRetry | undefined): RetryDecision | undefined {
  if (!retries) return { attempts: DEFAULT_RETRY_ATTEMPTS, retryOn: DEFAULT_RETRY_ON_TEXT };
  if (!retries.attempts || retries.attempts <= 0) return undefined;
  return {
    attempts: retries.attempts,
    retryOn: retries.retryOn || DEFAULT_RETRY_ON_TEXT,
    ...(retries.perTryTimeout ? { perTryTimeout: retries.perTryTimeout } : {}),
    ...(retries.backoff ? { backoff: retries.backoff } : {}),
    ...(retries.retryIgnorePreviousHosts !== undefined
      ? { retryIgnorePreviousHosts: retries.retryIgnorePreviousHosts }
      : {}),
    ...(retries.retryRemoteLocalities ? { retryRemoteLocalities: true } : {}),
  };
}

function sortedEntries<T>(record: Readonly<Record<string, T>> | undefined): [string, T][] {
  return Object.entries(record ?? {}).sort(([a], [b]) => byString(a, b));
}

function condition(name: string, m: StringMatch | undefined, invert: boolean): HeaderCondition {
  return { name, ...(isPresenceMatch(m) ? {} : { match: m }), invert };
}

/**
 * The header conditions of a match, in the order both renderings use: `headers` and
 * `withoutHeaders` (inverted) sorted by name, then `:method`, `:authority` and `:scheme`. An
 * empty StringMatch or the regex "*" is a presence condition. Names that address JWT claims
 * are not header conditions (see {@link claimConditions}).
 */
export function headerConditions(match: HTTPMatchRequest | undefined): HeaderCondition[] {
  if (!match) return [];
  const out = [
    ...sortedEntries(match.headers).map(([n, m]) => condition(n, m, false)),
    ...sortedEntries(match.withoutHeaders).map(([n, m]) => condition(n, m, true)),
  ].filter((c) => claimPath(c.name) === undefined).sort((a, b) => byString(a.name, b.name));
  if (match.method) out.push(condition(":method", match.method, false));
  if (match.authority) out.push(condition(":authority", match.authority, false));
  if (match.scheme) out.push(condition(":scheme", match.scheme, false));
  return out;
}

/**
 * The claim path a header name addresses, as Istio reads it: `@request.auth.claims.a.b` (dots)
 * or `@request.auth.claims[a][b]` (brackets) give `["a", "b"]`; undefined for any other name
 * (the prefix is compared without case, as Istio does).
 */
export function claimPath(name: string): string[] | undefined {
  if (!name.toLowerCase().startsWith(CLAIM_HEADER_PREFIX)) return undefined;
  const rest = name.slice(CLAIM_HEADER_PREFIX.length);
  if (rest.startsWith(".") && rest.length > 1) return rest.slice(1).split(".");
  if (rest.startsWith("[") && rest.endsWith("]") && rest.length > 2) return rest.slice(1, -1).split("][");
  return undefined;
}

/**
 * The conditions a match puts on JWT claims: `headers` then `withoutHeaders` (inverted) whose
 * names address a claim, sorted by name. An empty StringMatch or the regex "*" means "present".
 */
export function claimConditions(match: HTTPMatchRequest | undefined): ClaimCondition[] {
  if (!match) return [];
  const named = [
    ...sortedEntries(match.headers).map(([n, m]) => ({ n, c: condition(n, m, false) })),
    ...sortedEntries(match.withoutHeaders).map(([n, m]) => ({ n, c: condition(n, m, true) })),
  ].sort((a, b) => byString(a.n, b.n));
  const out: ClaimCondition[] = [];
  for (const { n, c } of named) {
    const path = claimPath(n);
    if (path) out.push({ path, ...(c.match ? { match: c.match } : {}), invert: c.invert });
  }
  return out;
}

/** True when the match conditions on JWT claims. */
export function matchesOnClaims(match: HTTPMatchRequest | undefined): boolean {
  return claimConditions(match).length > 0;
}

/**
 * The issuers whose verified payloads the routes in this scope can read: those of the
 * RequestAuthentications selecting a gateway proxy (its connection managers run the JWT
 * filter), in policy order; none for sidecars, whose outbound traffic is not authenticated.
 */
export function claimIssuers(ctx: RouteContext): string[] {
  return ctx.proxy.type === "router" ? jwtIssuers(ctx.push, ctx.proxy) : [];
}

/**
 * True for a match every request meets (no condition, or only the path prefix "/" or regex
 * ".*"); routes after it are never reached.
 */
export function isCatchAllMatch(match: HTTPMatchRequest | undefined): boolean {
  if (!match) return true;
  const uri = match.uri;
  const allPaths = !uri || (uri.exact === undefined &&
    (uri.prefix !== undefined ? uri.prefix === "/" : uri.regex !== undefined ? uri.regex === ".*" : true));
  return allPaths && headerConditions(match).length === 0 && !matchesOnClaims(match) &&
    sortedEntries(match.queryParams).length === 0;
}

/**
 * Whether a match condition applies in this scope, as Istio decides: its `port` (if any) is
 * the listener's; its `gateways` (if any) include one served here, else its `sourceLabels`
 * are the proxy's and its `sourceNamespace` (if any) is the proxy's namespace.
 */
export function matchApplies(
  match: HTTPMatchRequest | undefined,
  vsNamespace: string,
  scope: RouteScope,
): boolean {
  if (!match) return true;
  if (match.port !== undefined && match.port !== 0 && match.port !== scope.port) return false;
  if (match.gateways && match.gateways.length > 0) {
    return match.gateways.some((g) => scope.gateways.includes(qualifyGateway(g, vsNamespace)));
  }
  if (!selectorMatches(match.sourceLabels, scope.proxy.labels)) return false;
  return !match.sourceNamespace || match.sourceNamespace === scope.proxy.namespace;
}

/**
 * The port a destination reaches, as Istio picks it: the destination's port, else the
 * service's only port, else the listener's port.
 */
function destinationPort(host: string, dest: Destination, ctx: RouteContext): number {
  const service = ctx.push.serviceFor(ctx.proxy, host);
  return dest.port?.number ?? (service && service.ports.length === 1 ? service.ports[0]!.number : ctx.port);
}

/** A destination resolved: its host in the VirtualService's namespace, port, cluster and hash. */
export function planDestination(
  dest: Destination,
  vsNamespace: string,
  ctx: RouteContext,
  source?: HTTPRouteDestination,
): DestinationPlan {
  const host = resolveHost(dest.host, vsNamespace);
  const port = destinationPort(host, dest, ctx);
  const subset = dest.subset ?? "";
  const rule = ctx.push.destinationRule(ctx.proxy, host)?.spec;
  const consistentHash = rule
    ? mergeTrafficPolicy(rule, port, dest.subset).loadBalancer?.consistentHash
    : undefined;
  return {
    ...(source ? { source } : {}),
    cluster: outboundClusterName(port, host, subset),
    host,
    port,
    subset,
    weight: source?.weight ?? 0,
    ...(consistentHash ? { consistentHash } : {}),
  };
}

/** Redirect codes a data plane can send. */
export const REDIRECT_CODES: readonly number[] = [301, 302, 303, 307, 308];

/**
 * The plans for one rule of a VirtualService and one of its match conditions (or none): one
 * plan, or one per issuer that can have verified the JWT when the match conditions on claims
 * (see the module notes). None when the condition does not apply here (port, source labels,
 * gateways), matches on claims no issuer here provides, the rule still delegates (a delegate
 * that was not found), or it redirects with a code no data plane sends.
 */
export function planHttpRoutes(
  http: HTTPRoute,
  match: HTTPMatchRequest | undefined,
  vs: VirtualServiceResource,
  ctx: RouteContext,
  path = "http",
): RoutePlan[] {
  const plan = planRule(http, match, vs, ctx, path);
  if (!plan) return [];
  const conditions = claimConditions(match);
  if (conditions.length === 0) return [plan];
  const issuers = claimIssuers(ctx);
  // "Not equal" must hold in every payload; "equal" in the one that was verified.
  const negative = conditions.filter((c) => c.invert).flatMap((c) =>
    issuers.map((issuer) => ({ ...c, issuer }))
  );
  const positive = conditions.filter((c) => !c.invert);
  if (positive.length === 0) return [negative.length > 0 ? { ...plan, claims: negative } : plan];
  return issuers.map((issuer) => ({
    ...plan,
    claims: [...positive.map((c) => ({ ...c, issuer })), ...negative],
  }));
}

/**
 * The first of {@link planHttpRoutes}: the plan for one rule and one of its match conditions
 * (for a match on claims, the one reading the first issuer's payload), or undefined.
 */
export function planHttpRoute(
  http: HTTPRoute,
  match: HTTPMatchRequest | undefined,
  vs: VirtualServiceResource,
  ctx: RouteContext,
  path = "http",
): RoutePlan | undefined {
  return planHttpRoutes(http, match, vs, ctx, path)[0];
}

/** One rule and match planned, claim conditions not yet bound to an issuer. */
function planRule(
  http: HTTPRoute,
  match: HTTPMatchRequest | undefined,
  vs: VirtualServiceResource,
  ctx: RouteContext,
  path: string,
): RoutePlan | undefined {
  const ns = vs.metadata.namespace;
  if (!matchApplies(match, ns, ctx) || http.delegate) return undefined;
  if (http.redirect && !REDIRECT_CODES.includes(http.redirect.redirectCode ?? 301)) return undefined;
  const action = http.redirect ? "redirect" : http.directResponse ? "direct" : "forward";
  return {
    name: [http.name, match?.name].filter((n) => n).join("."),
    http,
    vsNamespace: ns,
    ...(match ? { match } : {}),
    path,
    action,
    destinations: action === "forward"
      ? (http.route ?? []).map((d) => planDestination(d.destination, ns, ctx, d))
      : [],
    ...(http.timeout ? { timeout: http.timeout } : {}),
    ...(action === "forward" ? optional("retry", decideRetry(http.retries)) : {}),
    ...optional("fault", decideFault(http.fault)),
  };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return value === undefined ? {} : { [key]: value } as { [P in K]?: V };
}

/**
 * The route of a service port without a VirtualService: everything to `outbound|PORT||HOST`
 * with no timeout, Istio's default retries, and the DestinationRule's consistent hash.
 */
export function planDefaultRoute(host: string, port: number, ctx: RouteContext): RoutePlan {
  return {
    name: DEFAULT_ROUTE_NAME,
    vsNamespace: "",
    path: "",
    action: "forward",
    destinations: [planDestination({ host, port: { number: port } }, "", ctx)],
    retry: decideRetry(undefined),
  };
}

/**
 * The route plans one VirtualService contributes in a scope: each HTTP rule once per match
 * condition that applies (or once without conditions), stopping after a catch-all.
 */
export function virtualServiceRoutePlans(vs: VirtualServiceResource, ctx: RouteContext): RoutePlan[] {
  const out: RoutePlan[] = [];
  const rules = vs.spec.http ?? [];
  for (let i = 0; i < rules.length; i++) {
    const http = rules[i]!;
    const matches = http.match && http.match.length > 0 ? http.match : [undefined];
    for (let j = 0; j < matches.length; j++) {
      const m = matches[j];
      const path = m ? `http[${i}].match[${j}]` : `http[${i}]`;
      const plans = planHttpRoutes(http, m, vs, ctx, path);
      if (plans.length === 0) continue;
      out.push(...plans);
      if (isCatchAllMatch(m)) return out;
    }
  }
  return out;
}

/**
 * The VirtualService that routes a host: the first (in push order) naming it exactly, else the
 * one whose wildcard host covers it most specifically.
 */
export function virtualServiceFor(
  host: string,
  virtualServices: readonly VirtualServiceResource[],
): VirtualServiceResource | undefined {
  const hostsOf = (vs: VirtualServiceResource) =>
    (vs.spec.hosts ?? []).map((h) => resolveHost(h, vs.metadata.namespace));
  const exact = virtualServices.find((vs) => hostsOf(vs).includes(host));
  if (exact) return exact;
  let best: { vs: VirtualServiceResource; len: number } | undefined;
  for (const vs of virtualServices) {
    for (const h of hostsOf(vs)) {
      if (h.startsWith("*") && hostCovers(h, host) && (!best || h.length > best.len)) {
        best = { vs, len: h.length };
      }
    }
  }
  return best?.vs;
}

/** The routes of one service port for a sidecar or proxyless client, with the VirtualService they come from. */
export interface ServiceRoutes {
  readonly vs?: VirtualServiceResource;
  readonly routes: readonly RoutePlan[];
}

/**
 * The routes a client (sidecar or proxyless) uses for `host` on `port`: those of the
 * VirtualService bound to "mesh" that routes the host, or the default route when there is
 * none or none of its rules applies.
 */
export function serviceRoutePlans(
  push: PushContext,
  proxy: Proxy,
  host: string,
  port: number,
): ServiceRoutes {
  const ctx: RouteContext = { push, proxy, port, gateways: ["mesh"] };
  const vs = virtualServiceFor(host, push.virtualServices(proxy, "mesh"));
  const fromVs = vs ? virtualServiceRoutePlans(vs, ctx) : [];
  return fromVs.length > 0
    ? { ...(vs ? { vs } : {}), routes: fromVs }
    : { routes: [planDefaultRoute(host, port, ctx)] };
}

type TCPRoute = NonNullable<VirtualServiceSpec["tcp"]>[number];
type TLSRoute = NonNullable<VirtualServiceSpec["tls"]>[number];
type L4Match = NonNullable<TCPRoute["match"]>[number];
type TLSMatch = TLSRoute["match"][number];
type RouteDestination = TCPRoute["route"][number];

/**
 * Whether a `tcp` or `tls` match condition applies on a gateway: its `port` (if any) is the
 * listener's; its `gateways` (if any) include one served here, else its `sourceLabels` are the
 * proxy's and its `sourceNamespace` (if any) is the proxy's namespace.
 */
export function l4MatchApplies(m: L4Match | TLSMatch, vsNamespace: string, scope: RouteScope): boolean {
  if (m.port !== undefined && m.port !== 0 && m.port !== scope.port) return false;
  if (m.gateways && m.gateways.length > 0) {
    return m.gateways.some((g) => scope.gateways.includes(qualifyGateway(g, vsNamespace)));
  }
  if (!selectorMatches(m.sourceLabels, scope.proxy.labels)) return false;
  return !m.sourceNamespace || m.sourceNamespace === scope.proxy.namespace;
}

/**
 * Whether a `tcp` or `tls` match condition applies to a sidecar (or proxyless client), all of
 * these together as Istio's sidecar L4 routing decides (unlike an HTTP match, where `gateways`
 * stands in for the source conditions): its `port` (if any) is the listener's, its `gateways`
 * (if any) include one served here ("mesh"), its `sourceLabels` are the proxy's and its
 * `sourceNamespace` (if any) is the proxy's namespace.
 */
export function sidecarL4MatchApplies(
  m: L4Match | TLSMatch,
  vsNamespace: string,
  scope: RouteScope,
): boolean {
  if (m.port !== undefined && m.port !== 0 && m.port !== scope.port) return false;
  const gateways = m.gateways ?? [];
  if (gateways.length > 0 && !gateways.some((g) => scope.gateways.includes(qualifyGateway(g, vsNamespace)))) {
    return false;
  }
  if (!selectorMatches(m.sourceLabels, scope.proxy.labels)) return false;
  return !m.sourceNamespace || m.sourceNamespace === scope.proxy.namespace;
}

/**
 * Where an L4 rule sends connections: its only destination (weight 100), else those with a
 * weight above 0 (all of them, equally, when none has one).
 */
export function planL4Destinations(
  route: readonly RouteDestination[],
  vsNamespace: string,
  ctx: RouteContext,
): DestinationPlan[] {
  const weighted = route.filter((d) => (d.weight ?? 0) > 0);
  const used = route.length === 1 || weighted.length === 0 ? route : weighted;
  return used.map((d) => {
    const plan = planDestination(d.destination, vsNamespace, ctx, d);
    return { ...plan, weight: route.length === 1 || plan.weight === 0 ? 100 : plan.weight };
  });
}

/** One L4 route of a sidecar's outbound listener: the connections it takes and where they go. */
export interface L4RoutePlan {
  /** Where it is in the VirtualService (`tcp[i]`, `tls[i].match[j]`); "" for the service's default. */
  readonly path: string;
  /** TLS server names the connection's SNI must be one of (none: any). */
  readonly sniHosts: readonly string[];
  /** Destination addresses (IP or CIDR) the connection must be to (none: any). */
  readonly destinationSubnets: readonly string[];
  /** Source addresses (IP or CIDR) the connection must come from (none: any); `tcp` matches' `sourceSubnet`. */
  readonly sourceSubnets: readonly string[];
  readonly destinations: readonly DestinationPlan[];
}

/** Where a sidecar's outbound L4 routes are planned: one service port and its listener. */
export interface L4RouteScope {
  readonly host: string;
  readonly port: number;
  /** The port speaks TLS (TLS, HTTPS): the VirtualService's `tls` rules apply, else its `tcp` rules. */
  readonly tls: boolean;
  /** The listener is `0.0.0.0_PORT` (shared by services), not the service's own `ADDRESS_PORT`. */
  readonly wildcard: boolean;
}

function defaultL4Plan(host: string, port: number, ctx: RouteContext): L4RoutePlan {
  return {
    path: "",
    sniHosts: [],
    destinationSubnets: [],
    sourceSubnets: [],
    destinations: [{ ...planDestination({ host, port: { number: port } }, "", ctx), weight: 100 }],
  };
}

function tlsRulePlans(vs: VirtualServiceResource, ctx: RouteContext): L4RoutePlan[] {
  const ns = vs.metadata.namespace;
  const out: L4RoutePlan[] = [];
  (vs.spec.tls ?? []).forEach((rule, i) =>
    rule.match.forEach((m, j) => {
      if (!sidecarL4MatchApplies(m, ns, ctx)) return;
      out.push({
        path: `tls[${i}].match[${j}]`,
        sniHosts: [...m.sniHosts].sort(byString),
        destinationSubnets: [...(m.destinationSubnets ?? [])],
        sourceSubnets: [],
        destinations: planL4Destinations(rule.route, ns, ctx),
      });
    })
  );
  return out;
}

function tcpRulePlans(vs: VirtualServiceResource, ctx: RouteContext, wildcard: boolean): L4RoutePlan[] {
  const ns = vs.metadata.namespace;
  const out: L4RoutePlan[] = [];
  const rules = vs.spec.tcp ?? [];
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]!;
    const destinations = planL4Destinations(rule.route, ns, ctx);
    const terminal = {
      path: `tcp[${i}]`,
      sniHosts: [],
      destinationSubnets: [],
      sourceSubnets: [],
      destinations,
    };
    if (!rule.match || rule.match.length === 0) return [...out, terminal];
    const subnets: string[] = [];
    for (const [j, m] of rule.match.entries()) {
      if (!sidecarL4MatchApplies(m, ns, ctx)) continue;
      // A source subnet narrows the match to a route of its own, which ends nothing.
      if (m.sourceSubnet) {
        const destinationSubnets = wildcard ? [...(m.destinationSubnets ?? [])] : [];
        out.push({
          ...terminal,
          path: `tcp[${i}].match[${j}]`,
          destinationSubnets,
          sourceSubnets: [m.sourceSubnet],
        });
        continue;
      }
      // A match on any address ends the list; so does any match on a service's own listener.
      if (!m.destinationSubnets || m.destinationSubnets.length === 0 || !wildcard) return [...out, terminal];
      subnets.push(...m.destinationSubnets);
    }
    if (subnets.length > 0) out.push({ ...terminal, destinationSubnets: subnets });
  }
  return out;
}

/**
 * The L4 routes of a sidecar for one TCP or TLS service port, as Istio's sidecar outbound
 * TCP/TLS routing decides them, from the VirtualService bound to "mesh" that routes the host:
 *
 * - TLS ports: a route per applicable `tls` match (its SNI hosts and destination subnets);
 *   when none applies, the service's default route.
 * - Other ports: `tcp` rules in order; a rule without conditions, or with an applicable match on
 *   any destination (on the service's own listener: any applicable match), is the last route;
 *   applicable matches with destination subnets make one route on those subnets; an applicable
 *   match with a `sourceSubnet` makes a route of its own, on that source (and its destination
 *   subnets, on a shared listener), and ends nothing. The service's default route comes last
 *   when no rule took every connection.
 *
 * The default route sends everything to `outbound|PORT||HOST` (weight 100) with no conditions;
 * the listener adds the service's own address or SNI to it.
 */
export function sidecarL4RoutePlans(push: PushContext, proxy: Proxy, scope: L4RouteScope): L4RoutePlan[] {
  const ctx: RouteContext = { push, proxy, port: scope.port, gateways: ["mesh"] };
  const vs = virtualServiceFor(scope.host, push.virtualServices(proxy, "mesh"));
  const fallback = defaultL4Plan(scope.host, scope.port, ctx);
  if (!vs) return [fallback];
  if (scope.tls) {
    const plans = tlsRulePlans(vs, ctx);
    return plans.length > 0 ? plans : [fallback];
  }
  const plans = tcpRulePlans(vs, ctx, scope.wildcard);
  const last = plans.at(-1);
  const complete = last && last.sniHosts.length === 0 && last.destinationSubnets.length === 0 &&
    last.sourceSubnets.length === 0;
  return complete ? plans : [...plans, fallback];
}
