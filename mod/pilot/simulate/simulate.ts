/**
 * Simulation: routes one synthetic request through the listeners and routes translation
 * produces for a proxy, as Envoy would, and says where it ends up: the listener, filter chain,
 * route configuration, virtual host, route and cluster (or weighted clusters, redirect, direct
 * response), or why it goes nowhere.
 *
 * Sidecars: captured traffic enters virtualOutbound, which hands it to the listener for its
 * destination `IP:PORT`, else `0.0.0.0:PORT`, else keeps it (passthrough or blackhole); a
 * listener Envoy binds itself (a Sidecar egress listener that is not captured) takes a
 * connection to its address directly. Inbound requests (`direction: "inbound"`) reach the
 * inbound listener bound at their destination (a Sidecar ingress listener that is not
 * captured), else virtualInbound. Routers: the bound listener on the port takes it.
 *
 * A request may carry a verified JWT (`jwt`): its claims are the payload the JWT filter of the
 * connection manager keeps in dynamic metadata for each of its providers whose issuer is the
 * token's (any, when the token names none), so routes matching `@request.auth.claims` see
 * them; without a JWT filter, as in Envoy, they see nothing.
 *
 * @module
 */
import { isIP } from "node:net";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { RouteConfiguration } from "#gen/envoy/config/route/v3/route_pb.ts";
import type { Route, RouteMatch } from "#gen/envoy/config/route/v3/route_components_pb.ts";
import {
  type HttpConnectionManager,
  HttpConnectionManagerSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { TcpProxySchema } from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { JwtAuthenticationSchema } from "#gen/envoy/extensions/filters/http/jwt_authn/v3/config_pb.ts";
import { TrafficDirection } from "#gen/envoy/config/core/v3/base_pb.ts";
import type { JsonObject } from "@bufbuild/protobuf";
import { type PushContext } from "../model/push_context.ts";
import { resolveHost } from "../../api/mod.ts";
import type { Proxy } from "../model/proxy.ts";
import { buildListeners, buildRoutes } from "../translate/mod.ts";
import { routeMatches, selectFilterChain, selectVirtualHost } from "./match.ts";
import { JWT_FILTER, normalizePayload } from "../translate/jwt.ts";

/** A synthetic request. */
export interface SimulationRequest {
  /** Host name (short or fully qualified) or IP address the application calls. */
  readonly host: string;
  readonly port: number;
  /** Path with optional query string; "/" when unset. */
  readonly path?: string;
  /** "GET" when unset. */
  readonly method?: string;
  /** Request headers; `:authority` or `host` here overrides the authority (default: `host`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** SNI the client sends, for TLS connections (gateway HTTPS servers, TLS passthrough). */
  readonly sni?: string;
  /** "outbound" (default): the proxy's application sends it; "inbound": it arrives at the proxy. */
  readonly direction?: "outbound" | "inbound";
  /** A JWT the request carries that the proxy's JWT filter verifies. */
  readonly jwt?: SimulatedJwt;
}

/** A verified JWT: its issuer (else the `iss` claim, else any) and its claims. */
export interface SimulatedJwt {
  readonly issuer?: string;
  readonly claims: JsonObject;
}

/** Where the request went. */
export interface SimulationResult {
  /** The listener that took the connection ("" when none did). */
  readonly listener: string;
  readonly filterChain?: string;
  readonly routeConfig?: string;
  readonly virtualHost?: string;
  /** The route's name, or a description of its match when it has none. */
  readonly route?: string;
  readonly cluster?: string;
  readonly weightedClusters?: readonly { readonly name: string; readonly weight: number }[];
  readonly directResponse?: number;
  /** "CODE location" of a redirect. */
  readonly redirect?: string;
  /** Why the request goes nowhere. */
  readonly error?: string;
}

/** The destination IP the application connects to: the literal, or the service's first VIP. */
function destinationIp(push: PushContext, proxy: Proxy, host: string): string | undefined {
  if (isIP(host) !== 0) return host;
  const service = push.serviceFor(proxy, resolveHost(host, proxy.namespace));
  return service?.addresses.find((a) => !a.includes("/") || a.endsWith("/32"))?.split("/")[0];
}

function listenerAddress(l: Listener): { ip: string; port: number } | undefined {
  const a = l.address?.address;
  if (a?.case !== "socketAddress" || a.value.portSpecifier.case !== "portValue") return undefined;
  return { ip: a.value.address, port: a.value.portSpecifier.value };
}

function pickListener(
  listeners: readonly Listener[],
  proxy: Proxy,
  to: { ip: string | undefined; port: number; inbound: boolean },
): Listener | undefined {
  const inbound = (l: Listener) => l.trafficDirection === TrafficDirection.INBOUND;
  const find = (want: string) =>
    listeners.find((l) => {
      const a = listenerAddress(l);
      if (a === undefined || a.ip !== want || a.port !== to.port) return false;
      if (l.name === "virtualInbound" || l.name === "virtualOutbound") return false;
      // Inbound traffic reaches only listeners Envoy binds; captured ones sit in virtualInbound.
      return to.inbound ? inbound(l) && l.bindToPort !== false : !inbound(l);
    });
  const direct = (to.ip ? find(to.ip) : undefined) ?? find("0.0.0.0");
  if (proxy.type === "router") return direct;
  return direct ?? listeners.find((l) => l.name === (to.inbound ? "virtualInbound" : "virtualOutbound"));
}

/**
 * The dynamic metadata the connection manager's JWT filter sets for a verified token: its
 * claims under the `payload_in_metadata` key of each provider whose issuer is the token's (all
 * providers when the token names no issuer). Empty without a JWT filter or token.
 */
export function jwtMetadata(
  hcm: HttpConnectionManager,
  jwt: SimulatedJwt | undefined,
): Record<string, JsonObject> {
  if (!jwt) return {};
  const filter = hcm.httpFilters.find((f) => f.name === JWT_FILTER);
  const config = filter?.configType.case === "typedConfig"
    ? anyUnpack(filter.configType.value, JwtAuthenticationSchema)
    : undefined;
  if (!config) return {};
  const iss = jwt.issuer ?? (typeof jwt.claims.iss === "string" ? jwt.claims.iss : undefined);
  const payloads: JsonObject = {};
  for (const provider of Object.values(config.providers)) {
    if (!provider.payloadInMetadata) continue;
    if (iss !== undefined && provider.issuer !== "" && provider.issuer !== iss) continue;
    // As Envoy stores it: the provider's space-delimited claims split into lists of words.
    payloads[provider.payloadInMetadata] = normalizePayload(
      jwt.claims,
      provider.normalizePayloadInMetadata?.spaceDelimitedClaims ?? [],
    );
  }
  return Object.keys(payloads).length > 0 ? { [JWT_FILTER]: payloads } : {};
}

/** A short description of a route's match, for routes without names. */
export function describeMatch(m: RouteMatch | undefined): string {
  const ps = m?.pathSpecifier;
  const path = ps?.case === "prefix"
    ? `prefix ${ps.value}`
    : ps?.case === "path"
    ? `path ${ps.value}`
    : ps?.case === "safeRegex"
    ? `regex ${ps.value.regex}`
    : ps?.case ?? "any";
  const headers = (m?.headers ?? []).map((h) => `${h.invertMatch ? "!" : ""}${h.name}`);
  return headers.length > 0 ? `${path} [${headers.join(",")}]` : path;
}

function routeOutcome(route: Route): Partial<SimulationResult> {
  const name = route.name || describeMatch(route.match);
  const a = route.action;
  switch (a.case) {
    case "route": {
      const cs = a.value.clusterSpecifier;
      if (cs.case === "cluster") return { route: name, cluster: cs.value };
      if (cs.case === "weightedClusters") {
        return {
          route: name,
          weightedClusters: cs.value.clusters.map((c) => ({ name: c.name, weight: c.weight ?? 0 })),
        };
      }
      return { route: name, error: `route ${name} names no cluster` };
    }
    case "redirect": {
      const r = a.value;
      const codes = [301, 302, 303, 307, 308];
      const scheme = r.schemeRewriteSpecifier.case === "schemeRedirect"
        ? `${r.schemeRewriteSpecifier.value}://`
        : r.schemeRewriteSpecifier.case === "httpsRedirect" && r.schemeRewriteSpecifier.value
        ? "https://"
        : "";
      const path =
        r.pathRewriteSpecifier.case === "pathRedirect" || r.pathRewriteSpecifier.case === "prefixRewrite"
          ? r.pathRewriteSpecifier.value
          : "";
      const location = `${scheme}${r.hostRedirect}${r.portRedirect ? `:${r.portRedirect}` : ""}${path}`;
      return { route: name, redirect: `${codes[r.responseCode] ?? 301} ${location}` };
    }
    case "directResponse":
      return { route: name, directResponse: a.value.status };
    default:
      return { route: name, error: `route ${name} has no action` };
  }
}

function simulateHttp(
  hcm: HttpConnectionManager,
  routes: { get(name: string): RouteConfiguration | undefined },
  req: SimulationRequest,
): Partial<SimulationResult> {
  const rs = hcm.routeSpecifier;
  let rc: RouteConfiguration | undefined;
  if (rs.case === "rds") {
    rc = routes.get(rs.value.routeConfigName);
    if (!rc) {
      return {
        routeConfig: rs.value.routeConfigName,
        error: `route configuration ${rs.value.routeConfigName} is missing`,
      };
    }
  } else if (rs.case === "routeConfig") {
    rc = rs.value;
  } else {
    return { error: "connection manager has no routes" };
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) headers[k.toLowerCase()] = v;
  headers[":authority"] ??= headers["host"] ?? req.host;
  headers[":method"] ??= req.method ?? "GET";
  headers[":path"] ??= req.path ?? "/";
  headers[":scheme"] ??= req.sni !== undefined ? "https" : "http";
  const vh = selectVirtualHost(rc.virtualHosts, headers[":authority"]!);
  if (!vh) return { routeConfig: rc.name, error: `no virtual host for authority ${headers[":authority"]}` };
  const dynamicMetadata = jwtMetadata(hcm, req.jwt);
  const route = vh.routes.find((r) => r.match && routeMatches(r.match, { headers, dynamicMetadata }));
  if (!route) return { routeConfig: rc.name, virtualHost: vh.name, error: "no route matches (404)" };
  return { routeConfig: rc.name, virtualHost: vh.name, ...routeOutcome(route) };
}

/** A proxy's listeners and route configurations already translated (pilot's served set, say). */
export interface SimulationConfig {
  readonly listeners: readonly Listener[];
  /** The route configuration named, or undefined; asked only for the one a request reaches. */
  route(name: string): RouteConfiguration | undefined;
}

/**
 * Routes `request` through the proxy's generated listeners and routes and reports the
 * outcome. Never throws for requests that go nowhere; `error` says why. `translated` gives the
 * translation when the caller has it; otherwise it is built from `push`.
 */
export function simulate(
  push: PushContext,
  proxy: Proxy,
  request: SimulationRequest,
  translated?: SimulationConfig,
): SimulationResult {
  const listeners = translated?.listeners ?? buildListeners(push, proxy);
  const routes = translated
    ? { get: (name: string) => translated.route(name) }
    : new Map(buildRoutes(push, proxy).map((r) => [r.name, r]));
  const inbound = request.direction === "inbound";
  const ip = inbound
    ? (isIP(request.host) !== 0 ? request.host : proxy.ip || undefined)
    : destinationIp(push, proxy, request.host);
  const listener = pickListener(listeners, proxy, { ip, port: request.port, inbound });
  if (!listener) return { listener: "", error: `no listener for port ${request.port}` };
  const chain = selectFilterChain(
    listener.filterChains,
    {
      destinationPort: request.port,
      ...(ip ? { destinationIp: ip } : {}),
      ...(request.sni !== undefined ? { serverName: request.sni } : {}),
    },
    listener.defaultFilterChain,
  );
  if (!chain) return { listener: listener.name, error: "no filter chain matches the connection" };
  const base = { listener: listener.name, filterChain: chain.name };
  const last = chain.filters.at(-1);
  const config = last?.configType.case === "typedConfig" ? last.configType.value : undefined;
  if (config) {
    const hcm = anyUnpack(config, HttpConnectionManagerSchema);
    if (hcm) return { ...base, ...simulateHttp(hcm, routes, request) };
    const tcp = anyUnpack(config, TcpProxySchema);
    if (tcp) {
      const cs = tcp.clusterSpecifier;
      if (cs.case === "cluster") return { ...base, cluster: cs.value };
      if (cs.case === "weightedClusters") {
        return {
          ...base,
          weightedClusters: cs.value.clusters.map((c) => ({ name: c.name, weight: c.weight })),
        };
      }
    }
  }
  return {
    ...base,
    error: `filter chain ${chain.name} ends in ${last?.name ?? "nothing"}, which simulation does not follow`,
  };
}
