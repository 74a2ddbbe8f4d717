/**
 * The analyzers for VirtualServices without hosts that nothing delegates to (MSH0186), gateway
 * routes that bypass a mesh subset split (MSH0140, IST0140), and CUSTOM AuthorizationPolicies
 * whose provider pilot cannot use (MSH0187): each with the cases that must and must not be found.
 */
import { describe, expect, test } from "bun:test";
import { analyze } from "../../mod/galley/analyze.ts";
import { customAuthzProviderUnusable } from "../../mod/galley/analyzers/custom_authz_providers.ts";
import { ingressRouteRulesNotAffected } from "../../mod/galley/analyzers/ingress_route_rules.ts";
import {
  delegateNotFound,
  unusedDelegateVirtualService,
} from "../../mod/galley/analyzers/virtual_service_delegates.ts";
import { at, BASE, findings, load, run } from "./_analyze_fixture.ts";

describe("MSH0186 VirtualServiceWithoutHostsNotDelegated", () => {
  const root = (delegate: string) =>
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: root, namespace: default }
spec:
  hosts: [reviews]
  http:
    - match: [{ uri: { prefix: /api } }]
      delegate: ${delegate}
    - route: [{ destination: { host: reviews } }]
---
`;
  const child = (ns: string) =>
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: api, namespace: ${ns} }
spec:
  http: [{ route: [{ destination: { host: reviews.default.svc.cluster.local } }] }]
`;

  test("a delegate named by a root (same namespace by default, or the one given) is not reported", () => {
    expect(run(unusedDelegateVirtualService, root("{ name: api }") + child("default"))).toEqual([]);
    expect(run(unusedDelegateVirtualService, root("{ name: api, namespace: team }") + child("team")))
      .toEqual([]);
  });

  test("a VirtualService without hosts that no root names is reported, with the near-miss delegate", () => {
    const yaml = root("{ name: apis }") + child("default");
    const ds = run(unusedDelegateVirtualService, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0186", "VirtualService default/api", "spec", yaml, "spec:", 2),
    ]);
    expect(ds[0]!.istio).toBeUndefined();
    expect(ds[0]!.message).toContain("routes nothing");
    expect(ds[0]!.message).toContain("a delegate names default/apis, which does not exist");
  });

  test("the namespace counts: a root in default naming api does not reach team/api", () => {
    const yaml = root("{ name: api }") + child("team");
    expect(findings(run(unusedDelegateVirtualService, yaml))).toEqual([
      at("MSH0186", "VirtualService team/api", "spec", yaml, "spec:", 2),
    ]);
  });

  test("a delegate not exported to the root's namespace is reported, naming the root", () => {
    const yaml = root("{ name: api, namespace: team }") +
      child("team").replace("spec:\n", "spec:\n  exportTo: [.]\n");
    const ds = run(unusedDelegateVirtualService, yaml);
    expect(findings(ds)).toEqual([at("MSH0186", "VirtualService team/api", "spec", yaml, "spec:", 2)]);
    expect(ds[0]!.message).toContain("(default/root) are in namespaces it is not exported to");
  });

  test("a VirtualService with hosts is never reported", () => {
    const yaml = root("{ name: api }") + child("default") + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: plain, namespace: default }
spec:
  hosts: [ratings]
  http: [{ route: [{ destination: { host: ratings, port: { number: 9080 } } }] }]
`;
    expect(run(unusedDelegateVirtualService, yaml)).toEqual([]);
  });
});

describe("MSH0105 DelegateVirtualServiceNotFound", () => {
  const root = (delegate: string) =>
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: root, namespace: default }
spec:
  hosts: [reviews]
  http:
    - match: [{ uri: { prefix: /api } }]
      delegate: ${delegate}
    - route: [{ destination: { host: reviews } }]
---
`;
  const child = (ns: string, extra = "") =>
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: api, namespace: ${ns} }
spec:${extra}
  http: [{ route: [{ destination: { host: reviews.default.svc.cluster.local } }] }]
