import { describe, expect, test } from "bun:test";
import { conflictingVirtualServiceHosts } from "../../mod/galley/analyzers/conflicting_virtual_services.ts";
import { conflictingDestinationRules } from "../../mod/galley/analyzers/destination_rule_conflicts.ts";
import {
  destinationHostNotFound,
  destinationPortNotFound,
  destinationPortSelectorRequired,
} from "../../mod/galley/analyzers/destination_hosts.ts";
import { destinationSubsetNotFound } from "../../mod/galley/analyzers/destination_subsets.ts";
import { gatewaySelectorMatchesNoWorkload } from "../../mod/galley/analyzers/gateway_workloads.ts";
import { ineffectiveMatches, unreachableRoutes } from "../../mod/galley/analyzers/route_reachability.ts";
import { serviceEntryAddressesRequired } from "../../mod/galley/analyzers/service_entry_addresses.ts";
import { subsetMatchesNoWorkload } from "../../mod/galley/analyzers/subset_workloads.ts";
import { gatewayHostNotFound, gatewayNotFound } from "../../mod/galley/analyzers/virtual_service_gateways.ts";
import { at, BASE, findings, lineOf, run } from "./_analyze_fixture.ts";

/** A VirtualService in `namespace` with one HTTP route to `destination` (YAML flow mapping). */
function vs(name: string, destination: string, extra = "", namespace = "default"): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  hosts: [${name}]
${extra}  http:
    - route:
        - destination: ${destination}
`;
}

const GATEWAY = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: ingress }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*.example.com", "ingress/internal.example.org"]
---
`;

describe("MSH0101 DestinationHostNotFound", () => {
  test("reports a destination host no ServiceEntry declares, resolved in the VirtualService's namespace", () => {
    const yaml = vs("reviews", "{ host: reviewz }");
    const ds = run(destinationHostNotFound, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0101",
        "VirtualService default/reviews",
        "spec.http[0].route[0].destination.host",
        yaml,
        "host: reviewz",
      ),
    ]);
    expect(ds[0]!.severity).toBe("error");
    expect(ds[0]!.message).toBe(
      'referenced host "reviewz" (reviewz.default.svc.cluster.local) not found: no ServiceEntry declares it ' +
        "(did you mean reviews.default.svc.cluster.local?)",
    );
  });

  test("accepts short names, FQDNs, MESH_EXTERNAL hosts and hosts under a wildcard ServiceEntry host", () => {
    const yaml = [
      vs("a", "{ host: reviews }"),
      vs("b", "{ host: reviews.default.svc.cluster.local }"),
      vs("c", "{ host: httpbin.org }"),
      vs("d", "{ host: storage.googleapis.com }"),
    ].join("---\n");
    expect(run(destinationHostNotFound, yaml)).toEqual([]);
  });

  test("a short name resolves in the VirtualService's own namespace", () => {
    const yaml = vs("reviews", "{ host: reviews }", "", "shop");
    expect(findings(run(destinationHostNotFound, yaml))).toEqual([
      at(
        "MSH0101",
        "VirtualService shop/reviews",
        "spec.http[0].route[0].destination.host",
        yaml,
        "host: reviews",
      ),
    ]);
  });

  test("checks mirrors and TCP routes too", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: mixed, namespace: default }
spec:
  hosts: [reviews]
  http:
    - route: [{ destination: { host: reviews } }]
      mirror: { host: shadow }
  tcp:
    - route: [{ destination: { host: db.example.net, port: { number: 5432 } } }]
`;
    expect(findings(run(destinationHostNotFound, yaml))).toEqual([
      at("MSH0101", "VirtualService default/mixed", "spec.http[0].mirror.host", yaml, "host: shadow"),
      at(
        "MSH0101",
        "VirtualService default/mixed",
        "spec.tcp[0].route[0].destination.host",
        yaml,
        "db.example.net",
      ),
    ]);
  });

  test("a host not exported to the VirtualService's namespace is not found, and the message says why", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: vault, namespace: secrets }
spec:
  hosts: [vault.secrets.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  exportTo: ["."]
  ports: [{ number: 8200, name: http, protocol: HTTP }]
  endpoints: [{ address: 192.0.2.50 }]
---
${vs("vault", "{ host: vault.secrets.svc.cluster.local }")}`;
    const ds = run(destinationHostNotFound, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0101",
        "VirtualService default/vault",
        "spec.http[0].route[0].destination.host",
        yaml,
        "host: vault.secrets",
      ),
    ]);
    expect(ds[0]!.message).toContain(
      "declared by ServiceEntry secrets/vault but not exported to namespace default",
    );
  });
});

