import { describe, expect, test } from "bun:test";
import { toJson } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Filter } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RBACSchema as ConfigRbacSchema } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { RBACSchema as HttpRbacSchema } from "#gen/envoy/extensions/filters/http/rbac/v3/rbac_pb.ts";
import { RBACSchema as NetworkRbacSchema } from "#gen/envoy/extensions/filters/network/rbac/v3/rbac_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { AuthorizationPolicySpec } from "../../../mod/api/kinds/security.ts";
import type { Resource } from "../../../mod/api/resource.ts";
import { buildRbac } from "../../../mod/pilot/translate/authz.ts";
import { buildListeners } from "../../../mod/pilot/translate/mod.ts";
import { pushFrom, sidecar, WEB_SERVICE, webSidecar } from "../_push.ts";

const policy = (name: string, ns: string, body: string) => `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: ${ns} }
spec:
${body}`;

const web = webSidecar();

function resource(
  name: string,
  spec: AuthorizationPolicySpec,
  namespace = "app",
): Resource<AuthorizationPolicySpec> {
  return {
    apiVersion: "security.istio.io/v1",
    kind: "AuthorizationPolicy",
    metadata: { name, namespace },
    spec,
  } as unknown as Resource<AuthorizationPolicySpec>;
}

const json = (rbac: Parameters<typeof toJson<typeof ConfigRbacSchema>>[1]) =>
  toJson(ConfigRbacSchema, rbac) as { action?: string; policies?: Record<string, unknown> };

function virtualInbound(push: ReturnType<typeof pushFrom>): Listener {
  return buildListeners(push, web).find((l) => l.name === "virtualInbound")!;
}
function httpFilterNames(f: Filter): string[] {
  if (f.configType.case !== "typedConfig") return [];
  return anyUnpack(f.configType.value, HttpConnectionManagerSchema)!.httpFilters.map((h) => h.name);
}
function httpRbac(f: Filter) {
  const m = f.configType.case === "typedConfig"
    ? anyUnpack(f.configType.value, HttpConnectionManagerSchema)!
    : undefined;
  return m!.httpFilters.filter((h) => h.name === "envoy.filters.http.rbac").map((h) =>
    h.configType.case === "typedConfig" ? anyUnpack(h.configType.value, HttpRbacSchema)! : undefined
  );
}

describe("AuthorizationPolicy → RBAC", () => {
  test("buildRbac() matches principals with the spiffe:// prefix and Istio's * prefix/suffix rules", () => {
    const [allow] = buildRbac([resource("p", {
      rules: [{
        from: [{
          source: { principals: ["cluster.local/ns/a/sa/b", "*/sa/c", "cluster.local/ns/d/*", "*"] },
        }],
      }],
    })], "http");
    expect(allow!.action).toBe("ALLOW");
    const p = json(allow!.rules).policies!["ns[app]-policy[p]-rule[0]"] as Record<string, unknown>;
    expect(p).toEqual({
      permissions: [{ any: true }],
      principals: [{
        orIds: {
          ids: [
            { authenticated: { principalName: { exact: "spiffe://cluster.local/ns/a/sa/b" } } },
            { authenticated: { principalName: { suffix: "/sa/c" } } },
            { authenticated: { principalName: { prefix: "spiffe://cluster.local/ns/d/" } } },
            { authenticated: { principalName: { safeRegex: { regex: ".+" } } } },
          ],
        },
      }],
    });
  });

  test("buildRbac() turns namespaces, notPrincipals, ipBlocks, paths, methods and when conditions into Envoy rules", () => {
    const [allow] = buildRbac([resource("p", {
      rules: [{
        from: [{
          source: {
            namespaces: ["foo"],
            notPrincipals: ["cluster.local/ns/foo/sa/bad"],
            ipBlocks: ["10.0.0.0/8"],
            remoteIpBlocks: ["1.2.3.4"],
          },
        }],
        to: [{
          operation: {
            methods: ["GET"],
            paths: ["/api/*", "*.js", "/exact"],
            ports: ["80"],
            hosts: ["Example.com"],
          },
        }],
        when: [
          { key: "request.headers[X-Team]", values: ["blue"] },
          { key: "source.namespace", notValues: ["evil"] },
          { key: "destination.port", values: ["80"] },
        ],
      }],
    })], "http");
    const p = json(allow!.rules).policies!["ns[app]-policy[p]-rule[0]"];
    expect(p).toEqual({
      permissions: [{
        andRules: {
          rules: [
            {
              andRules: {
                rules: [
                  { header: { name: ":authority", stringMatch: { exact: "Example.com", ignoreCase: true } } },
                  { destinationPort: 80 },
                  { header: { name: ":method", stringMatch: { exact: "GET" } } },
                  {
                    orRules: {
                      rules: [
                        { urlPath: { path: { prefix: "/api/" } } },
                        { urlPath: { path: { suffix: ".js" } } },
                        { urlPath: { path: { exact: "/exact" } } },
                      ],
                    },
                  },
                ],
              },
            },
            { destinationPort: 80 },
          ],
        },
      }],
      principals: [{
        andIds: {
          ids: [
            {
              andIds: {
                ids: [
                  {
                    notId: {
                      authenticated: { principalName: { exact: "spiffe://cluster.local/ns/foo/sa/bad" } },
                    },
                  },
                  { authenticated: { principalName: { safeRegex: { regex: ".*/ns/foo/.*" } } } },
                  { directRemoteIp: { addressPrefix: "10.0.0.0", prefixLen: 8 } },
                  { remoteIp: { addressPrefix: "1.2.3.4", prefixLen: 32 } },
                ],
              },
            },
            { header: { name: "x-team", stringMatch: { exact: "blue" } } },
            { notId: { authenticated: { principalName: { safeRegex: { regex: ".*/ns/evil/.*" } } } } },
          ],
        },
      }],
    });
  });

  test("buildRbac() puts DENY before ALLOW, logs AUDIT first, and skips CUSTOM", () => {
    const configs = buildRbac([
      resource("allow", { rules: [{ to: [{ operation: { methods: ["GET"] } }] }] }),
      resource("deny", { action: "DENY", rules: [{ to: [{ operation: { paths: ["/admin"] } }] }] }),
      resource("audit", { action: "AUDIT", rules: [{}] }),
      resource("custom", { action: "CUSTOM", provider: { name: "ext" }, rules: [{}] }),
    ], "http");
    expect(
      configs.map((
        c,
      ) => [c.action, json(c.rules).action ?? "ALLOW", Object.keys(json(c.rules).policies ?? {})]),
    ).toEqual([
      ["AUDIT", "LOG", ["ns[app]-policy[audit]-rule[0]"]],
      ["DENY", "DENY", ["ns[app]-policy[deny]-rule[0]"]],
      ["ALLOW", "ALLOW", ["ns[app]-policy[allow]-rule[0]"]],
    ]);
  });

  test("buildRbac(): an ALLOW policy without rules denies everything; a DENY one does nothing", () => {
    const configs = buildRbac(
      [resource("allow-nothing", {}), resource("deny-nothing", { action: "DENY" })],
      "http",
    );
    expect(configs.map((c) => c.action)).toEqual(["ALLOW"]);
    expect(configs[0]!.rules.policies).toEqual({});
  });

  test("buildRbac() on TCP fails closed: HTTP-only ALLOW rules match nothing, DENY rules drop the HTTP field", () => {
    const configs = buildRbac([
      resource("allow", {
        rules: [{ to: [{ operation: { methods: ["GET"] } }] }, { to: [{ operation: { ports: ["9000"] } }] }],
      }),
      resource("deny", {
        action: "DENY",
        rules: [{ from: [{ source: { namespaces: ["x"] } }], to: [{ operation: { paths: ["/a"] } }] }],
      }),
    ], "tcp");
    const deny = json(configs[0]!.rules).policies!;
    expect(deny).toEqual({
      "ns[app]-policy[deny]-rule[0]": {
        permissions: [{ any: true }],
        principals: [{ authenticated: { principalName: { safeRegex: { regex: ".*/ns/x/.*" } } } }],
      },
    });
    expect(Object.keys(json(configs[1]!.rules).policies!)).toEqual(["ns[app]-policy[allow]-rule[1]"]);
  });
});

