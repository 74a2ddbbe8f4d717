import { describe, expect, test } from "bun:test";
import { toJson } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Filter } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RBACSchema as ConfigRbacSchema } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { JwtAuthenticationSchema } from "#gen/envoy/extensions/filters/http/jwt_authn/v3/config_pb.ts";
import { RBACSchema as HttpRbacSchema } from "#gen/envoy/extensions/filters/http/rbac/v3/rbac_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { AuthorizationPolicySpec, JWTRule } from "../../../mod/api/kinds/security.ts";
import type { Resource } from "../../../mod/api/resource.ts";
import { buildRbac } from "../../../mod/pilot/translate/authz.ts";
import { normalizePayload, spaceDelimitedClaims } from "../../../mod/pilot/translate/jwt.ts";
import { buildListeners } from "../../../mod/pilot/translate/mod.ts";
import { TRANSLATE_REGISTRY } from "../../../mod/pilot/translate/type_registry.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { pushFrom, sidecar } from "../_push.ts";

const SERVICES = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: app }
spec:
  hosts: [web.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - { number: 80, name: http, protocol: HTTP }
  endpoints: [{ address: 10.0.0.1, labels: { app: web }, serviceAccount: web }]
`;

const ISSUER_SERVICE = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: issuer, namespace: app }
spec:
  hosts: [issuer.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
    - { number: 443, name: https, protocol: TLS }
`;

const REQUEST_AUTHN = `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: app }
spec:
  selector: { matchLabels: { app: web } }
  jwtRules:
    - issuer: https://issuer.example.com
      audiences: [web]
      jwksUri: https://issuer.example.com/.well-known/jwks.json
      fromHeaders: [{ name: x-token, prefix: "Bearer " }]
      fromParams: [token]
      outputPayloadToHeader: x-jwt-payload
      forwardOriginalToken: true
    - issuer: other-issuer
      jwks: '{"keys":[]}'
`;

const ALLOW_PRINCIPALS = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: require-jwt, namespace: app }
spec:
  selector: { matchLabels: { app: web } }
  rules:
    - from: [{ source: { requestPrincipals: ["https://issuer.example.com/alice"] } }]
`;

const web = sidecar("10.0.0.1", "app", { app: "web" });

function inboundHcm(push: ReturnType<typeof pushFrom>) {
  const vi: Listener = buildListeners(push, web).find((l) => l.name === "virtualInbound")!;
  const chain = vi.filterChains.find((c) => c.name === "inbound|80||")!;
  const f: Filter = chain.filters[0]!;
  return f.configType.case === "typedConfig"
    ? anyUnpack(f.configType.value, HttpConnectionManagerSchema)!
    : undefined;
}

function jwtConfig(push: ReturnType<typeof pushFrom>) {
  const f = inboundHcm(push)!.httpFilters.find((h) => h.name === "envoy.filters.http.jwt_authn")!;
  const c = f.configType.case === "typedConfig"
    ? anyUnpack(f.configType.value, JwtAuthenticationSchema)!
    : undefined;
  return toJson(JwtAuthenticationSchema, c!, { registry: TRANSLATE_REGISTRY }) as Record<string, unknown>;
}

function resource(name: string, spec: AuthorizationPolicySpec): Resource<AuthorizationPolicySpec> {
  return {
    apiVersion: "security.istio.io/v1",
    kind: "AuthorizationPolicy",
    metadata: { name, namespace: "app" },
    spec,
  } as unknown as Resource<AuthorizationPolicySpec>;
}

const sub = (issuer: string, value: Record<string, unknown>) => ({
  metadata: {
    filter: "envoy.filters.http.jwt_authn",
    path: [{ key: issuer }, { key: "sub" }],
    value,
  },
});

describe("RequestAuthentication → JWT filter", () => {
  test("one provider per jwtRule, named by issuer, with remote or local JWKS and payload in metadata", () => {
    const providers = jwtConfig(pushFrom(SERVICES, ISSUER_SERVICE, REQUEST_AUTHN)).providers as Record<
      string,
      unknown
    >;
    expect(Object.keys(providers)).toEqual(["https://issuer.example.com", "other-issuer"]);
    expect(providers["https://issuer.example.com"]).toEqual({
      issuer: "https://issuer.example.com",
      audiences: ["web"],
      remoteJwks: {
        httpUri: {
          uri: "https://issuer.example.com/.well-known/jwks.json",
          cluster: "outbound|443||issuer.example.com",
          timeout: "5s",
        },
        cacheDuration: "300s",
      },
      forward: true,
      fromHeaders: [{ name: "x-token", valuePrefix: "Bearer " }],
      fromParams: ["token"],
      forwardPayloadHeader: "x-jwt-payload",
      payloadInMetadata: "https://issuer.example.com",
      normalizePayloadInMetadata: { spaceDelimitedClaims: ["permission", "scope"] },
    });
    expect(providers["other-issuer"]).toEqual({
      issuer: "other-issuer",
      localJwks: { inlineString: '{"keys":[]}' },
      payloadInMetadata: "other-issuer",
      normalizePayloadInMetadata: { spaceDelimitedClaims: ["permission", "scope"] },
    });
  });

  test("spaceDelimitedClaims: Envoy stores those claims, permission and scope as lists of words", () => {
    const providers = jwtConfig(pushFrom(
      SERVICES,
      `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: app }
