/**
 * `meshd analyze` (galley) and pilot read the same config through the same rules (mod/api), so
 * they reach the same answer. Each case is one config, asked of both: does the route's host name
 * a service, does the DestinationRule's subset apply, does the gateway accept the host. Before
 * the rules were written once, galley lower-cased and qualified ServiceEntry hosts while pilot
 * did neither, so the first three cases passed `meshd analyze` and then routed nowhere.
 */
import { describe, expect, test } from "bun:test";
import { analyze, createAnalysisContext } from "../../mod/galley/analyze.ts";
import { resolveHost } from "../../mod/api/mod.ts";
import { proxyFromNode } from "../../mod/pilot/model/proxy.ts";
import { buildClusters, buildRoutes } from "../../mod/pilot/translate/mod.ts";
import { load } from "../galley/_analyze_fixture.ts";
import { pushFrom, sidecar } from "../pilot/_push.ts";

/** What galley says: services found for `host` written in `ns`, and the analyzers' codes. */
function galley(yaml: string, host: string, ns: string) {
  const resources = load({ "test.yaml": yaml });
  const found = createAnalysisContext(resources).servicesFor(host, ns).map((s) => s.host);
  const codes = analyze(resources).map((d) => d.code);
  return { found, codes };
}

/** What pilot says for a sidecar in `ns`: the service `host` names, and the DestinationRule for it. */
function pilot(yaml: string, host: string, ns: string) {
  const push = pushFrom(yaml);
  const proxy = sidecar("10.9.9.9", ns);
  const service = push.serviceFor(proxy, resolveHost(host, ns));
  const rule = service ? push.destinationRule(proxy, service.hostname) : undefined;
  return { push, proxy, service, rule };
}

describe("galley and pilot agree", () => {
  test("mixed-case ServiceEntry, DestinationRule and route hosts name one service", () => {
    const yaml = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: payments, namespace: pay }
spec:
  hosts: [Payments.Example.COM]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{ number: 80, name: http, protocol: HTTP }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: payments, namespace: pay }
spec:
  host: PAYMENTS.example.com
  subsets: [{ name: v1, labels: { version: v1 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: to-payments, namespace: web }
spec:
  hosts: [payments.example.com]
  http:
    - route: [{ destination: { host: payments.example.com, subset: v1 } }]
`;
    const g = galley(yaml, "payments.example.com", "web");
    expect(g.found).toEqual(["payments.example.com"]);
    expect(g.codes).not.toContain("MSH0101"); // DestinationHostNotFound
    expect(g.codes).not.toContain("MSH0102"); // DestinationSubsetNotFound

    const p = pilot(yaml, "payments.example.com", "web");
    expect(p.service?.hostname).toBe("payments.example.com");
    expect(p.rule?.metadata.name).toBe("payments");
    const clusters = buildClusters(p.push, p.proxy).map((c) => c.name);
    expect(clusters).toContain("outbound|80|v1|payments.example.com");
    const route = buildRoutes(p.push, p.proxy).find((r) => r.name === "80");
    const vhost = route?.virtualHosts.find((v) => v.domains.includes("payments.example.com"));
    const action = vhost?.routes[0]?.action;
    expect(action?.case === "route" && action.value.clusterSpecifier.value).toBe(
      "outbound|80|v1|payments.example.com",
    );
  });

  test("a short ServiceEntry host is qualified with the entry's namespace by both", () => {
    const yaml = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: bookinfo }
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.1.0.1 }]
`;
    expect(galley(yaml, "reviews", "bookinfo").found).toEqual(["reviews.bookinfo.svc.cluster.local"]);
    expect(pilot(yaml, "reviews", "bookinfo").service?.hostname).toBe("reviews.bookinfo.svc.cluster.local");
  });

  test("a wildcard gateway-bound VirtualService host is accepted by a mixed-case server host", () => {
    const yaml = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: edge }
spec:
  selector: { istio: ingress }
  servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*/API.Example.com"] }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api, namespace: edge }
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{ number: 80, name: http, protocol: HTTP }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: api, namespace: edge }
spec:
  hosts: ["*.example.com"]
  gateways: [gw]
  http:
    - route: [{ destination: { host: api.example.com } }]
`;
    // Galley: MSH0132 (VirtualServiceHostNotFoundInGateway) is not reported.
    expect(galley(yaml, "api.example.com", "edge").codes).not.toContain("MSH0132");
    // Pilot: the gateway's route configuration serves the host.
    const push = pushFrom(yaml);
    const router = proxyFromNode({
      id: "router~10.0.0.5~gw.edge~edge.svc.cluster.local",
      metadata: { NAMESPACE: "edge", LABELS: { istio: "ingress" } },
    });
    const domains = buildRoutes(push, router).flatMap((r) => r.virtualHosts.flatMap((v) => v.domains));
    expect(domains.map((d) => d.toLowerCase())).toContain("api.example.com");
  });

  test("exportTo: a host exported only to its own namespace is found by neither from another", () => {
    const yaml = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ledger, namespace: finance }
spec:
  hosts: [ledger.finance.svc.cluster.local]
  exportTo: ["."]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.2.0.1 }]
`;
    for (const [ns, visible] of [["finance", true], ["shop", false]] as const) {
      const g = galley(yaml, "Ledger.Finance.svc.cluster.local", ns).found.length > 0;
      const p = pilot(yaml, "Ledger.Finance.svc.cluster.local", ns).service !== undefined;
      expect({ ns, galley: g, pilot: p }).toEqual({ ns, galley: visible, pilot: visible });
    }
  });
});