describe("AuthorizationPolicy on inbound chains", () => {
  const push = pushFrom(
    WEB_SERVICE,
    policy(
      "web-allow",
      "app",
      "  selector: { matchLabels: { app: web } }\n  rules: [{ from: [{ source: { principals: [cluster.local/ns/app/sa/client] } }] }]",
    ),
    policy(
      "mesh-deny",
      "istio-system",
      "  action: DENY\n  rules: [{ to: [{ operation: { paths: [/debug] } }] }]",
    ),
    policy("other", "app", "  selector: { matchLabels: { app: other } }\n  rules: [{}]"),
  );

  test("the RBAC HTTP filters come first in inbound HCMs, DENY before ALLOW, for the policies selecting the workload", () => {
    const vi = virtualInbound(push);
    const chain = vi.filterChains.find((c) => c.name === "inbound|80||")!;
    expect(httpFilterNames(chain.filters[0]!)).toEqual([
      "envoy.filters.http.rbac",
      "envoy.filters.http.rbac",
      "envoy.filters.http.fault",
      "envoy.filters.http.cors",
      "envoy.filters.http.router",
    ]);
    const [deny, allow] = httpRbac(chain.filters[0]!);
    expect(Object.keys(deny!.rules!.policies)).toEqual(["ns[istio-system]-policy[mesh-deny]-rule[0]"]);
    expect(Object.keys(allow!.rules!.policies)).toEqual(["ns[app]-policy[web-allow]-rule[0]"]);
  });

  test("TCP chains carry the network RBAC filter before the TCP proxy; outbound HCMs carry no RBAC", () => {
    const vi = virtualInbound(push);
    const chain = vi.filterChains.find((c) => c.name === "inbound|9000||")!;
    expect(chain.filters.map((f) => f.name)).toEqual([
      "envoy.filters.network.rbac",
      "envoy.filters.network.rbac",
      "envoy.filters.network.tcp_proxy",
    ]);
    const f = chain.filters[1]!;
    const rbac = f.configType.case === "typedConfig"
      ? anyUnpack(f.configType.value, NetworkRbacSchema)!
      : undefined;
    expect(rbac!.statPrefix).toBe("tcp.");
    expect(Object.keys(rbac!.rules!.policies)).toEqual(["ns[app]-policy[web-allow]-rule[0]"]);
    const outbound = buildListeners(push, sidecar("10.9.9.9", "app", { app: "web" })).find((l) =>
      l.name === "0.0.0.0_80"
    )!;
    expect(httpFilterNames(outbound.filterChains[0]!.filters[0]!)).not.toContain("envoy.filters.http.rbac");
  });

  test("without policies no RBAC filter is added", () => {
    const vi = virtualInbound(pushFrom(WEB_SERVICE));
    const chain = vi.filterChains.find((c) => c.name === "inbound|80||")!;
    expect(httpFilterNames(chain.filters[0]!)[0]).toBe("envoy.filters.http.fault");
  });
});