describe("MSH0102 DestinationSubsetNotFound", () => {
  test("reports a subset the host's DestinationRule does not define", () => {
    const yaml = vs("reviews", "{ host: reviews, subset: v3 }");
    const ds = run(destinationSubsetNotFound, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0102",
        "VirtualService default/reviews",
        "spec.http[0].route[0].destination.subset",
        yaml,
        "subset: v3",
      ),
    ]);
    expect(ds[0]!.message).toContain(
      "DestinationRule default/reviews for host reviews.default.svc.cluster.local defines v1, v2",
    );
  });

  test("reports a subset of a host that has no DestinationRule at all", () => {
    const yaml = vs("ratings", "{ host: ratings, subset: v1, port: { number: 9080 } }");
    const ds = run(destinationSubsetNotFound, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0102",
        "VirtualService default/ratings",
        "spec.http[0].route[0].destination.subset",
        yaml,
        "subset: v1",
      ),
    ]);
    expect(ds[0]!.message).toContain(
      "no DestinationRule visible from namespace default applies to host ratings.default",
    );
  });

  test("accepts subsets defined for the host, written short or fully qualified", () => {
    const yaml = [
      vs("a", "{ host: reviews, subset: v1 }"),
      vs("b", "{ host: reviews.default.svc.cluster.local, subset: v2 }"),
    ].join("---\n");
    expect(run(destinationSubsetNotFound, yaml)).toEqual([]);
  });

  test("stays quiet about subsets of unknown hosts (MSH0101 reports those)", () => {
    expect(run(destinationSubsetNotFound, vs("x", "{ host: nowhere, subset: v1 }"))).toEqual([]);
  });
});

describe("MSH0103 GatewayNotFound", () => {
  test("reports a gateway that does not exist, in spec.gateways and in match gateways", () => {
    const yaml = `${GATEWAY}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: site, namespace: default }
spec:
  hosts: [www.example.com]
  gateways: [ingress/edge, ingress/egde, edge]
  http:
    - match: [{ gateways: [ingress/missing] }]
      route: [{ destination: { host: reviews } }]
`;
    const ds = run(gatewayNotFound, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0103", "VirtualService default/site", "spec.gateways[1]", yaml, "gateways: [ingress/edge"),
      at("MSH0103", "VirtualService default/site", "spec.gateways[2]", yaml, "gateways: [ingress/edge"),
      at(
        "MSH0103",
        "VirtualService default/site",
        "spec.http[0].match[0].gateways[0]",
        yaml,
        "ingress/missing",
      ),
    ]);
    expect(ds[0]!.message).toBe('referenced gateway "ingress/egde" not found (did you mean ingress/edge?)');
    expect(ds[1]!.message).toBe(
      'referenced gateway "edge" (default/edge) not found (did you mean ingress/edge?)',
    );
  });

  test("accepts mesh, namespace/name, the legacy name.namespace form and same-namespace short names", () => {
    const yaml = `${GATEWAY}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: site, namespace: ingress }
spec:
  hosts: [www.example.com]
  gateways: [mesh, ingress/edge, edge.ingress, edge]
  http: [{ route: [{ destination: { host: reviews.default.svc.cluster.local } }] }]
`;
    expect(run(gatewayNotFound, yaml)).toEqual([]);
  });
});

describe("MSH0132 VirtualServiceHostNotFoundInGateway", () => {
  test("reports a host none of the bound gateways accepts, honouring namespace-scoped server hosts", () => {
    const yaml = `${GATEWAY}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: site, namespace: default }
spec:
  hosts: [www.example.com, internal.example.org, www.example.net]
  gateways: [ingress/edge]
  http: [{ route: [{ destination: { host: reviews } }] }]
`;
    const ds = run(gatewayHostNotFound, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0132", "VirtualService default/site", "spec.hosts[1]", yaml, "hosts: [www.example.com"),
      at("MSH0132", "VirtualService default/site", "spec.hosts[2]", yaml, "hosts: [www.example.com"),
    ]);
    expect(ds[1]!.message).toBe(
      "host www.example.net is not accepted by gateway ingress/edge, which accepts only *.example.com; no traffic reaches it",
    );
  });

  test("accepts hosts the gateway's servers cover, and VirtualServices also bound to the mesh", () => {
    const yaml = `${GATEWAY}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: site, namespace: ingress }
spec:
  hosts: [www.example.com, internal.example.org]
  gateways: [edge]
  http: [{ route: [{ destination: { host: reviews.default.svc.cluster.local } }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: both, namespace: default }
spec:
  hosts: [reviews]
  gateways: [ingress/edge, mesh]
  http: [{ route: [{ destination: { host: reviews } }] }]
`;
    expect(run(gatewayHostNotFound, yaml)).toEqual([]);
  });
});

