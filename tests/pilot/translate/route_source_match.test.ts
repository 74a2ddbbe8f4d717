/**
 * VirtualService source conditions on sidecars: `sourceLabels` and `sourceNamespace` of `tcp`
 * and `tls` matches hold together with `gateways` (Istio's L4 rule; an HTTP match's `gateways`
 * stands in for them instead), `sourceSubnet` of a `tcp` match becomes the filter chain's
 * source prefix ranges, and HTTP `authority.prefix` and `sourceNamespace`.
 */
import { describe, expect, test } from "bun:test";
import { buildListeners, buildRoutes } from "../../../mod/pilot/translate/mod.ts";
import { serviceRoutePlans, sidecarL4RoutePlans } from "../../../mod/pilot/translate/route_plan.ts";
import { pushFrom, sidecar } from "../_push.ts";

const DB = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: shop }
spec:
  hosts: [db.shop.svc.cluster.local]
  addresses: [10.96.0.10]
  location: MESH_INTERNAL
  resolution: NONE
  ports:
    - { number: 5432, name: tcp, protocol: TCP }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db-ro, namespace: shop }
spec:
  hosts: [db-ro.shop.svc.cluster.local]
  addresses: [10.96.0.11]
  location: MESH_INTERNAL
  resolution: NONE
  ports:
    - { number: 5432, name: tcp, protocol: TCP }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ledger, namespace: shop }
spec:
  hosts: [ledger.example.com, ledger-eu.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
    - { number: 443, name: tls, protocol: TLS }
`;

const scope = { host: "db.shop.svc.cluster.local", port: 5432, tls: false, wildcard: false };
const app = sidecar("10.0.0.5", "shop", { app: "app" });
const batch = sidecar("10.0.0.6", "shop", { app: "batch" }, "batch-1");
const elsewhere = sidecar("10.0.1.5", "other", { app: "app" }, "app-2");

function clusters(plans: ReturnType<typeof sidecarL4RoutePlans>): string[] {
  return plans.map((p) => p.destinations.map((d) => d.cluster).join(","));
}

describe("tcp and tls source conditions on sidecars", () => {
  test("sourceLabels and sourceNamespace still hold when the match names the mesh gateway", () => {
    const push = pushFrom(
      DB,
      `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: db, namespace: shop }
spec:
  hosts: [db.shop.svc.cluster.local]
  tcp:
    - match: [{ gateways: [mesh], sourceLabels: { app: app }, sourceNamespace: shop }]
      route: [{ destination: { host: db-ro.shop.svc.cluster.local } }]
`,
    );
    const ro = "outbound|5432||db-ro.shop.svc.cluster.local";
    const own = "outbound|5432||db.shop.svc.cluster.local";
    expect(clusters(sidecarL4RoutePlans(push, app, scope))).toEqual([ro]);
    // Another workload, or the same labels in another namespace: the rule does not apply.
    expect(clusters(sidecarL4RoutePlans(push, batch, scope))).toEqual([own]);
    expect(clusters(sidecarL4RoutePlans(push, elsewhere, scope))).toEqual([own]);
  });

  test("a tls match for other workloads leaves the service's default even with gateways: [mesh]", () => {
    const push = pushFrom(
      DB,
      `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ledger, namespace: shop }
spec:
  hosts: [ledger.example.com]
  tls:
    - match: [{ sniHosts: [ledger.example.com], gateways: [mesh], sourceNamespace: other }]
      route: [{ destination: { host: ledger-eu.example.com } }]
`,
    );
    const tls = { host: "ledger.example.com", port: 443, tls: true, wildcard: true };
    expect(clusters(sidecarL4RoutePlans(push, app, tls))).toEqual(["outbound|443||ledger.example.com"]);
    expect(clusters(sidecarL4RoutePlans(push, elsewhere, tls))).toEqual([
      "outbound|443||ledger-eu.example.com",
    ]);
  });

  test("a tcp sourceSubnet makes a chain on the source ranges; the service's default keeps the rest", () => {
    const push = pushFrom(
      DB,
      `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: db, namespace: shop }
spec:
  hosts: [db.shop.svc.cluster.local]
  tcp:
    - match: [{ sourceSubnet: 10.0.0.0/24 }]
      route: [{ destination: { host: db-ro.shop.svc.cluster.local } }]
`,
    );
    const plans = sidecarL4RoutePlans(push, app, scope);
    expect(plans.map((p) => [p.path, p.sourceSubnets, p.destinations[0]!.cluster])).toEqual([
      ["tcp[0].match[0]", ["10.0.0.0/24"], "outbound|5432||db-ro.shop.svc.cluster.local"],
      ["", [], "outbound|5432||db.shop.svc.cluster.local"],
    ]);
    const listener = buildListeners(push, app).find((l) => l.name === "10.96.0.10_5432")!;
    const chains = listener.filterChains.map((c) => ({
      sources: (c.filterChainMatch?.sourcePrefixRanges ?? []).map((r) => `${r.addressPrefix}/${r.prefixLen}`),
      name: c.name,
    }));
    expect(chains).toEqual([
      { sources: ["10.0.0.0/24"], name: "outbound|5432||db-ro.shop.svc.cluster.local|from 10.0.0.0/24" },
      { sources: [], name: "outbound|5432||db.shop.svc.cluster.local" },
    ]);
  });
});

describe("HTTP source and authority conditions", () => {
  const WEB = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: shop }
spec:
  hosts: [web.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints:
    - { address: 10.0.2.1, labels: { version: v1 } }
    - { address: 10.0.2.2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: shop }
spec:
  host: web.shop.svc.cluster.local
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web, namespace: shop }
spec:
  hosts: [web.shop.svc.cluster.local]
  exportTo: ["*"]
  http:
    - match: [{ authority: { prefix: web.canary }, sourceNamespace: shop }]
      route: [{ destination: { host: web.shop.svc.cluster.local, subset: v2 } }]
    - route: [{ destination: { host: web.shop.svc.cluster.local, subset: v1 } }]
`;

  test("sourceNamespace keeps a rule to clients of that namespace; authority.prefix is a prefix match", () => {
    const push = pushFrom(WEB);
    const first = (p: typeof app) =>
      serviceRoutePlans(push, p, "web.shop.svc.cluster.local", 80).routes.map((r) => r.path);
    expect(first(app)).toEqual(["http[0].match[0]", "http[1]"]);
    expect(first(elsewhere)).toEqual(["http[1]"]);
    const vhost = buildRoutes(push, app).flatMap((rc) => rc.virtualHosts)
      .find((v) => v.domains.includes("web.shop.svc.cluster.local"))!;
    const authority = vhost.routes[0]!.match!.headers.find((h) => h.name === ":authority")!;
    expect(authority.headerMatchSpecifier.case).toBe("stringMatch");
    expect(authority.headerMatchSpecifier.value).toMatchObject({
      matchPattern: { case: "prefix", value: "web.canary" },
    });
  });
});