`;
  const field = "spec.http[0].delegate";

  test("a delegate that exists, has no hosts and is exported to the root is not reported", () => {
    expect(run(delegateNotFound, root("{ name: api }") + child("default"))).toEqual([]);
    expect(
      run(
        delegateNotFound,
        root("{ name: api, namespace: team }") + child("team", "\n  exportTo: [default]"),
      ),
    )
      .toEqual([]);
  });

  test("a missing delegate is reported with the near name; one with hosts or not exported too", () => {
    const missing = root("{ name: apis }") + child("default");
    const ds = run(delegateNotFound, missing);
    expect(findings(ds)).toEqual([at("MSH0105", "VirtualService default/root", field, missing, "delegate:")]);
    expect(ds[0]!.severity).toBe("error");
    expect(ds[0]!.message).toBe(
      "delegates to default/apis, but no VirtualService default/apis exists; pilot drops this route " +
        "(did you mean default/api?)",
    );
    const withHosts = root("{ name: api }") + child("default", "\n  hosts: [ratings]");
    expect(run(delegateNotFound, withHosts)[0]!.message).toContain(
      "VirtualService default/api has hosts, and only a VirtualService without hosts can be a delegate",
    );
    const hidden = root("{ name: api, namespace: team }") + child("team", "\n  exportTo: [.]");
    expect(run(delegateNotFound, hidden)[0]!.message).toContain(
      "VirtualService team/api is not exported to namespace default",
    );
  });
});

describe("MSH0140 IngressRouteRulesNotAffected (IST0140)", () => {
  const GW = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: default }
spec:
  selector: { app: ingress }
  servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*"] }]
---
`;
  const ingress = (subset: string) =>
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: default }
spec:
  hosts: [shop.example.com]
  gateways: [edge]
  http: [{ route: [{ destination: { host: reviews${subset} } }] }]
---
`;
  const meshSplit = (gateways = "") =>
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]${gateways}
  http:
    - route:
        - { destination: { host: reviews, subset: v1 }, weight: 90 }
        - { destination: { host: reviews.default.svc.cluster.local, subset: v2 }, weight: 10 }
`;

  test("a gateway route without subset to a host the mesh splits by subset is reported", () => {
    const yaml = GW + ingress("") + meshSplit();
    const ds = run(ingressRouteRulesNotAffected, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0140",
        "VirtualService default/shop",
        "spec.http[0].route[0].destination.host",
        yaml,
        "host: reviews }",
      ),
    ]);
    expect(ds[0]!.istio).toBe("IST0140");
    expect(ds[0]!.message).toContain("VirtualService default/reviews");
    expect(ds[0]!.message).toContain("gateway default/edge");
  });

  test("not reported: the gateway route names a subset, the mesh routes have none, or the split is not the mesh's", () => {
    expect(run(ingressRouteRulesNotAffected, GW + ingress(", subset: v1") + meshSplit())).toEqual([]);
    const noSplit = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http: [{ route: [{ destination: { host: reviews } }] }]
`;
    expect(run(ingressRouteRulesNotAffected, GW + ingress("") + noSplit)).toEqual([]);
    // The split applies to the gateway only (not the mesh): nothing in the mesh is bypassed.
    expect(run(ingressRouteRulesNotAffected, GW + ingress("") + meshSplit("\n  gateways: [edge]"))).toEqual(
      [],
    );
    // A subset holding every workload of the host splits nothing (only v1 runs, all traffic to v1).
    const whole = `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-all, namespace: default }
spec:
  host: reviews
  subsets: [{ name: all, labels: { app: reviews } }]
`;
    const toAll = meshSplit().replace(/subset: v[12]/g, "subset: all");
    expect(run(ingressRouteRulesNotAffected, GW + ingress("") + toAll + whole)).toEqual([]);
    expect(run(ingressRouteRulesNotAffected, GW + ingress("") + meshSplit() + whole).length).toBe(1);
    // A mesh-only VirtualService is not an ingress route, even with a route without subset.
    const meshOnly = ingress("").replace("gateways: [edge]", "gateways: [mesh]");
    expect(run(ingressRouteRulesNotAffected, GW + meshOnly + meshSplit())).toEqual([]);
  });
});

describe("MSH0187 CustomAuthorizationProviderUnusable", () => {
  const mesh = (providers: string) =>
    `apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  extensionProviders:
${providers}---
`;
  const GRPC = `    - name: authz
      envoyExtAuthzGrpc: { service: authz/ext-authz, port: 9000 }
`;
  const authzService = (ns: string, port = 9000, exportTo = '["*"]') =>
    `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ext-authz, namespace: ${ns} }
