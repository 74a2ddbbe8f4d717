/**
 * AuthorizationPolicy CUSTOM with MeshConfig extensionProviders: the shadow RBAC filter and
 * ext_authz per provider on inbound and gateway connection managers, the network RBAC and
 * ext_authz filters on TCP chains (gRPC providers only), provider lookup, and failing closed
 * (the CUSTOM rules enforced as DENY) when the provider cannot be used.
 */
import { describe, expect, test } from "bun:test";
import { toJson } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { Filter } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { ExtAuthzSchema as NetworkExtAuthzSchema } from "#gen/envoy/extensions/filters/network/ext_authz/v3/ext_authz_pb.ts";
import { RBACSchema as NetworkRbacSchema } from "#gen/envoy/extensions/filters/network/rbac/v3/rbac_pb.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { RBACSchema as ConfigRbacSchema } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { ExtAuthzSchema } from "#gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.ts";
import { RBACSchema as HttpRbacSchema } from "#gen/envoy/extensions/filters/http/rbac/v3/rbac_pb.ts";
import {
  type HttpConnectionManager,
  HttpConnectionManagerSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { AuthorizationPolicySpec } from "../../../mod/api/kinds/security.ts";
import type { Resource } from "../../../mod/api/resource.ts";
import { createConfigStore } from "../../../mod/galley/store.ts";
import { createPushContext, type PushContext } from "../../../mod/pilot/model/push_context.ts";
import { BAD_CUSTOM_SUFFIX, buildCustomRbac } from "../../../mod/pilot/translate/authz.ts";
import {
  customAuthzProblems,
  customAuthzTcpSkipped,
  lookupProviderTarget,
  resolveExtAuthzProvider,
} from "../../../mod/pilot/translate/ext_authz.ts";
import { buildListeners } from "../../../mod/pilot/translate/mod.ts";
import { TRANSLATE_REGISTRY } from "../../../mod/pilot/translate/type_registry.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { pushFrom, sidecar, WEB_SERVICE, webSidecar } from "../_push.ts";

const web = webSidecar();

const mesh = (providers: string) => `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  extensionProviders:
${providers}`;

const GRPC_PROVIDER = `    - name: authz
      envoyExtAuthzGrpc: { service: authz/ext-authz, port: 9000, failOpen: true }
`;

const serviceEntry = (name: string, ns: string, port: number, exportTo = '["*"]') => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${ns} }
spec:
  hosts: [${name}.${ns}.svc.cluster.local]
  exportTo: ${exportTo}
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: ${port}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 10.9.0.1 }]
`;

const custom = (
  name: string,
  provider: string,
  rules = '[{ to: [{ operation: { paths: ["/admin/*"] } }] }]',
) => `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: app }
spec:
  selector: { matchLabels: { app: web } }
  action: CUSTOM
  provider: { name: ${provider} }
  rules: ${rules}
`;

const DENY_DEBUG = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-debug, namespace: app }
spec:
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/debug"] } }] }]
`;

function hcms(l: Listener): HttpConnectionManager[] {
  return l.filterChains.flatMap((fc) =>
    fc.filters.flatMap((f) =>
      f.configType.case === "typedConfig" && f.configType.value.typeUrl.endsWith("HttpConnectionManager")
        ? [anyUnpack(f.configType.value, HttpConnectionManagerSchema)!]
        : []
    )
  );
}

function inbound(push: PushContext): HttpConnectionManager {
  return hcms(buildListeners(push, web).find((l) => l.name === "virtualInbound")!)[0]!;
}

function unpackRbac(hcm: HttpConnectionManager, index: number) {
  const f = hcm.httpFilters[index]!;
  expect(f.name).toBe("envoy.filters.http.rbac");
  return f.configType.case === "typedConfig" ? anyUnpack(f.configType.value, HttpRbacSchema)! : undefined;
}

function unpackExtAuthz(hcm: HttpConnectionManager) {
  const f = hcm.httpFilters.find((h) => h.name === "envoy.filters.http.ext_authz")!;
  return f.configType.case === "typedConfig" ? anyUnpack(f.configType.value, ExtAuthzSchema)! : undefined;
}