describe("MSH0109 ConflictingVirtualServiceHosts", () => {
  test("reports two mesh VirtualServices claiming the same host, however it is written", () => {
    const yaml = [
      vs("reviews", "{ host: reviews }"),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews-canary, namespace: default }
spec:
  hosts: [reviews.default.svc.cluster.local]
  http: [{ route: [{ destination: { host: reviews } }] }]
`,
    ].join("---\n");
    const ds = run(conflictingVirtualServiceHosts, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0109", "VirtualService default/reviews", "spec.hosts[0]", yaml, "hosts: [reviews]"),
      at(
        "MSH0109",
        "VirtualService default/reviews-canary",
        "spec.hosts[0]",
        yaml,
        "hosts: [reviews.default",
      ),
    ]);
    expect(ds[0]!.severity).toBe("warning");
    expect(ds[0]!.message).toContain(
      "host reviews.default.svc.cluster.local on the mesh is also claimed by VirtualService default/reviews-canary",
    );
  });

  test("reports two VirtualServices on one gateway with the same host", () => {
    const route = "  http: [{ route: [{ destination: { host: reviews.default.svc.cluster.local } }] }]\n";
    const yaml = `${GATEWAY}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: a, namespace: ingress }
spec:
  hosts: [www.example.com]
  gateways: [edge]
${route}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: b, namespace: ingress }
spec:
  hosts: [www.example.com]
  gateways: [ingress/edge]
${route}`;
    expect(findings(run(conflictingVirtualServiceHosts, yaml))).toEqual([
      at("MSH0109", "VirtualService ingress/a", "spec.hosts[0]", yaml, "hosts: [www.example.com]", 1),
      at("MSH0109", "VirtualService ingress/b", "spec.hosts[0]", yaml, "hosts: [www.example.com]", 2),
    ]);
  });

  test("accepts the same host on different gateways, and hosts each exported only to its own namespace", () => {
    const route = "  http: [{ route: [{ destination: { host: httpbin.org } }] }]\n";
    const yaml = `${GATEWAY}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: edge-site, namespace: ingress }
spec:
  hosts: [www.example.com]
  gateways: [edge]
${route}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: mesh-site, namespace: ingress }
spec:
  hosts: [www.example.com]
${route}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: local, namespace: team-a }
spec:
  hosts: [api.example.com]
  exportTo: ["."]
${route}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: local, namespace: team-b }
spec:
  hosts: [api.example.com]
  exportTo: ["."]
