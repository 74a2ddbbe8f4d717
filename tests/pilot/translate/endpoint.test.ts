import { describe, expect, test } from "bun:test";
import { createConfigStore } from "../../../mod/galley/store.ts";
import { createPushContext } from "../../../mod/pilot/model/push_context.ts";
import type { Endpoint } from "../../../mod/pilot/model/service.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { buildClusters, buildEndpoints } from "../../../mod/pilot/translate/mod.ts";
import { loadAssignment, TRANSPORT_SOCKET_MATCH_KEY } from "../../../mod/pilot/translate/endpoint.ts";
import { pushFrom, sidecar } from "../_push.ts";

const CONFIG = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: app }
spec:
  hosts: [web.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP, targetPort: 8080 }]
  endpoints:
    - { address: 10.0.0.2, labels: { version: v2 }, locality: eu/b }
    - { address: 10.0.0.1, labels: { version: v1 }, locality: eu/a, weight: 5 }
    - { address: 10.0.0.3, labels: { version: v1 }, locality: eu/a }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: empty, namespace: app }
spec:
  hosts: [empty.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 81, name: http, protocol: HTTP }]
  workloadSelector: { labels: { app: nobody } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: app }
spec:
  host: web
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v3, labels: { version: v3 } }
`;

const client = sidecar("10.9.9.9", "app");

const addresses = (cla: ReturnType<typeof loadAssignment>) =>
  cla.endpoints.flatMap((g) =>
    g.lbEndpoints.map((e) =>
      e.hostIdentifier.case === "endpoint" && e.hostIdentifier.value.address?.address.case === "socketAddress"
        ? `${e.hostIdentifier.value.address.address.value.address}:${e.hostIdentifier.value.address.address.value.portSpecifier.value}`
        : "?"
    )
  );

describe("buildEndpoints()", () => {
  test("buildEndpoints() emits one assignment per EDS cluster, empty ones included", () => {
    const push = pushFrom(CONFIG);
    const eds = buildClusters(push, client).filter((c) => c.edsClusterConfig).map((c) =>
      c.edsClusterConfig!.serviceName
    );
    const clas = buildEndpoints(push, client);
    expect(clas.map((c) => c.clusterName)).toEqual(eds);
    expect(clas.find((c) => c.clusterName === "outbound|81||empty.app.svc.cluster.local")?.endpoints).toEqual(
      [],
    );
    expect(clas.find((c) => c.clusterName === "outbound|80|v3|web.app.svc.cluster.local")?.endpoints).toEqual(
      [],
    );
  });

  test("buildEndpoints() narrows subsets by label and groups hosts by locality in address order", () => {
    const clas = buildEndpoints(pushFrom(CONFIG), client);
    const all = clas.find((c) => c.clusterName === "outbound|80||web.app.svc.cluster.local")!;
    expect(all.endpoints.map((g) => [g.locality?.region, g.locality?.zone, g.loadBalancingWeight])).toEqual([
      ["eu", "a", 6],
      ["eu", "b", 1],
    ]);
    expect(addresses(all)).toEqual(["10.0.0.1:8080", "10.0.0.3:8080", "10.0.0.2:8080"]);
    const v1 = clas.find((c) => c.clusterName === "outbound|80|v1|web.app.svc.cluster.local")!;
    expect(addresses(v1)).toEqual(["10.0.0.1:8080", "10.0.0.3:8080"]);
    expect(v1.endpoints[0]!.lbEndpoints[0]!.loadBalancingWeight).toBe(5);
  });

  test("buildEndpoints() tags hosts with tlsMode and leaves unhealthy ones out", () => {
    const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
    store.sink("t").replace([{ origin: "a.yaml", content: CONFIG }]);
    const base = (address: string, healthy: boolean): Endpoint => ({
      hostname: "vm.app.svc.cluster.local",
      namespace: "app",
      servicePort: { name: "http", number: 80, protocol: "HTTP" },
      address,
      port: 80,
      labels: {},
      weight: 1,
      healthy,
      tlsMode: "istio",
      source: "registry",
    });
    const push = createPushContext({
      config: store.snapshot(),
      registries: [{
        services: [{
          hostname: "vm.app.svc.cluster.local",
          namespace: "app",
          ports: [{ name: "http", number: 80, protocol: "HTTP" }],
          addresses: [],
          resolution: "STATIC",
          location: "MESH_INTERNAL",
          exportTo: ["*"],
          subjectAltNames: [],
          source: "registry",
        }],
        endpoints: [base("10.1.0.1", true), base("10.1.0.2", false)],
        workloads: [],
      }],
    });
    const cla = buildEndpoints(push, client).find((c) =>
      c.clusterName === "outbound|80||vm.app.svc.cluster.local"
    )!;
    expect(addresses(cla)).toEqual(["10.1.0.1:80"]);
    expect(cla.endpoints[0]!.lbEndpoints[0]!.metadata?.filterMetadata[TRANSPORT_SOCKET_MATCH_KEY]).toEqual({
      tlsMode: "istio",
    });
  });
});