function resource(name: string, spec: AuthorizationPolicySpec): Resource<AuthorizationPolicySpec> {
  return {
    apiVersion: "security.istio.io/v1",
    kind: "AuthorizationPolicy",
    metadata: { name, namespace: "app" },
    spec,
  } as unknown as Resource<AuthorizationPolicySpec>;
}

describe("AuthorizationPolicy CUSTOM → ext_authz", () => {
  test("inbound: shadow RBAC with the CUSTOM rules, then ext_authz enabled by their metadata, then DENY", () => {
    const push = pushFrom(
      WEB_SERVICE,
      mesh(GRPC_PROVIDER),
      serviceEntry("ext-authz", "authz", 9000),
      custom("ext", "authz"),
      DENY_DEBUG,
    );
    const hcm = inbound(push);
    expect(hcm.httpFilters.map((f) => f.name)).toEqual([
      "envoy.filters.http.rbac",
      "envoy.filters.http.ext_authz",
      "envoy.filters.http.rbac",
      "envoy.filters.http.fault",
      "envoy.filters.http.cors",
      "envoy.filters.http.router",
    ]);
    const shadow = unpackRbac(hcm, 0)!;
    expect(shadow.rules).toBeUndefined();
    expect(shadow.shadowRulesStatPrefix).toBe("istio_ext_authz_");
    expect(Object.keys(shadow.shadowRules!.policies)).toEqual([
      "istio-ext-authz-authz-ns[app]-policy[ext]-rule[0]",
    ]);
    const authz = toJson(ExtAuthzSchema, unpackExtAuthz(hcm)!, { registry: TRANSLATE_REGISTRY });
    expect(authz).toEqual({
      grpcService: {
        envoyGrpc: {
          clusterName: "outbound|9000||ext-authz.authz.svc.cluster.local",
          authority: "ext-authz.authz.svc.cluster.local",
        },
        timeout: "600s",
      },
      failureModeAllow: true,
      transportApiVersion: "V3",
      filterEnabledMetadata: {
        filter: "envoy.filters.http.rbac",
        path: [{ key: "istio_ext_authz_shadow_effective_policy_id" }],
        value: { stringMatch: { prefix: "istio-ext-authz-authz-" } },
      },
    });
    // The DENY policy still runs after the authorizer.
    expect(unpackRbac(hcm, 2)!.rules!.action).toBe(1);
    expect(customAuthzProblems(push, web)).toEqual([]);
    // Outbound connection managers get none of it.
    const client = sidecar("10.0.0.2", "app", { app: "client" }, "client");
    for (const l of buildListeners(push, client).filter((x) => x.name !== "virtualInbound")) {
      for (const h of hcms(l)) {
        expect(h.httpFilters.map((f) => f.name)).not.toContain("envoy.filters.http.ext_authz");
      }
    }
  });

  test("no CUSTOM policy: the filter chain is what it was", () => {
    const withProviders = pushFrom(
      WEB_SERVICE,
      mesh(GRPC_PROVIDER),
      serviceEntry("ext-authz", "authz", 9000),
    );
    const without = pushFrom(WEB_SERVICE, serviceEntry("ext-authz", "authz", 9000));
    expect(inbound(withProviders).httpFilters).toEqual(inbound(without).httpFilters);
  });

  test("an unknown provider fails closed: the CUSTOM rules are enforced as DENY, and the problem is named", () => {
    const push = pushFrom(
      WEB_SERVICE,
      mesh(GRPC_PROVIDER),
      serviceEntry("ext-authz", "authz", 9000),
      custom("ext", "nope"),
    );
    const hcm = inbound(push);
    expect(hcm.httpFilters.map((f) => f.name)).not.toContain("envoy.filters.http.ext_authz");
    const deny = unpackRbac(hcm, 0)!;
    expect(deny.rules!.action).toBe(1); // DENY
    expect(Object.keys(deny.rules!.policies)).toEqual([
      `istio-ext-authz-nope-ns[app]-policy[ext]-rule[0]${BAD_CUSTOM_SUFFIX}`,
    ]);
    // Exactly the CUSTOM rules are denied: the policy matches /admin/ paths, not everything.
    const rule = toJson(HttpRbacSchema, deny) as { rules: { policies: Record<string, unknown> } };
    expect(JSON.stringify(rule)).toContain('"prefix":"/admin/"');
    expect(customAuthzProblems(push, web)).toEqual([
      'CUSTOM provider "nope": extension provider "nope" is not defined in MeshConfig extensionProviders ' +
      "(defined: authz)",
    ]);
  });

  test("several providers for one workload deny the rules of each (Istio's default)", () => {
    const push = pushFrom(
      WEB_SERVICE,
      mesh(
        `${GRPC_PROVIDER}    - name: other\n      envoyExtAuthzGrpc: { service: authz/ext-authz, port: 9000 }\n`,
      ),
      serviceEntry("ext-authz", "authz", 9000),
      custom("a", "authz"),
      custom("b", "other"),
    );
    const names = inbound(push).httpFilters.map((f) => f.name);
    expect(names.slice(0, 2)).toEqual(["envoy.filters.http.rbac", "envoy.filters.http.rbac"]);
    expect(names).not.toContain("envoy.filters.http.ext_authz");
    expect(customAuthzProblems(push, web)).toHaveLength(2);
    expect(customAuthzProblems(push, web)[0]).toContain("only one CUSTOM provider can be used per workload");
  });

  test("resolveExtAuthzProvider() explains providers that cannot be used", () => {
    const reason = (push: PushContext, name = "authz") => {
      const r = resolveExtAuthzProvider(push, web, name);
      return r.ok ? "ok" : r.reason;
    };
    const tracing = pushFrom(
      WEB_SERVICE,
      mesh("    - name: authz\n      zipkin: { service: zipkin.tracing.svc.cluster.local, port: 9411 }\n"),
    );
    expect(reason(tracing)).toContain("is a zipkin provider, not an external authorizer");
    const noService = pushFrom(WEB_SERVICE, mesh(GRPC_PROVIDER));
    expect(reason(noService)).toContain('service "authz/ext-authz" is not in the registry');
    const wrongPort = pushFrom(WEB_SERVICE, mesh(GRPC_PROVIDER), serviceEntry("ext-authz", "authz", 9001));
    expect(reason(wrongPort)).toContain("has no port 9000 (ports: 9001)");
    const hidden = pushFrom(
      WEB_SERVICE,
      mesh(GRPC_PROVIDER),
      serviceEntry("ext-authz", "authz", 9000, '["."]'),
    );
    expect(reason(hidden)).toContain("is not visible to the proxy");
    const ok = pushFrom(WEB_SERVICE, mesh(GRPC_PROVIDER), serviceEntry("ext-authz", "authz", 9000));
    expect(reason(ok)).toBe("ok");
  });

  test("lookupProviderTarget() qualifies NAMESPACE/short names and wants the namespace when a host is in two", () => {
    const twice = pushFrom(
      WEB_SERVICE,
      serviceEntry("ext-authz", "authz", 9000),
      `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ext-authz-copy, namespace: other }
spec:
  hosts: [ext-authz.authz.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9000, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 10.9.0.2 }]
`,
    );
    expect(lookupProviderTarget(twice, web, "authz/ext-authz", 9000)).toEqual({
      hostname: "ext-authz.authz.svc.cluster.local",
      cluster: "outbound|9000||ext-authz.authz.svc.cluster.local",
    });
    expect(lookupProviderTarget(twice, web, "other/ext-authz.authz.svc.cluster.local", 9000)).toMatchObject({
      cluster: "outbound|9000||ext-authz.authz.svc.cluster.local",
    });
    expect(lookupProviderTarget(twice, web, "ext-authz.authz.svc.cluster.local", 9000)).toEqual({
      reason:
        'service "ext-authz.authz.svc.cluster.local" is defined in namespaces authz, other; write NAMESPACE/HOST',
    });
  });

  test("buildCustomRbac() leaves out fields the chain cannot evaluate, and a policy without rules matches nothing", () => {
    const rbac = buildCustomRbac(
      [
        resource("tcp", {
          action: "CUSTOM",
          provider: { name: "x" },
          rules: [{ to: [{ operation: { paths: ["/a"], ports: ["80"] } }] }],
        }),
        resource("empty", { action: "CUSTOM", provider: { name: "x" } }),
      ],
      "tcp",
      "x",
    );
    const json = toJson(ConfigRbacSchema, rbac) as { action: string; policies: Record<string, unknown> };
    expect(json.action).toBe("DENY");
    // On TCP the path is left out (the rule matches more: the authorizer decides), the port stays.
    expect(json.policies["istio-ext-authz-x-ns[app]-policy[tcp]-rule[0]"]).toEqual({
      permissions: [{ destinationPort: 80 }],
      principals: [{ any: true }],
    });
    expect(json.policies["istio-ext-authz-x-ns[app]-policy[empty]-rule[0]"]).toEqual({
      permissions: [{ notRule: { any: true } }],
      principals: [{ any: true }],
    });
  });

  test("with mixer running, mixer's own ext_authz wiring stays next to the CUSTOM provider's", () => {
    const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
    store.sink("t").replace(
      [WEB_SERVICE, mesh(GRPC_PROVIDER), serviceEntry("ext-authz", "authz", 9000), custom("ext", "authz")]
        .map((
          content,
          i,
        ) => ({ origin: `in-${i}.yaml`, content })),
    );
    const push = createPushContext({ config: store.snapshot(), features: { mixer: true } });
    const hcm = inbound(push);
    const authz = hcm.httpFilters.filter((f) => f.name === "envoy.filters.http.ext_authz").map((f) =>
      f.configType.case === "typedConfig" ? anyUnpack(f.configType.value, ExtAuthzSchema)! : undefined
    );
    expect(authz).toHaveLength(2);
    const clusters = authz.map((a) =>
      a!.services.case === "grpcService" ? a!.services.value.targetSpecifier : undefined
    )
      .map((t) => t?.case === "envoyGrpc" ? t.value.clusterName : "");
    expect(clusters).toEqual(["outbound|9000||ext-authz.authz.svc.cluster.local", "xds-grpc"]);
    // Mixer's filter is not gated by CUSTOM metadata: it checks every inbound request.
    expect(authz[1]!.filterEnabledMetadata).toBeUndefined();
  });
});

