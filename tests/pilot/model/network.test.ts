/**
 * Networks: where endpoints' networks come from, where network gateways come from, the
 * proxy's NETWORK, MeshConfig meshNetworks validation, and the SNI-DNAT clusters of an
 * AUTO_PASSTHROUGH gateway.
 */
import { describe, expect, test } from "bun:test";
import { proxyConfigKey, proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { buildClusters } from "../../../mod/pilot/translate/mod.ts";
import { sniDnatClusters } from "../../../mod/pilot/translate/sni_dnat.ts";
import { diagnose, expectErrorOn, expectValid, resource } from "../../galley/kinds/_check.ts";
import { pushFrom } from "../_push.ts";

const meshConfig = (spec: string) =>
  resource(
    { apiVersion: "config.meshd.io/v1alpha1", kind: "MeshConfig", name: "mesh", namespace: "istio-system" },
    spec,
  );

const SERVICE = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc, namespace: app }
spec:
  hosts: [svc.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints:
    - { address: 10.1.0.1, network: net1 }
    - { address: 10.2.0.1, labels: { topology.istio.io/network: net2 } }
    - { address: 10.3.0.1 }
    - { address: 10.9.0.1 }
`;

describe("endpoint networks", () => {
  test("WorkloadEntry network, then the topology label, then MeshNetworks fromCidr", () => {
    const push = pushFrom(
      SERVICE,
      meshConfig(`  meshNetworks:
    networks:
      net3: { endpoints: [{ fromCidr: 10.3.0.0/16 }] }
`),
    );
    const svc = push.services.find((s) => s.hostname === "svc.app.svc.cluster.local")!;
    expect(push.endpoints(svc, 80).map((e) => `${e.address} ${e.network ?? "-"}`)).toEqual([
      "10.1.0.1 net1",
      "10.2.0.1 net2",
      "10.3.0.1 net3",
      "10.9.0.1 -",
    ]);
  });
});

describe("network gateways", () => {
  test("from MeshNetworks addresses and registry services, and from labelled gateway ServiceEntries", () => {
    const push = pushFrom(
      meshConfig(`  meshNetworks:
    networks:
      net1:
        gateways: [{ address: 198.18.1.1, port: 15443 }]
      net2:
        gateways: [{ registryServiceName: gw2.istio-system.svc.cluster.local, port: 15443 }]
`),
      `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: gw2, namespace: istio-system }
spec:
  hosts: [gw2.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 15443, name: tls, protocol: TLS, targetPort: 16443 }]
  endpoints: [{ address: 198.18.2.1 }, { address: 198.18.2.2 }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: gw3
  namespace: istio-system
  labels: { topology.istio.io/network: net3, networking.istio.io/gatewayPort: "8443" }
spec:
  hosts: [gw3.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  addresses: [198.18.3.9]
  ports: [{ number: 8443, name: tls, protocol: TLS }]
`,
    );
    expect(push.networkGateways.map((g) => `${g.network} ${g.address}:${g.port}`)).toEqual([
      "net1 198.18.1.1:15443",
      "net2 198.18.2.1:16443",
      "net2 198.18.2.2:16443",
      "net3 198.18.3.9:8443",
    ]);
  });

  test("a single-network mesh has none", () => {
    expect(pushFrom(SERVICE).networkGateways).toEqual([]);
  });
});

describe("proxy network", () => {
  test("node metadata NETWORK is the proxy's network and part of its config key", () => {
    const node = (md: Record<string, string>) =>
      proxyFromNode({
        id: "sidecar~10.1.0.5~a.app~app.svc.cluster.local",
        metadata: { NAMESPACE: "app", ...md },
      });
    expect(node({ NETWORK: "net1" }).network).toBe("net1");
    expect(node({}).network).toBeUndefined();
    expect(proxyConfigKey(node({ NETWORK: "net1" }))).not.toBe(proxyConfigKey(node({ NETWORK: "net2" })));
  });
});

describe("MeshConfig meshNetworks", () => {
  test("Istio's shape is valid", () => {
    expectValid(meshConfig(`  meshNetworks:
    networks:
      net1:
        endpoints: [{ fromCidr: 10.1.0.0/16 }]
        gateways:
          - { address: 198.18.1.1, port: 15443 }
          - { registryServiceName: eastwest.istio-system.svc.cluster.local, port: 15443 }
`));
  });

  test("a bad CIDR, a host name as address, a port out of range and both gateway kinds are errors", () => {
    const yaml = meshConfig(`  meshNetworks:
    networks:
      net1:
        endpoints: [{ fromCidr: 10.1.0.0/99 }]
        gateways:
          - { address: gw.example.com, port: 15443 }
          - { address: 198.18.1.1, port: 70000 }
          - { address: 198.18.1.1, registryServiceName: a.b.svc.cluster.local, port: 15443 }
`);
    const N = "spec.meshNetworks.networks.net1";
    expectErrorOn(yaml, `${N}.endpoints[0].fromCidr`, "must be an IP range");
    expectErrorOn(yaml, `${N}.gateways[0].address`, "must be an IP address");
    expectErrorOn(yaml, `${N}.gateways[1].port`, "70000");
  });

  test("fromRegistry and a gateway locality are accepted with a not-supported warning", () => {
    const warnings = diagnose(meshConfig(`  meshNetworks:
    networks:
      net1:
        endpoints: [{ fromRegistry: cluster1 }]
        gateways: [{ address: 198.18.1.1, port: 15443, locality: us-east/a }]
`)).filter((d) => d.severity === "warning");
    expect(warnings.map((d) => d.message).join("\n")).toContain('fromRegistry "cluster1" is not supported');
    expect(warnings.map((d) => d.message).join("\n")).toContain(
      "locality of a network gateway is not supported",
    );
  });
});

describe("SNI-DNAT clusters", () => {
  const push = pushFrom(
    SERVICE,
    `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: cross, namespace: istio-system }
spec:
  selector: { istio: eastwestgateway }
  servers:
    - port: { number: 15443, name: tls, protocol: TLS }
      tls: { mode: AUTO_PASSTHROUGH }
      hosts: ["*.local"]
`,
  );
  const router = proxyFromNode({
    id: "router~198.18.2.9~gw.istio-system~istio-system.svc.cluster.local",
    metadata: { NAMESPACE: "istio-system", LABELS: { istio: "eastwestgateway" } },
  });

  test("a router's AUTO_PASSTHROUGH server gets its outbound clusters renamed by SNI, without TLS", () => {
    const out = sniDnatClusters(push, router, buildClusters(push, router));
    expect(out.map((c) => c.name)).toEqual(["outbound_.80_._.svc.app.svc.cluster.local"]);
    expect(out[0]!.transportSocket).toBeUndefined();
    expect(out[0]!.edsClusterConfig?.serviceName).toBe("outbound|80||svc.app.svc.cluster.local");
  });

  test("a sidecar gets none", () => {
    const sidecar = proxyFromNode({
      id: "sidecar~10.1.0.5~a.app~app.svc.cluster.local",
      metadata: { NAMESPACE: "app" },
    });
    expect(sniDnatClusters(push, sidecar, buildClusters(push, sidecar))).toEqual([]);
  });
});
