/**
 * Route matching: an Istio HTTPMatchRequest as an Envoy RouteMatch (path, headers, query
 * parameters, method, authority, scheme), and the proxy-side conditions (port, source labels,
 * gateways) that decide whether a match applies to a listener at all.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type HeaderMatcher,
  HeaderMatcherSchema,
  type QueryParameterMatcher,
  QueryParameterMatcherSchema,
  type RouteMatch,
  RouteMatchSchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import type { HTTPMatchRequest, StringMatch } from "../../galley/kinds/networking.ts";
import { qualifyGateway } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { labelsMatch } from "../model/service.ts";
import { byString, isPresenceMatch, stringMatcher } from "./conversion.ts";

/** Header names that address JWT claims; matching on them needs the JWT filter's metadata. */
export const CLAIM_HEADER_PREFIX = "@request.auth.claims";

/** An Envoy HeaderMatcher for an Istio StringMatch: presence for an empty match or regex "*". */
export function headerMatcher(name: string, m: StringMatch | undefined, invert = false): HeaderMatcher {
  const out = create(HeaderMatcherSchema, { name, invertMatch: invert });
  const sm = isPresenceMatch(m) ? undefined : stringMatcher(m!);
  if (sm) {
    out.headerMatchSpecifier = { case: "stringMatch", value: sm };
    if (invert) out.treatMissingHeaderAsEmpty = true;
  } else {
    out.headerMatchSpecifier = { case: "presentMatch", value: true };
  }
  return out;
}

function queryMatcher(name: string, m: StringMatch): QueryParameterMatcher {
  const sm = isPresenceMatch(m) ? undefined : stringMatcher(m);
  return create(QueryParameterMatcherSchema, {
    name,
    queryParameterMatchSpecifier: sm
      ? { case: "stringMatch", value: sm }
      : { case: "presentMatch", value: true },
  });
}

function sortedEntries<T>(record: Readonly<Record<string, T>> | undefined): [string, T][] {
  return Object.entries(record ?? {}).sort(([a], [b]) => byString(a, b));
}

/**
 * The RouteMatch for one Istio match condition (prefix "/" for none): uri as path, prefix or
 * safe_regex (case-insensitive with `ignoreUriCase`); headers then withoutHeaders (inverted)
 * sorted by name; then `:method`, `:authority` and `:scheme`; query parameters sorted by name.
 */
export function translateRouteMatch(match: HTTPMatchRequest | undefined): RouteMatch {
  const out = create(RouteMatchSchema, { pathSpecifier: { case: "prefix", value: "/" } });
  if (!match) return out;
  const headers: HeaderMatcher[] = [
    ...sortedEntries(match.headers).map(([name, m]) => headerMatcher(name, m)),
    ...sortedEntries(match.withoutHeaders).map(([name, m]) => headerMatcher(name, m, true)),
  ].sort((a, b) => byString(a.name, b.name));
  const uri = match.uri;
  if (uri?.exact !== undefined) out.pathSpecifier = { case: "path", value: uri.exact };
  else if (uri?.prefix !== undefined) out.pathSpecifier = { case: "prefix", value: uri.prefix };
  else if (uri?.regex !== undefined) {
    out.pathSpecifier = { case: "safeRegex", value: stringMatcherRegex(uri.regex) };
  }
  out.caseSensitive = !match.ignoreUriCase;
  if (match.method) headers.push(headerMatcher(":method", match.method));
  if (match.authority) headers.push(headerMatcher(":authority", match.authority));
  if (match.scheme) headers.push(headerMatcher(":scheme", match.scheme));
  out.headers = headers;
  out.queryParameters = sortedEntries(match.queryParams).map(([name, m]) => queryMatcher(name, m));
  return out;
}

function stringMatcherRegex(regex: string) {
  const sm = stringMatcher({ regex })!;
  if (sm.matchPattern.case !== "safeRegex") throw new Error("translate: regex matcher expected");
  return sm.matchPattern.value;
}

/** True when the match conditions on JWT claims, which this translation cannot express. */
export function matchesOnClaims(match: HTTPMatchRequest | undefined): boolean {
  const names = [...Object.keys(match?.headers ?? {}), ...Object.keys(match?.withoutHeaders ?? {})];
  return names.some((n) => n.startsWith(CLAIM_HEADER_PREFIX));
}

/** Where routes are being built: a listener port and the gateway names it serves ("mesh" for sidecars). */
export interface RouteScope {
  readonly proxy: Proxy;
  readonly port: number;
  /** "mesh", or the "namespace/name" of each gateway the listener serves. */
  readonly gateways: readonly string[];
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
  if (!labelsMatch(match.sourceLabels, scope.proxy.labels)) return false;
  return !match.sourceNamespace || match.sourceNamespace === scope.proxy.namespace;
}

/**
 * True for a route that matches every request (prefix "/" or regex ".*" and nothing else);
 * routes after it are never reached.
 */
export function isCatchAll(m: RouteMatch): boolean {
  const ps = m.pathSpecifier;
  const all = (ps.case === "prefix" && ps.value === "/") ||
    (ps.case === "safeRegex" && ps.value.regex === ".*");
  return all && m.headers.length === 0 && m.queryParameters.length === 0;
}