const HTTP_PROVIDER = `    - name: authz
      envoyExtAuthzHttp: { service: authz/ext-authz, port: 9000 }
`;

/** The network filters of the inbound chains of `port` (any mTLS variant: they are the same). */
function tcpChainFilters(push: PushContext, port: number): Filter[] {
  const l = buildListeners(push, web).find((x) => x.name === "virtualInbound")!;
  const chain = l.filterChains.find((fc) => fc.filterChainMatch?.destinationPort === port)!;
  return chain.filters;
}

function unpackNetworkRbac(f: Filter) {
  expect(f.name).toBe("envoy.filters.network.rbac");
  return f.configType.case === "typedConfig" ? anyUnpack(f.configType.value, NetworkRbacSchema)! : undefined;
}

describe("AuthorizationPolicy CUSTOM on TCP chains", () => {
  const TCP_RULE = '[{ to: [{ operation: { ports: ["9000"], paths: ["/admin/*"] } }] }]';

  test("a gRPC provider: shadow network RBAC, then network ext_authz, before the other RBAC filters", () => {
    const push = pushFrom(
      WEB_SERVICE,
      mesh(GRPC_PROVIDER),
      serviceEntry("ext-authz", "authz", 9000),
      custom("ext", "authz", TCP_RULE),
      DENY_DEBUG.replace('paths: ["/debug"]', 'ports: ["6000"]'),
    );
    const filters = tcpChainFilters(push, 9000);
    expect(filters.map((f) => f.name)).toEqual([
      "envoy.filters.network.rbac",
      "envoy.filters.network.ext_authz",
      "envoy.filters.network.rbac",
      "envoy.filters.network.tcp_proxy",
    ]);
    const shadow = toJson(NetworkRbacSchema, unpackNetworkRbac(filters[0]!)!);
    // The path is an HTTP field: left out, so the authorizer decides about every connection to 9000.
    expect(shadow).toEqual({
      shadowRules: {
        action: "DENY",
        policies: {
          "istio-ext-authz-authz-ns[app]-policy[ext]-rule[0]": {
            permissions: [{ destinationPort: 9000 }],
            principals: [{ any: true }],
          },
        },
      },
      statPrefix: "tcp.",
      shadowRulesStatPrefix: "istio_ext_authz_",
    });
    const f = filters[1]!;
    const authz = f.configType.case === "typedConfig"
      ? toJson(NetworkExtAuthzSchema, anyUnpack(f.configType.value, NetworkExtAuthzSchema)!)
      : undefined;
    expect(authz).toEqual({
      statPrefix: "tcp.",
      grpcService: {
        envoyGrpc: {
          clusterName: "outbound|9000||ext-authz.authz.svc.cluster.local",
          authority: "ext-authz.authz.svc.cluster.local",
        },
        timeout: "600s",
      },
      failureModeAllow: true,
      transportApiVersion: "V3",
      filterEnabledMetadata: {
        filter: "envoy.filters.network.rbac",
        path: [{ key: "istio_ext_authz_shadow_effective_policy_id" }],
        value: { stringMatch: { prefix: "istio-ext-authz-authz-" } },
      },
    });
    expect(unpackNetworkRbac(filters[2]!)!.rules!.action).toBe(1); // the DENY policy
    // The passthrough chain gets the same; HTTP chains keep the HTTP filters.
    const l = buildListeners(push, web).find((x) => x.name === "virtualInbound")!;
    const passthrough = l.filterChains.find((fc) => fc.name.startsWith("InboundPassthroughFilterChain"))!;
    expect(passthrough.filters.map((x) => x.name)).toContain("envoy.filters.network.ext_authz");
    expect(customAuthzTcpSkipped(push, web)).toEqual([]);
  });

  test("an HTTP provider adds nothing to TCP chains, and says so", () => {
    const push = pushFrom(
      WEB_SERVICE,
      mesh(HTTP_PROVIDER),
      serviceEntry("ext-authz", "authz", 9000),
      custom("ext", "authz", TCP_RULE),
    );
    expect(tcpChainFilters(push, 9000).map((f) => f.name)).toEqual(["envoy.filters.network.tcp_proxy"]);
    expect(customAuthzTcpSkipped(push, web)).toEqual([
      'CUSTOM provider "authz": an HTTP authorizer (envoyExtAuthzHttp) cannot check TCP connections; ' +
      "its CUSTOM rules are not applied on TCP filter chains",
    ]);
    // The HTTP chain still asks it.
    expect(inbound(push).httpFilters.map((f) => f.name)).toContain("envoy.filters.http.ext_authz");
  });

  test("a provider that cannot be used fails closed on TCP chains too", () => {
    const push = pushFrom(WEB_SERVICE, mesh(GRPC_PROVIDER), custom("ext", "authz", TCP_RULE));
    const filters = tcpChainFilters(push, 9000);
    expect(filters.map((f) => f.name)).toEqual([
      "envoy.filters.network.rbac",
      "envoy.filters.network.tcp_proxy",
    ]);
    const deny = unpackNetworkRbac(filters[0]!)!;
    expect(deny.rules!.action).toBe(1);
    expect(Object.keys(deny.rules!.policies)).toEqual([
      `istio-ext-authz-authz-ns[app]-policy[ext]-rule[0]${BAD_CUSTOM_SUFFIX}`,
    ]);
  });

  test("gateway TCP chains carry CUSTOM and RBAC filters of the policies selecting the gateway", () => {
    const gw = proxyFromNode({
      id: "router~10.0.9.1~gw-1.app~app.svc.cluster.local",
      metadata: { NAMESPACE: "app", LABELS: { app: "web" } },
    });
    const push = pushFrom(
      WEB_SERVICE,
      mesh(GRPC_PROVIDER),
      serviceEntry("ext-authz", "authz", 9000),
      custom("ext", "authz", TCP_RULE),
      `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: app }
spec:
  selector: { app: web }
  servers: [{ port: { number: 5432, name: tcp, protocol: TCP }, hosts: ["*"] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: db, namespace: app }
spec:
  hosts: ["*"]
  gateways: [gw]
  tcp: [{ route: [{ destination: { host: web.app.svc.cluster.local, port: { number: 9000 } } }] }]
`,
    );
    const l = buildListeners(push, gw).find((x) => x.name === "0.0.0.0_5432")!;
    expect(l.filterChains[0]!.filters.map((f) => f.name)).toEqual([
      "envoy.filters.network.rbac",
      "envoy.filters.network.ext_authz",
      "envoy.filters.network.tcp_proxy",
    ]);
  });
});
