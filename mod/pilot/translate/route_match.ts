/**
 * Route matching for Envoy: an Istio HTTPMatchRequest as an Envoy RouteMatch (path, the header
 * conditions route_plan.ts decides, query parameters, and conditions on JWT claims as
 * `dynamic_metadata` matchers on the payload the JWT filter keeps under its issuer). Whether a
 * match applies to a listener at all (port, source labels, gateways) is decided in
 * route_plan.ts and re-exported here.
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
import { type MetadataMatcher, MetadataMatcherSchema } from "#gen/envoy/type/matcher/v3/metadata_pb.ts";
import { type ValueMatcher, ValueMatcherSchema } from "#gen/envoy/type/matcher/v3/value_pb.ts";
import type { HTTPMatchRequest, StringMatch } from "../../api/kinds/networking.ts";
import { byString, isPresenceMatch, stringMatcher } from "./conversion.ts";
import { JWT_FILTER } from "./jwt.ts";
import { headerConditions, type IssuerClaimCondition } from "./route_plan.ts";

export {
  CLAIM_HEADER_PREFIX,
  claimPath,
  matchApplies,
  matchesOnClaims,
  type RouteScope,
} from "./route_plan.ts";

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

/**
 * The value matcher of a claim condition: present, or the claim equal to (matching) the
 * string, or a list with such an element (claims such as `groups` are lists).
 */
function claimValueMatcher(m: StringMatch | undefined): ValueMatcher {
  const sm = isPresenceMatch(m) ? undefined : stringMatcher(m!);
  if (!sm) return create(ValueMatcherSchema, { matchPattern: { case: "presentMatch", value: true } });
  const str = create(ValueMatcherSchema, { matchPattern: { case: "stringMatch", value: sm } });
  const list = create(ValueMatcherSchema, {
    matchPattern: { case: "listMatch", value: { matchPattern: { case: "oneOf", value: str } } },
  });
  return create(ValueMatcherSchema, {
    matchPattern: { case: "orMatch", value: { valueMatchers: [str, list] } },
  });
}

/**
 * A dynamic-metadata matcher for one claim condition: the JWT filter's namespace, the path
 * `ISSUER / claim / nested keys`, inverted for `withoutHeaders`.
 */
export function claimMatcher(c: IssuerClaimCondition): MetadataMatcher {
  return create(MetadataMatcherSchema, {
    filter: JWT_FILTER,
    path: [c.issuer, ...c.path].map((key) => ({ segment: { case: "key" as const, value: key } })),
    value: claimValueMatcher(c.match),
    invert: c.invert,
  });
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
 * safe_regex (case-insensitive with `ignoreUriCase`); the header conditions of
 * {@link headerConditions} (headers then withoutHeaders, inverted, sorted by name; then
 * `:method`, `:authority` and `:scheme`); query parameters sorted by name; with `claims`, one
 * dynamic-metadata matcher per claim condition ({@link claimMatcher}).
 */
export function translateRouteMatch(
  match: HTTPMatchRequest | undefined,
  claims: readonly IssuerClaimCondition[] = [],
): RouteMatch {
  const out = create(RouteMatchSchema, { pathSpecifier: { case: "prefix", value: "/" } });
  out.dynamicMetadata = claims.map(claimMatcher);
  if (!match) return out;
  const uri = match.uri;
  if (uri?.exact !== undefined) out.pathSpecifier = { case: "path", value: uri.exact };
  else if (uri?.prefix !== undefined) out.pathSpecifier = { case: "prefix", value: uri.prefix };
  else if (uri?.regex !== undefined) {
    out.pathSpecifier = { case: "safeRegex", value: stringMatcherRegex(uri.regex) };
  }
  out.caseSensitive = !match.ignoreUriCase;
  out.headers = headerConditions(match).map((c) => headerMatcher(c.name, c.match, c.invert));
  out.queryParameters = sortedEntries(match.queryParams).map(([name, m]) => queryMatcher(name, m));
  return out;
}

function stringMatcherRegex(regex: string) {
  const sm = stringMatcher({ regex })!;
  if (sm.matchPattern.case !== "safeRegex") throw new Error("translate: regex matcher expected");
  return sm.matchPattern.value;
}

/**
 * True for a route that matches every request (prefix "/" or regex ".*" and nothing else);
 * routes after it are never reached.
 */
export function isCatchAll(m: RouteMatch): boolean {
  const ps = m.pathSpecifier;
  const all = (ps.case === "prefix" && ps.value === "/") ||
    (ps.case === "safeRegex" && ps.value.regex === ".*");
  return all && m.headers.length === 0 && m.queryParameters.length === 0 && m.dynamicMetadata.length === 0;
}