${route}`;
    expect(run(conflictingVirtualServiceHosts, yaml)).toEqual([]);
  });
});

describe("MSH0104 DestinationPortNotFound and MSH0112 DestinationPortSelectorRequired", () => {
  test("MSH0104 reports a port the service does not expose", () => {
    const yaml = vs("reviews", "{ host: reviews, port: { number: 9443 } }");
    const ds = run(destinationPortNotFound, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0104",
        "VirtualService default/reviews",
        "spec.http[0].route[0].destination.port.number",
        yaml,
        "number: 9443",
      ),
    ]);
    expect(ds[0]!.message).toContain("ServiceEntry default/reviews exposes 9080");
  });

  test("MSH0104 accepts a port the service exposes", () => {
    expect(run(destinationPortNotFound, vs("ratings", "{ host: ratings, port: { number: 9090 } }"))).toEqual(
      [],
    );
  });

  test("MSH0112 reports a destination without port on a service with two ports", () => {
    const yaml = vs("ratings", "{ host: ratings }");
    const ds = run(destinationPortSelectorRequired, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0112",
        "VirtualService default/ratings",
        "spec.http[0].route[0].destination",
        yaml,
        "destination: { host: ratings }",
      ),
    ]);
    expect(ds[0]!.message).toContain("exposes ports 9080, 9090");
  });

  test("MSH0112 accepts a single-port service without port, and a multi-port one with it", () => {
    const yaml = [
      vs("reviews", "{ host: reviews }"),
      vs("ratings", "{ host: ratings, port: { number: 9080 } }"),
    ].join("---\n");
    expect(run(destinationPortSelectorRequired, yaml)).toEqual([]);
  });
});

describe("MSH0130 VirtualServiceUnreachableRule and MSH0131 VirtualServiceIneffectiveMatch", () => {
  const routeTo = "route: [{ destination: { host: reviews } }]";

  test("MSH0130 reports routes after a route without match", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http:
    - name: everyone
      ${routeTo}
    - name: jason
      match: [{ headers: { end-user: { exact: jason } } }]
      ${routeTo}
`;
    const ds = run(unreachableRoutes, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0130", "VirtualService default/reviews", "spec.http[1]", yaml, "name: jason"),
    ]);
    expect(ds[0]!.message).toBe(
      'spec.http[1] ("jason") is never used: spec.http[0] ("everyone") before it has no match and takes every request',
    );
  });

  test('MSH0130 treats uri prefix "/" as a catch-all, and a route whose matches all repeat earlier ones as dead', () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: site, namespace: default }
spec:
  hosts: [reviews]
  http:
    - match: [{ uri: { prefix: /api } }]
      ${routeTo}
    - match: [{ uri: { prefix: /api } }]
      ${routeTo}
    - match: [{ uri: { prefix: / } }]
      ${routeTo}
    - match: [{ uri: { prefix: /static } }]
      ${routeTo}
  tcp:
    - route: [{ destination: { host: reviews } }]
    - match: [{ port: 9080 }]
      route: [{ destination: { host: reviews } }]
`;
    expect(findings(run(unreachableRoutes, yaml))).toEqual([
      at("MSH0130", "VirtualService default/site", "spec.http[1]", yaml, "prefix: /api", 2),
      at("MSH0130", "VirtualService default/site", "spec.http[3]", yaml, "prefix: /static"),
      at("MSH0130", "VirtualService default/site", "spec.tcp[1]", yaml, "match: [{ port: 9080 }]"),
    ]);
  });

  test("MSH0131 reports a single match block that repeats an earlier one, whatever its key order", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: site, namespace: default }
spec:
  hosts: [reviews]
  http:
    - match: [{ uri: { exact: /login }, method: { exact: POST } }]
      ${routeTo}
    - match:
        - { method: { exact: POST }, uri: { exact: /login } }
        - { uri: { exact: /logout } }
      ${routeTo}
`;
    const ds = run(ineffectiveMatches, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0131",
        "VirtualService default/site",
        "spec.http[1].match[0]",
        yaml,
        "- { method: { exact: POST }",
      ),
    ]);
    expect(ds[0]!.severity).toBe("info");
    expect(ds[0]!.message).toBe(
      "spec.http[1].match[0] is never used: it repeats spec.http[0].match[0], which is tried first",
    );
    expect(run(unreachableRoutes, yaml)).toEqual([]);
  });

  test("MSH0131 compares match conditions, not match names, and keeps header names apart", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: site, namespace: default }
spec:
  hosts: [reviews]
  http:
    - match: [{ name: first, headers: { name: { exact: a } } }]
      ${routeTo}
    - match: [{ headers: { name: { exact: b } } }, { name: again, headers: { name: { exact: a } } }]
      ${routeTo}
`;
    expect(findings(run(ineffectiveMatches, yaml))).toEqual([
      at("MSH0131", "VirtualService default/site", "spec.http[1].match[1]", yaml, "name: again"),
    ]);
  });

  test("accepts specific matches before a final catch-all", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http:
    - match: [{ headers: { end-user: { exact: jason } } }]
      ${routeTo}
    - match: [{ uri: { prefix: / }, headers: { x-canary: { exact: "1" } } }]
      ${routeTo}
    - ${routeTo}
`;
    expect(run(unreachableRoutes, yaml)).toEqual([]);
    expect(run(ineffectiveMatches, yaml)).toEqual([]);
  });
});