spec:
  hosts: [ext-authz.${ns}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  exportTo: ${exportTo}
  ports: [{ number: ${port}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 192.0.2.50 }]
---
`;
  const policy = (name: string, provider: string, app = "reviews") =>
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: default }
spec:
  selector: { matchLabels: { app: ${app} } }
  action: CUSTOM
  provider: { name: ${provider} }
  rules: [{ to: [{ operation: { paths: [/admin] } }] }]
---
`;
  const field = "spec.provider.name";
  const only = (yaml: string) => run(customAuthzProviderUnusable, yaml);

  test("a defined gRPC provider whose service and port resolve and are exported is not reported", () => {
    expect(only(mesh(GRPC) + authzService("authz") + policy("ext", "authz"))).toEqual([]);
    // A bare host found in one namespace, and an HTTP provider, are fine too.
    const http = `    - name: authz
      envoyExtAuthzHttp: { service: ext-authz.authz.svc.cluster.local, port: 9000 }
`;
    expect(only(mesh(http) + authzService("authz") + policy("ext", "authz"))).toEqual([]);
  });

  test("a provider not in extensionProviders is reported, naming those that are", () => {
    const yaml = mesh(GRPC) + authzService("authz") + policy("ext", "authx");
    const ds = only(yaml);
    expect(findings(ds)).toEqual([
      at("MSH0187", "AuthorizationPolicy default/ext", field, yaml, "name: authx"),
    ]);
    expect(ds[0]!.severity).toBe("error");
    expect(ds[0]!.istio).toBeUndefined();
    expect(ds[0]!.message).toBe(
      'extension provider "authx" is not defined in MeshConfig extensionProviders (defined: authz); ' +
        "pilot denies the requests this CUSTOM policy matches",
    );
  });

  test("a provider that is not an external authorizer is reported", () => {
    const yaml = mesh("    - name: authz\n      prometheus: {}\n") + policy("ext", "authz");
    expect(only(yaml)[0]!.message).toContain(
      'extension provider "authz" is a prometheus provider, not an external authorizer',
    );
  });

  test("a service that is missing, ambiguous, or lacks the port is reported", () => {
    const missing = mesh(GRPC) + policy("ext", "authz");
    expect(only(missing)[0]!.message).toContain('service "authz/ext-authz" is not in the registry');
    const bare = `    - name: authz
      envoyExtAuthzGrpc: { service: ext-authz.authz.svc.cluster.local, port: 9000 }
`;
    // The same host declared in two namespaces (each ServiceEntry names the full host).
    const twice = authzService("authz") +
      authzService("authz").replace("namespace: authz", "namespace: other");
    expect(only(mesh(bare) + twice + policy("ext", "authz"))[0]!.message).toContain(
      "is defined in namespaces authz, other; write NAMESPACE/HOST",
    );
    expect(only(mesh(GRPC) + twice + policy("ext", "authz"))).toEqual([]);
    expect(only(mesh(GRPC) + authzService("authz", 9001) + policy("ext", "authz"))[0]!.message).toContain(
      "service ext-authz.authz.svc.cluster.local has no port 9000 (ports: 9001)",
    );
  });

  test("a service not exported to the namespace of a selected workload is reported", () => {
    const yaml = mesh(GRPC) + authzService("authz", 9000, "[.]") + policy("ext", "authz");
    expect(only(yaml)[0]!.message).toContain(
      "service ext-authz.authz.svc.cluster.local is not exported to namespace default",
    );
    expect(only(mesh(GRPC) + authzService("authz", 9000, "[default]") + policy("ext", "authz"))).toEqual([]);
  });

  test("two providers for one workload are reported on each policy; different workloads are fine", () => {
    const two = GRPC +
      "    - name: other\n      envoyExtAuthzGrpc: { service: authz/ext-authz, port: 9000 }\n";
    const yaml = mesh(two) + authzService("authz") + policy("a", "authz") + policy("b", "other");
    const ds = only(yaml);
    expect(findings(ds)).toEqual([
      at("MSH0187", "AuthorizationPolicy default/a", field, yaml, "name: authz }"),
      at("MSH0187", "AuthorizationPolicy default/b", field, yaml, "name: other }"),
    ]);
    expect(ds[0]!.message).toContain(
      'WorkloadEntry default/reviews-v1 is also selected by CUSTOM AuthorizationPolicy default/b ("other")',
    );
    expect(ds[0]!.message).toContain(
      'only one CUSTOM provider can be used per workload, found "authz", "other"',
    );
    const apart = mesh(two) + authzService("authz") + policy("a", "authz") + policy("b", "other", "ratings");
    expect(only(apart)).toEqual([]);
  });

  test("runs among all analyzers", () => {
    const files = { "base.yaml": BASE, "test.yaml": mesh(GRPC) + policy("ext", "authz") };
    expect(analyze(load(files)).filter((d) => d.code === "MSH0187").length).toBe(1);
  });
});