spec:
  selector: { matchLabels: { app: web } }
  jwtRules:
    - issuer: https://issuer.example.com
      jwks: '{"keys":[]}'
      spaceDelimitedClaims: [roles, scope, roles]
`,
    )).providers as Record<string, Record<string, unknown>>;
    expect(providers["https://issuer.example.com"]!.normalizePayloadInMetadata).toEqual({
      spaceDelimitedClaims: ["permission", "roles", "scope"],
    });
  });

  test("a normalized payload has those string claims split on spaces, other claims kept", () => {
    const claims = spaceDelimitedClaims({ issuer: "i", spaceDelimitedClaims: ["roles"] } as JWTRule);
    expect(claims).toEqual(["permission", "roles", "scope"]);
    expect(normalizePayload(
      {
        sub: "alice smith",
        scope: "read  write",
        roles: "admin",
        permission: ["a b"],
        groups: "x y",
      },
      claims,
    )).toEqual({
      sub: "alice smith",
      scope: ["read", "write"],
      roles: ["admin"],
      permission: ["a b"],
      groups: "x y",
    });
  });

  test("without a cluster for the JWKS host, remote_jwks is fetched asynchronously", () => {
    const providers = jwtConfig(pushFrom(SERVICES, REQUEST_AUTHN)).providers as Record<
      string,
      Record<string, unknown>
    >;
    expect(providers["https://issuer.example.com"]!.remoteJwks).toEqual({
      httpUri: {
        uri: "https://issuer.example.com/.well-known/jwks.json",
        cluster: "outbound|443||issuer.example.com",
        timeout: "5s",
      },
      cacheDuration: "300s",
      asyncFetch: {},
    });
  });

  test("the requirement accepts any provider or no token (invalid tokens get 401)", () => {
    const c = jwtConfig(pushFrom(SERVICES, REQUEST_AUTHN));
    expect(c.rules).toEqual([{
      match: { prefix: "/" },
      requires: {
        requiresAny: {
          requirements: [
            { providerName: "https://issuer.example.com" },
            { providerName: "other-issuer" },
            { allowMissing: {} },
          ],
        },
      },
    }]);
    expect(c.bypassCorsPreflight).toBe(true);
  });

  test("the JWT filter comes before RBAC on inbound HCMs only", () => {
    const push = pushFrom(SERVICES, REQUEST_AUTHN, ALLOW_PRINCIPALS);
    expect(inboundHcm(push)!.httpFilters.map((f) => f.name)).toEqual([
      "envoy.filters.http.jwt_authn",
      "envoy.filters.http.rbac",
      "envoy.filters.http.fault",
      "envoy.filters.http.cors",
      "envoy.filters.http.router",
    ]);
    const outbound = buildListeners(push, web).find((l) => l.name === "0.0.0.0_80")!;
    const f = outbound.filterChains[0]!.filters[0]!;
    const hcm = f.configType.case === "typedConfig"
      ? anyUnpack(f.configType.value, HttpConnectionManagerSchema)!
      : undefined;
    expect(hcm!.httpFilters.map((h) => h.name)).not.toContain("envoy.filters.http.jwt_authn");
  });

  test("no JWT filter, and request principals fail closed, when no RequestAuthentication applies", () => {
    const push = pushFrom(SERVICES, ALLOW_PRINCIPALS);
    const hcm = inboundHcm(push)!;
    expect(hcm.httpFilters.map((f) => f.name)).toEqual([
      "envoy.filters.http.rbac",
      "envoy.filters.http.fault",
      "envoy.filters.http.cors",
      "envoy.filters.http.router",
    ]);
    const rbac = hcm.httpFilters[0]!;
    const r = rbac.configType.case === "typedConfig"
      ? anyUnpack(rbac.configType.value, HttpRbacSchema)!
      : undefined;
    expect(Object.keys(r!.rules!.policies)).toEqual([]);
    const other = sidecar("10.0.0.2", "app", { app: "other" });
    expect(
      buildListeners(pushFrom(SERVICES, REQUEST_AUTHN), other).find((l) => l.name === "virtualInbound")
        ?.filterChains
        .flatMap((c) => c.filters).some((f) =>
          f.configType.case === "typedConfig" &&
          anyUnpack(f.configType.value, HttpConnectionManagerSchema)?.httpFilters.some((h) =>
            h.name === "envoy.filters.http.jwt_authn"
          )
        ) ?? false,
    ).toBe(false);
  });

  test("RBAC matches request principals on the JWT payload's sub under the issuer key", () => {
    const push = pushFrom(SERVICES, REQUEST_AUTHN, ALLOW_PRINCIPALS);
    const rbac = inboundHcm(push)!.httpFilters.find((f) => f.name === "envoy.filters.http.rbac")!;
    const r = rbac.configType.case === "typedConfig"
      ? anyUnpack(rbac.configType.value, HttpRbacSchema)!
      : undefined;
    const p = toJson(ConfigRbacSchema, r!.rules!) as { policies: Record<string, unknown> };
    expect(p.policies["ns[app]-policy[require-jwt]-rule[0]"]).toEqual({
      permissions: [{ any: true }],
      principals: [sub("https://issuer.example.com", { stringMatch: { exact: "alice" } })],
    });
  });

  test("buildRbac() maps wildcards, notRequestPrincipals and request.auth.* conditions to metadata matchers", () => {
    const issuers = ["https://a.example.com", "b"];
    const [deny, allow] = buildRbac(
      [
        resource("deny", {
          action: "DENY",
          rules: [{ from: [{ source: { notRequestPrincipals: ["*"] } }] }],
        }),
        resource("allow", {
          rules: [{
            from: [{ source: { requestPrincipals: ["b/*", "*/bob", "unknown/x"] } }],
            when: [
              { key: "request.auth.audiences", values: ["web"] },
              { key: "request.auth.presenter", values: ["app"] },
              { key: "request.auth.claims[groups]", values: ["admin"] },
              { key: "request.auth.claims[nested][role]", values: ["x"] },
              { key: "request.auth.principal", values: ["b/carol"] },
            ],
          }],
        }),
      ],
      "http",
      issuers,
    );
    const json = (x: typeof deny) =>
      (toJson(ConfigRbacSchema, x!.rules) as { policies: Record<string, { principals: unknown[] }> })
        .policies;
    expect(json(deny)["ns[app]-policy[deny]-rule[0]"]!.principals).toEqual([{
      notId: {
        orIds: {
          ids: [sub("https://a.example.com", { presentMatch: true }), sub("b", { presentMatch: true })],
        },
      },
    }]);
    const claim = (path: string[], v: string) => ({
      orIds: {
        ids: issuers.map((iss) => ({
          metadata: {
            filter: "envoy.filters.http.jwt_authn",
            path: [iss, ...path].map((key) => ({ key })),
            value: {
              orMatch: {
                valueMatchers: [{ stringMatch: { exact: v } }, {
                  listMatch: { oneOf: { stringMatch: { exact: v } } },
                }],
              },
            },
          },
        })),
      },
    });
    expect(json(allow)["ns[app]-policy[allow]-rule[0]"]!.principals).toEqual([{
      andIds: {
        ids: [
          {
            orIds: {
              ids: [
                sub("b", { presentMatch: true }),
                {
                  orIds: {
                    ids: [
                      sub("https://a.example.com", { stringMatch: { exact: "bob" } }),
                      sub("b", { stringMatch: { exact: "bob" } }),
                    ],
                  },
                },
                { notId: { any: true } },
              ],
            },
          },
          claim(["aud"], "web"),
          claim(["azp"], "app"),
          claim(["groups"], "admin"),
          claim(["nested", "role"], "x"),
          sub("b", { stringMatch: { exact: "carol" } }),
        ],
      },
    }]);
  });

  test("buildRbac() without JWT issuers keeps failing closed for request principals", () => {
    const [allow] = buildRbac([resource("allow", {
      rules: [{ from: [{ source: { requestPrincipals: ["*"] } }] }],
    })], "http");
    expect(Object.keys(allow!.rules.policies)).toEqual([]);
  });

  test("a gateway selected by a RequestAuthentication runs the JWT filter, and its RBAC reads request principals", () => {
    const gateway = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: app }
spec:
  selector: { istio: ingress }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*"]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: gw-jwt, namespace: app }
spec:
  selector: { matchLabels: { istio: ingress } }
  jwtRules:
    - { issuer: https://issuer.example.com, jwks: '{"keys":[]}' }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: gw-require-jwt, namespace: app }
spec:
  selector: { matchLabels: { istio: ingress } }
  rules:
    - from: [{ source: { requestPrincipals: ["https://issuer.example.com/alice"] } }]
`;
    const router = proxyFromNode({
      id: "router~10.0.0.9~gw-1.app~app.svc.cluster.local",
      metadata: { NAMESPACE: "app", LABELS: { istio: "ingress" } },
    });
    const f = buildListeners(pushFrom(SERVICES, gateway), router)[0]!.filterChains[0]!.filters[0]!;
    const hcm = f.configType.case === "typedConfig"
      ? anyUnpack(f.configType.value, HttpConnectionManagerSchema)!
      : undefined;
    expect(hcm!.httpFilters.map((h) => h.name).slice(0, 2)).toEqual([
      "envoy.filters.http.jwt_authn",
      "envoy.filters.http.rbac",
    ]);
    const rbac = hcm!.httpFilters[1]!;
    const r = rbac.configType.case === "typedConfig"
      ? anyUnpack(rbac.configType.value, HttpRbacSchema)!
      : undefined;
    const p = toJson(ConfigRbacSchema, r!.rules!) as { policies: Record<string, unknown> };
    expect(p.policies["ns[app]-policy[gw-require-jwt]-rule[0]"]).toEqual({
      permissions: [{ any: true }],
      principals: [sub("https://issuer.example.com", { stringMatch: { exact: "alice" } })],
    });
  });
});