describe("MSH0134 ServiceEntryAddressesRequired", () => {
  test("reports TCP-family and unset-protocol ports of an entry without addresses", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: default }
spec:
  hosts: [db.example.net]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
    - { number: 27017, name: mongo, protocol: MONGO }
    - { number: 443, name: tls, protocol: TLS }
    - { number: 5432, name: postgres }
`;
    const ds = run(serviceEntryAddressesRequired, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0134", "ServiceEntry default/db", "spec.ports[0]", yaml, "number: 27017"),
      at("MSH0134", "ServiceEntry default/db", "spec.ports[2]", yaml, "number: 5432"),
    ]);
    expect(ds[1]!.message).toContain("port 5432 (unset, so TCP)");
  });

  test("accepts TCP ports when the entry has addresses, and HTTP/TLS ports without", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: default }
spec:
  hosts: [db.example.net]
  addresses: [198.51.100.7]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{ number: 5432, name: tcp-postgres, protocol: TCP }]
`;
    expect(run(serviceEntryAddressesRequired, yaml)).toEqual([]);
  });
});

describe("MSH0129 SubsetMatchesNoWorkload", () => {
  test("reports a subset whose labels no workload of the service carries", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-canary, namespace: other }
spec:
  host: reviews.default.svc.cluster.local
  subsets:
    - { name: v2, labels: { version: v2 } }
    - { name: v3, labels: { version: v3 } }
`;
    const ds = run(subsetMatchesNoWorkload, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0129", "DestinationRule other/reviews-canary", "spec.subsets[1].labels", yaml, "name: v3"),
    ]);
    expect(ds[0]!.message).toBe(
      'subset "v3" selects no workload of reviews.default.svc.cluster.local: no workload of ServiceEntry default/reviews ' +
        "has labels {version=v3}; its workloads have version=v1, v2",
    );
  });

  test("counts WorkloadGroup templates and skips hosts whose workloads are unknown (DNS)", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: reviews-v3, namespace: default }
spec:
  metadata: { labels: { app: reviews, version: v3 } }
  template: { serviceAccount: reviews }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-v3, namespace: other }
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{ name: v3, labels: { version: v3 } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: httpbin, namespace: default }
spec:
  host: httpbin.org
  subsets: [{ name: eu, labels: { region: eu } }]
`;
    expect(run(subsetMatchesNoWorkload, yaml)).toEqual([]);
  });
});

describe("MSH0150 ConflictingDestinationRules", () => {
  test("reports a second DestinationRule for the same host in the same namespace", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-tls, namespace: default }
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: { tls: { mode: ISTIO_MUTUAL } }
  subsets: [{ name: v1, labels: { version: v1 } }]
`;
    const ds = run(conflictingDestinationRules, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0150", "DestinationRule default/reviews-tls", "spec.host", yaml, "host: reviews.default"),
    ]);
    expect(ds[0]!.message).toBe(
      `host reviews.default.svc.cluster.local already has DestinationRule default/reviews (base.yaml:${
        lineOf(BASE, "  host: reviews")
      }) ` +
        "in namespace default; " +
        "its trafficPolicy is ignored and its subsets v1 are dropped as duplicates. Merge them into one",
    );
  });

  test("accepts rules for the host in other namespaces and rules scoped by workloadSelector", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: other }
spec:
  host: reviews.default.svc.cluster.local
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-from-ratings, namespace: default }
spec:
  host: reviews
  workloadSelector: { matchLabels: { app: ratings } }
  trafficPolicy: { loadBalancer: { simple: RANDOM } }
`;
    expect(run(conflictingDestinationRules, yaml)).toEqual([]);
  });
});

describe("MSH0128 GatewaySelectorMatchesNoWorkload", () => {
  test("reports a gateway whose selector matches no workload", () => {
    const yaml = GATEWAY.replace(/---\n$/, "");
    const ds = run(gatewaySelectorMatchesNoWorkload, yaml);
    expect(findings(ds)).toEqual([at("MSH0128", "Gateway ingress/edge", "spec.selector", yaml, "selector:")]);
    expect(ds[0]!.message).toBe(
      "selector {istio=ingressgateway} matches no workload in any namespace; no proxy opens this gateway's port 80",
    );
  });

  test("accepts a gateway whose selector matches a WorkloadEntry in another namespace", () => {
    const yaml = `${GATEWAY}apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ingressgateway-1, namespace: istio-system }
spec: { address: 192.0.2.9, labels: { istio: ingressgateway } }
`;
    expect(run(gatewaySelectorMatchesNoWorkload, yaml)).toEqual([]);
  });
});
