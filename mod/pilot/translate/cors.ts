/**
 * CORS: a VirtualService route's `corsPolicy` as the per-route config of Envoy's
 * `envoy.filters.http.cors` filter.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type CorsPolicy as EnvoyCorsPolicy,
  CorsPolicySchema,
} from "#gen/envoy/extensions/filters/http/cors/v3/cors_pb.ts";
import type { CorsPolicy } from "../../api/kinds/networking.ts";
import { exactMatcher, secondsFromString, stringMatcher, wholePercent } from "./conversion.ts";

/** The HTTP filter (and per-route config key) name of CORS. */
export const CORS_FILTER = "envoy.filters.http.cors";

/**
 * The Envoy CorsPolicy for a route: origins as string matchers (the deprecated `allowOrigin`
 * as exact matches), methods and headers comma-joined, max age in seconds, enabled for every
 * request; preflights that match no origin are forwarded unless `unmatchedPreflights: IGNORE`.
 */
export function translateCors(cors: CorsPolicy): EnvoyCorsPolicy {
  const origins = cors.allowOrigins
    ? cors.allowOrigins.flatMap((m) => {
      const sm = stringMatcher(m);
      return sm ? [sm] : [];
    })
    : (cors.allowOrigin ?? []).map(exactMatcher);
  return create(CorsPolicySchema, {
    allowOriginStringMatch: origins,
    allowMethods: (cors.allowMethods ?? []).join(","),
    allowHeaders: (cors.allowHeaders ?? []).join(","),
    exposeHeaders: (cors.exposeHeaders ?? []).join(","),
    ...(cors.maxAge ? { maxAge: String(secondsFromString(cors.maxAge)) } : {}),
    ...(cors.allowCredentials !== undefined ? { allowCredentials: cors.allowCredentials } : {}),
    filterEnabled: { defaultValue: wholePercent(100) },
    forwardNotMatchingPreflights: cors.unmatchedPreflights !== "IGNORE",
  });
}
