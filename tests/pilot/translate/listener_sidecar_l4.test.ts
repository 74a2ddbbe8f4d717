/**
 * VirtualService `tcp` and `tls` routes on sidecars (mod/pilot/translate/route_plan.ts): weighted
 * splits, destination-subnet chains and SNI forwarding, checked by simulating connections, and the
 * order of the L4 route plans on a service's own listener and on a shared one.
 */
import { describe, expect, test } from "bun:test";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { simulate } from "../../../mod/pilot/simulate/simulate.ts";
import { sidecarL4RoutePlans } from "../../../mod/pilot/translate/route_plan.ts";
import { pushFrom, sidecar } from "../_push.ts";
import { readCase } from "./_golden.ts";

const { push, proxy } = readCase("sidecar_tcp_tls_routes");

describe("VirtualService tcp and tls routes on sidecars", () => {
  test("a tcp rule splits a service's connections by weight on its own listener", () => {
    const r = simulate(push, proxy, { host: "db.shop.svc.cluster.local", port: 5432 });
    expect(r.listener).toBe("10.96.0.10_5432");
    expect(r.weightedClusters).toEqual([
      { name: "outbound|5432|v1|db.shop.svc.cluster.local", weight: 80 },
      { name: "outbound|5432|v2|db.shop.svc.cluster.local", weight: 20 },
    ]);
  });

  test("a tcp match on destination subnets gets a chain of its own; the next rule takes the rest", () => {
    expect(simulate(push, proxy, { host: "10.2.0.7", port: 6379 }).cluster)
      .toBe("outbound|6379||cache.shop.svc.cluster.local");
    expect(simulate(push, proxy, { host: "10.3.0.7", port: 6379 }).cluster)
      .toBe("outbound|6379||cache-replica.shop.svc.cluster.local");
  });

  test("a tls rule forwards by SNI; a rule for other workloads leaves the service's own chain", () => {
    const via = (p: typeof proxy, sni: string) => simulate(push, p, { host: sni, port: 443, sni }).cluster;
    expect(via(proxy, "payments.example.com")).toBe("outbound|443||payments-eu.example.com");
    expect(via(proxy, "ledger.example.com")).toBe("outbound|443||ledger.example.com");
    const batch = sidecar("10.0.0.6", "shop", { app: "batch" }, "batch-1");
    expect(via(batch, "ledger.example.com")).toBe("outbound|443||payments-eu.example.com");
  });

  test("sidecarL4RoutePlans(): on a service's own listener any applicable tcp match ends the list", () => {
    const p = pushFrom(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: shop }
spec:
  hosts: [db.shop.svc.cluster.local, db-ro.shop.svc.cluster.local]
  addresses: [10.96.0.10]
  location: MESH_INTERNAL
  resolution: NONE
  ports:
    - { number: 5432, name: tcp, protocol: TCP }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: db, namespace: shop }
spec:
  hosts: [db.shop.svc.cluster.local]
  tcp:
    - match:
        - { destinationSubnets: [10.96.0.0/16], sourceLabels: { app: other } }
      route:
        - destination: { host: db-ro.shop.svc.cluster.local }
    - match:
        - destinationSubnets: [10.96.0.0/16]
      route:
        - destination: { host: db-ro.shop.svc.cluster.local }
`);
    const client = proxyFromNode({
      id: "sidecar~10.0.0.5~c.shop~shop.svc.cluster.local",
      metadata: { NAMESPACE: "shop" },
    });
    const scope = { host: "db.shop.svc.cluster.local", port: 5432, tls: false };
    const own = sidecarL4RoutePlans(p, client, { ...scope, wildcard: false });
    expect(own.map((x) => [x.path, x.destinationSubnets, x.destinations[0]!.cluster])).toEqual([
      ["tcp[1]", [], "outbound|5432||db-ro.shop.svc.cluster.local"],
    ]);
    const shared = sidecarL4RoutePlans(p, client, { ...scope, wildcard: true });
    expect(shared.map((x) => [x.path, x.destinationSubnets, x.destinations[0]!.cluster])).toEqual([
      ["tcp[1]", ["10.96.0.0/16"], "outbound|5432||db-ro.shop.svc.cluster.local"],
      ["", [], "outbound|5432||db.shop.svc.cluster.local"],
    ]);
  });
});
