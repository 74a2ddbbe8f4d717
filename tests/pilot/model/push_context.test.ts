import { describe, expect, test } from "bun:test";
import { resolveHost } from "../../../mod/api/mod.ts";
import { pushFrom, sidecar } from "../_push.ts";

const se = (name: string, ns: string, host: string, extra = "") =>
  `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${ns} }
spec:
  hosts: [${host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  workloadSelector: { labels: { app: ${name} } }
${extra}`;

const we = (name: string, ns: string, ip: string, labels: string, ports = "") =>
  `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: ${ns} }
spec:
  address: ${ip}
  labels: { ${labels} }
  serviceAccount: sa-${name}
${ports}`;

describe("createPushContext()", () => {
  test("services come from ServiceEntries and endpoints from the WorkloadEntries they select", () => {
    const push = pushFrom(
      se("reviews", "bookinfo", "reviews.bookinfo.svc.cluster.local"),
      we("r1", "bookinfo", "192.0.2.1", "app: reviews, version: v1"),
      we("r2", "bookinfo", "192.0.2.2", "app: reviews, version: v2", "  ports: { http: 19080 }"),
      we("other", "other", "192.0.2.3", "app: reviews"),
    );
    const svc = push.services.find((s) => s.hostname === "reviews.bookinfo.svc.cluster.local")!;
    const eps = push.endpoints(svc, 9080);
    expect(eps.map((e) => [e.address, e.port, e.labels.version, e.tlsMode, e.serviceAccount])).toEqual([
      ["192.0.2.1", 9080, "v1", "istio", "sa-r1"],
      ["192.0.2.2", 19080, "v2", "istio", "sa-r2"],
    ]);
    expect(push.instancesOf(sidecar("192.0.2.2", "bookinfo")).map((e) => [e.hostname, e.port])).toEqual([
      ["reviews.bookinfo.svc.cluster.local", 19080],
    ]);
  });

  test("a DNS ServiceEntry without endpoints resolves its own host name", () => {
    const push = pushFrom(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ext, namespace: default }
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{ number: 443, name: https, protocol: TLS }]
`);
    const svc = push.services[0]!;
    expect(push.endpoints(svc, 443).map((e) => `${e.address}:${e.port}`)).toEqual(["api.example.com:443"]);
  });

  test("exportTo and a Sidecar's egress hosts decide what a proxy sees", () => {
    const push = pushFrom(
      se("a", "ns1", "a.ns1.svc.cluster.local"),
      se("b", "ns1", "b.ns1.svc.cluster.local", "  exportTo: ['.']"),
      se("c", "ns2", "c.ns2.svc.cluster.local"),
      `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: ns3 }
spec:
  egress:
  - hosts: ["ns2/*"]
`,
    );
    const hosts = (ns: string) => push.visibleServices(sidecar("10.0.0.1", ns)).map((s) => s.hostname);
    expect(hosts("ns1")).toEqual([
      "a.ns1.svc.cluster.local",
      "b.ns1.svc.cluster.local",
      "c.ns2.svc.cluster.local",
    ]);
    expect(hosts("ns2")).toEqual(["a.ns1.svc.cluster.local", "c.ns2.svc.cluster.local"]);
    expect(hosts("ns3")).toEqual(["c.ns2.svc.cluster.local"]);
  });

  test("Sidecar egress hosts: namespace parts '.', '~' and a name; host names match without regard to case", () => {
    const push = pushFrom(
      se("a", "ns1", "A.NS1.svc.cluster.local"),
      se("c", "ns2", "c.ns2.svc.cluster.local"),
      se("d", "ns3", "d.ns3.svc.cluster.local"),
      `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: ns3 }
spec:
  egress:
  - hosts: ["ns1/a.ns1.svc.cluster.local", "./*.NS3.svc.cluster.local", "~/*"]
`,
    );
    // Before mod/api, the ServiceEntry kept its case and egress matching was case-sensitive:
    // the proxy in ns3 saw neither service.
    expect(push.visibleServices(sidecar("10.0.0.1", "ns3")).map((s) => s.hostname)).toEqual([
      "a.ns1.svc.cluster.local",
      "d.ns3.svc.cluster.local",
    ]);
  });

  test("destinationRule() prefers the proxy's namespace, then the service's, then the root namespace", () => {
    const dr = (name: string, ns: string, host: string) =>
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name}, namespace: ${ns} }
spec:
  host: "${host}"
`;
    const push = pushFrom(
      se("reviews", "bookinfo", "reviews.bookinfo.svc.cluster.local"),
      dr("in-root", "istio-system", "*.bookinfo.svc.cluster.local"),
      dr("in-service-ns", "bookinfo", "reviews"),
      dr("in-client-ns", "client", "reviews.bookinfo.svc.cluster.local"),
    );
    const host = "reviews.bookinfo.svc.cluster.local";
    expect(push.destinationRule(sidecar("10.0.0.1", "client"), host)?.metadata.name).toBe("in-client-ns");
    expect(push.destinationRule(sidecar("10.0.0.1", "bookinfo"), host)?.metadata.name).toBe("in-service-ns");
    expect(push.destinationRule(sidecar("10.0.0.1", "elsewhere"), host)?.metadata.name).toBe("in-service-ns");
    expect(
      push.destinationRule(sidecar("10.0.0.1", "elsewhere"), "x.bookinfo.svc.cluster.local")?.metadata.name,
    ).toBe("in-root");
  });

  test("virtualServices() binds by gateway, honours exportTo and puts the proxy's namespace first", () => {
    const vs = (name: string, ns: string, extra = "") =>
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: ${ns} }
spec:
  hosts: [${name}.example.com]
${extra}  http:
  - route: [{ destination: { host: ${name}.example.com } }]
`;
    const push = pushFrom(
      vs("a", "zz"),
      vs("b", "aa"),
      vs("gw", "aa", "  gateways: [ingress]\n"),
      vs("private", "aa", "  exportTo: ['.']\n"),
    );
    expect(push.virtualServices(sidecar("10.0.0.1", "zz"), "mesh").map((v) => v.metadata.name)).toEqual([
      "a",
      "b",
    ]);
    expect(push.virtualServices(sidecar("10.0.0.1", "aa"), "mesh").map((v) => v.metadata.name)).toEqual([
      "b",
      "private",
      "a",
    ]);
    expect(push.virtualServices(sidecar("10.0.0.1", "zz"), "aa/ingress").map((v) => v.metadata.name)).toEqual(
      ["gw"],
    );
  });

  test("resolveHost() qualifies short names with the resource's namespace", () => {
    expect(resolveHost("reviews", "bookinfo")).toBe("reviews.bookinfo.svc.cluster.local");
    expect(resolveHost("reviews.bookinfo", "x")).toBe("reviews.bookinfo");
    expect(resolveHost("*", "x")).toBe("*");
    expect(resolveHost("Reviews", "bookinfo")).toBe("reviews.bookinfo.svc.cluster.local");
  });
});
