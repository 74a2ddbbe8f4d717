/**
 * RequestAuthentication → Envoy's JWT authentication filter (`envoy.filters.http.jwt_authn`) on
 * sidecar inbound and gateway HTTP connection managers, as Istio configures it:
 *
 * - One provider per jwtRule of every RequestAuthentication applying to the proxy
 *   ({@link PushContext.requestAuthentications}). Its name is the issuer (a second rule for an
 *   issuer already named gets `#2`, `#3`, … in policy order), so names are deterministic.
 * - Each provider writes the verified payload into the dynamic metadata namespace
 *   {@link JWT_FILTER} under the key = its issuer (`payload_in_metadata`). RBAC reads request
 *   principals (`iss/sub`) and `request.auth.*` claims from there (see authz.ts), and so do a
 *   gateway's routes matching `@request.auth.claims` (route_plan.ts, route_match.ts).
 * - Space-delimited claims: each provider asks Envoy to store the claims `permission`, `scope`
 *   and the rule's `spaceDelimitedClaims` (sorted, without duplicates) as lists of their
 *   space-separated words (`normalize_payload_in_metadata`), as Istio does, so that a claim
 *   match in RBAC or a route (which accept one element of a list) finds `read` in
 *   `scope: "read write"` ({@link normalizePayload} says what Envoy stores).
 * - The requirement is "any provider, or no token at all" (`requires_any` of every provider plus
 *   `allow_missing`): a request without a token passes, a request with a token that no provider
 *   can verify is rejected with 401. Whether a token is required at all is left to
 *   AuthorizationPolicy (`requestPrincipals: ["*"]`), as in Istio, unless a rule says
 *   `presence: REQUIRED` (istio/api's JWTRule): then that rule's token must be present and
 *   valid, whatever other rules accept, so the requirement becomes `requires_all` of each
 *   required rule's provider and the "any provider or none" requirement above; a request
 *   without that token is rejected with 401 ({@link jwtRequirement}).
 * - Keys: `jwks` given inline becomes `local_jwks { inline_string }`. Otherwise `jwksUri` becomes
 *   `remote_jwks` fetched through the outbound cluster of the URI's host and port
 *   (`outbound|443||issuer.example.com`). That cluster only exists when a service (e.g. a
 *   ServiceEntry) for the host with that port is visible to the proxy; when it is not, the
 *   provider still gets `remote_jwks` but with `async_fetch {}`, so the listener is not held
 *   waiting for a fetch that cannot succeed until such a cluster appears (tokens of that issuer
 *   fail verification until then).
 *
 * Nothing is emitted where no RequestAuthentication applies (a gateway proxy is selected by its
 * namespace and labels like any workload), and never on sidecar outbound connection managers.
 *
 * @module
 */
