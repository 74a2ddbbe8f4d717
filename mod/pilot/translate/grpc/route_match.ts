/**
 * Route matches for gRPC clients (gRFC A28), rendered from the header conditions route_plan.ts
 * decides for both data planes: path, prefix or safe_regex on the method path, and header
 * matchers (exact, prefix, safe_regex, present; inverted for withoutHeaders). Header matchers
 * use the long-standing per-kind fields rather than string_match, which older C-core releases
 * reject.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type HeaderMatcher,
  HeaderMatcherSchema,
  type RouteMatch,
  RouteMatchSchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { RegexMatcherSchema } from "#gen/envoy/type/matcher/v3/regex_pb.ts";
import type { HTTPMatchRequest } from "../../../api/kinds/networking.ts";
import { type HeaderCondition, headerConditions } from "../route_plan.ts";

function headerMatcher(c: HeaderCondition): HeaderMatcher {
  const m = c.match;
  const spec: HeaderMatcher["headerMatchSpecifier"] = m?.exact !== undefined
    ? { case: "exactMatch", value: m.exact }
    : m?.prefix !== undefined
    ? { case: "prefixMatch", value: m.prefix }
    : m?.regex !== undefined
    ? { case: "safeRegexMatch", value: create(RegexMatcherSchema, { regex: m.regex }) }
    : { case: "presentMatch", value: true };
  return create(HeaderMatcherSchema, { name: c.name, headerMatchSpecifier: spec, invertMatch: c.invert });
}

/** A gRPC method path. */
const GRPC_PATH = /^\/[^/]+\/[^/]+$/;

/** The catch-all match: every method path. */
export function matchAll(): RouteMatch {
  return create(RouteMatchSchema, { pathSpecifier: { case: "prefix", value: "/" } });
}

/**
 * Why no gRPC call can satisfy a match, or undefined when one can: gRPC requests carry no
 * query string, and their paths are "/service/method" (C-core drops routes matching anything
 * else, and rejects a virtual host whose routes were all dropped).
 */
export function unmatchableReason(m: HTTPMatchRequest | undefined): string | undefined {
  if (!m) return undefined;
  if (m.queryParams && Object.keys(m.queryParams).length > 0) {
    return "gRPC requests carry no query string, so a match on query parameters never matches";
  }
  const uri = m.uri;
  if (uri?.prefix !== undefined && !uri.prefix.startsWith("/")) {
    return "gRPC method paths start with '/', so this prefix never matches";
  }
  if (uri?.exact !== undefined && !GRPC_PATH.test(uri.exact)) {
    return "gRPC method paths are /service/method, so this exact path never matches";
  }
  return undefined;
}

/** The RouteMatch for one match condition, or undefined when no gRPC call can match it. */
export function grpcRouteMatch(m: HTTPMatchRequest | undefined): RouteMatch | undefined {
  if (!m) return matchAll();
  if (unmatchableReason(m)) return undefined;
  const uri = m.uri;
  const pathSpecifier: RouteMatch["pathSpecifier"] = uri?.exact !== undefined
    ? { case: "path", value: uri.exact }
    : uri?.prefix !== undefined
    ? { case: "prefix", value: uri.prefix }
    : uri?.regex !== undefined
    ? { case: "safeRegex", value: create(RegexMatcherSchema, { regex: uri.regex }) }
    : { case: "prefix", value: "/" };
  return create(RouteMatchSchema, {
    pathSpecifier,
    headers: headerConditions(m).map(headerMatcher),
    ...(m.ignoreUriCase ? { caseSensitive: false } : {}),
  });
}
