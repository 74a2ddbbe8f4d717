/**
 * Route matches from Istio's HTTPMatchRequest, in the forms both gRPC clients accept (gRFC A28):
 * path, prefix or safe_regex on the method path, and header matchers (exact, prefix,
 * safe_regex, present; inverted for withoutHeaders). Header matchers use the long-standing
 * per-kind fields rather than string_match, which older C-core releases reject.
 */
import { create } from "@bufbuild/protobuf";
import {
  type HeaderMatcher,
  HeaderMatcherSchema,
  type RouteMatch,
  RouteMatchSchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { RegexMatcherSchema } from "#gen/envoy/type/matcher/v3/regex_pb.ts";
import type { HTTPMatchRequest, StringMatch } from "../../../galley/kinds/networking.ts";

function headerMatcher(name: string, m: StringMatch, invert: boolean): HeaderMatcher {
  const spec: HeaderMatcher["headerMatchSpecifier"] = m.exact !== undefined
    ? { case: "exactMatch", value: m.exact }
    : m.prefix !== undefined
    ? { case: "prefixMatch", value: m.prefix }
    : m.regex !== undefined
    ? { case: "safeRegexMatch", value: create(RegexMatcherSchema, { regex: m.regex }) }
    : { case: "presentMatch", value: true };
  return create(HeaderMatcherSchema, { name, headerMatchSpecifier: spec, invertMatch: invert });
}

function sortedEntries(rec: Readonly<Record<string, StringMatch>> | undefined): [string, StringMatch][] {
  return Object.entries(rec ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A gRPC method path. */
const GRPC_PATH = /^\/[^/]+\/[^/]+$/;

/** The catch-all match: every method path. */
export function matchAll(): RouteMatch {
  return create(RouteMatchSchema, { pathSpecifier: { case: "prefix", value: "/" } });
}

/**
 * The RouteMatch for one HTTPMatchRequest, or undefined when no gRPC request can match it:
 * gRPC requests carry no query string, so a match on query parameters never matches, nor does
 * a path prefix without a leading "/" or an exact path that is not "/service/method".
 */
export function routeMatch(m: HTTPMatchRequest | undefined): RouteMatch | undefined {
  if (!m) return matchAll();
  if (m.queryParams && Object.keys(m.queryParams).length > 0) return undefined;
  const uri = m.uri;
  // gRPC paths are "/service/method": C-core drops routes matching anything else, and leaves a
  // virtual host whose routes were all dropped without routes, which it rejects.
  if (uri?.prefix !== undefined && !uri.prefix.startsWith("/")) return undefined;
  if (uri?.exact !== undefined && !GRPC_PATH.test(uri.exact)) return undefined;
  const pathSpecifier: RouteMatch["pathSpecifier"] = uri?.exact !== undefined
    ? { case: "path", value: uri.exact }
    : uri?.prefix !== undefined
    ? { case: "prefix", value: uri.prefix }
    : uri?.regex !== undefined
    ? { case: "safeRegex", value: create(RegexMatcherSchema, { regex: uri.regex }) }
    : { case: "prefix", value: "/" };
  const headers: HeaderMatcher[] = [];
  if (m.method) headers.push(headerMatcher(":method", m.method, false));
  if (m.authority) headers.push(headerMatcher(":authority", m.authority, false));
  if (m.scheme) headers.push(headerMatcher(":scheme", m.scheme, false));
  for (const [name, sm] of sortedEntries(m.headers)) headers.push(headerMatcher(name, sm, false));
  for (const [name, sm] of sortedEntries(m.withoutHeaders)) headers.push(headerMatcher(name, sm, true));
  return create(RouteMatchSchema, {
    pathSpecifier,
    headers,
    ...(m.ignoreUriCase && uri ? { caseSensitive: false } : {}),
  });
}