import { create, type JsonObject } from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import {
  JwksAsyncFetchSchema,
  type JwtAuthentication,
  JwtAuthenticationSchema,
  type JwtProvider,
  JwtProvider_NormalizePayloadSchema,
  JwtProviderSchema,
  type JwtRequirement,
  JwtRequirementSchema,
  RemoteJwksSchema,
} from "#gen/envoy/extensions/filters/http/jwt_authn/v3/config_pb.ts";
import { DataSourceSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { HttpFilterSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { JWTRule, RequestAuthenticationSpec } from "../../api/kinds/security.ts";
import type { Resource } from "../../api/resource.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { durationFromString, typedConfig } from "./conversion.ts";
import type { HttpFilterConfigurer } from "./http_filter_context.ts";

/** The HTTP filter name of JWT authentication, also its dynamic metadata namespace. */
export const JWT_FILTER = "envoy.filters.http.jwt_authn";

/** How long fetched JWKS are cached. */
const JWKS_CACHE_DURATION = "300s";
/** Timeout of a JWKS fetch when the rule gives none. */
const JWKS_FETCH_TIMEOUT = "5s";

/** Claims Envoy always stores as lists of their space-separated words, as in Istio. */
export const DEFAULT_SPACE_DELIMITED_CLAIMS: readonly string[] = ["permission", "scope"];

/**
 * The claims a rule's provider stores as lists of words: {@link DEFAULT_SPACE_DELIMITED_CLAIMS}
 * and the rule's `spaceDelimitedClaims`, sorted, each once.
 */
export function spaceDelimitedClaims(rule: JWTRule): string[] {
  return [...new Set([...DEFAULT_SPACE_DELIMITED_CLAIMS, ...(rule.spaceDelimitedClaims ?? [])])].sort();
}

/**
 * The payload as Envoy's JWT filter stores it in metadata given `claims` to normalize: each of
 * those top-level claims whose value is a string becomes the list of its space-separated words
 * (empty words dropped); every other claim is kept as is.
 */
export function normalizePayload(payload: JsonObject, claims: readonly string[]): JsonObject {
  const out: JsonObject = { ...payload };
  for (const c of claims) {
    const v = payload[c];
    if (typeof v === "string") out[c] = v.split(" ").filter((w) => w !== "");
  }
  return out;
}

/** One provider with the name it is configured under. */
export interface NamedJwtRule {
  readonly name: string;
  readonly rule: JWTRule;
}

/**
 * The key a rule's verified payload is kept under in metadata, also its provider's base name:
 * the issuer, or the `jwksUri` of a rule without one (which accepts any issuer).
 */
export function issuerKey(rule: JWTRule): string {
  return rule.issuer || rule.jwksUri || "";
}

/**
 * The jwtRules of `policies` in order, each with its provider name (the {@link issuerKey};
 * `#N` appended from the second rule with the same key on).
 */
export function jwtRules(policies: readonly Resource<RequestAuthenticationSpec>[]): NamedJwtRule[] {
  const seen = new Map<string, number>();
  const out: NamedJwtRule[] = [];
  for (const p of policies) {
    for (const rule of p.spec.jwtRules ?? []) {
      const key = issuerKey(rule);
      const n = (seen.get(key) ?? 0) + 1;
      seen.set(key, n);
      out.push({ name: n === 1 ? key : `${key}#${n}`, rule });
    }
  }
  return out;
}

/**
 * The keys (issuers) under which the JWT filter of a sidecar inbound or gateway HCM puts
 * verified payloads in metadata, in policy order.
 */
export function jwtIssuers(push: PushContext, proxy: Proxy): string[] {
  return [...new Set(jwtRules(push.requestAuthentications(proxy)).map((r) => issuerKey(r.rule)))];
}

/** The outbound cluster serving `uri` (`outbound|PORT||HOST`), and whether the proxy has it. */
export function jwksCluster(push: PushContext, proxy: Proxy, uri: string): { name: string; exists: boolean } {
  let host = "";
  let port = 443;
  try {
    const u = new URL(uri);
    host = u.hostname;
    port = u.port !== "" ? Number(u.port) : u.protocol === "http:" ? 80 : 443;
  } catch {
    return { name: `outbound|${port}||${host}`, exists: false };
  }
  const svc = push.serviceFor(proxy, host);
  const exists = svc !== undefined && svc.ports.some((p) => p.number === port) &&
    push.visibleServices(proxy).includes(svc);
  return { name: `outbound|${port}||${host}`, exists };
}

function provider(push: PushContext, proxy: Proxy, rule: JWTRule): JwtProvider {
  let jwks: JwtProvider["jwksSourceSpecifier"] = { case: undefined };
  if (rule.jwks) {
    jwks = {
      case: "localJwks",
      value: create(DataSourceSchema, { specifier: { case: "inlineString", value: rule.jwks } }),
    };
  } else if (rule.jwksUri) {
    const cluster = jwksCluster(push, proxy, rule.jwksUri);
    jwks = {
      case: "remoteJwks",
      value: create(RemoteJwksSchema, {
        httpUri: {
          uri: rule.jwksUri,
          httpUpstreamType: { case: "cluster", value: cluster.name },
          timeout: durationFromString(rule.timeout ?? JWKS_FETCH_TIMEOUT),
        },
        cacheDuration: durationFromString(JWKS_CACHE_DURATION),
        ...(cluster.exists ? {} : { asyncFetch: create(JwksAsyncFetchSchema) }),
      }),
    };
  }
  return create(JwtProviderSchema, {
    issuer: rule.issuer ?? "",
    audiences: [...(rule.audiences ?? [])],
    jwksSourceSpecifier: jwks,
    forward: rule.forwardOriginalToken ?? false,
    fromHeaders: (rule.fromHeaders ?? []).map((h) => ({ name: h.name, valuePrefix: h.prefix ?? "" })),
    fromParams: [...(rule.fromParams ?? [])],
    fromCookies: [...(rule.fromCookies ?? [])],
    forwardPayloadHeader: rule.outputPayloadToHeader ?? "",
    payloadInMetadata: issuerKey(rule),
    normalizePayloadInMetadata: create(JwtProvider_NormalizePayloadSchema, {
      spaceDelimitedClaims: spaceDelimitedClaims(rule),
    }),
    claimToHeaders: (rule.outputClaimToHeaders ?? []).map((c) => ({
      headerName: c.header,
      claimName: c.claim,
    })),
  });
}

/**
 * The JWT authentication config for `policies`, or undefined when they have no jwtRules, with the
 * requirement of {@link jwtRequirement} (see the module notes).
 */
export function buildJwtAuthentication(
  push: PushContext,
  proxy: Proxy,
  policies: readonly Resource<RequestAuthenticationSpec>[],
): JwtAuthentication | undefined {
  const rules = jwtRules(policies);
  if (rules.length === 0) return undefined;
  const providers: Record<string, JwtProvider> = {};
  for (const r of rules) providers[r.name] = provider(push, proxy, r.rule);
  return create(JwtAuthenticationSchema, {
    providers,
    rules: [{
      match: { pathSpecifier: { case: "prefix", value: "/" } },
      requirementType: { case: "requires", value: jwtRequirement(rules) },
    }],
    bypassCorsPreflight: true,
  });
}

/**
 * The requirement for providers named after `rules`: `requires_any` of every provider and
 * `allow_missing`; with rules of `presence: REQUIRED`, `requires_all` of each of their providers
 * and that.
 */
export function jwtRequirement(rules: readonly NamedJwtRule[]): JwtRequirement {
  const byName = (name: string) =>
    create(JwtRequirementSchema, { requiresType: { case: "providerName", value: name } });
  const anyOrNone = create(JwtRequirementSchema, {
    requiresType: {
      case: "requiresAny",
      value: {
        requirements: [
          ...rules.map((r) => byName(r.name)),
          create(JwtRequirementSchema, {
            requiresType: { case: "allowMissing", value: create(EmptySchema) },
          }),
        ],
      },
    },
  });
  const required = rules.filter((r) => r.rule.presence === "REQUIRED");
  if (required.length === 0) return anyOrNone;
  return create(JwtRequirementSchema, {
    requiresType: {
      case: "requiresAll",
      value: { requirements: [...required.map((r) => byName(r.name)), anyOrNone] },
    },
  });
}

/**
 * RequestAuthentication → the JWT filter, on sidecar inbound and gateway connection managers
 * whose proxy some RequestAuthentication with jwtRules applies to; nothing on outbound ones.
 */
export const jwtFilter: HttpFilterConfigurer = (ctx) => {
  if (ctx.direction === "outbound") return [];
  const config = buildJwtAuthentication(ctx.push, ctx.proxy, ctx.push.requestAuthentications(ctx.proxy));
  if (!config) return [];
  return [
    create(HttpFilterSchema, {
      name: JWT_FILTER,
      configType: { case: "typedConfig", value: typedConfig(JwtAuthenticationSchema, config) },
    }),
  ];
};
