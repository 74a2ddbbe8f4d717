/**
 * Proxyless gRPC in a multi-network mesh (endpoints split by the client's network as Envoy's
 * are, and the gateway hop listed as unsupported) and gRPC servers selected by a Sidecar with
 * `ingress` listeners (server listeners follow the ingress ports).
 */
import { describe, expect, test } from "bun:test";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { buildEndpoints } from "../../../mod/pilot/translate/endpoint.ts";
import {
  buildGrpcEndpoints,
  buildGrpcListeners,
  grpcUnsupported,
} from "../../../mod/pilot/translate/grpc/mod.ts";
import { pushFrom } from "../_push.ts";
import { ECHO, MESH } from "./_fixture.ts";

const TWO_NETWORKS = `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  meshNetworks:
    networks:
      net2:
        gateways:
          - { address: 198.18.2.100, port: 15443 }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo, namespace: test }
spec:
  hosts: [${ECHO}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9000, name: grpc, protocol: GRPC }]
  endpoints:
    - { address: 10.1.0.1, network: net1, serviceAccount: echo }
    - { address: 10.2.0.1, network: net2, serviceAccount: echo }
    - { address: 10.2.0.2, network: net2, serviceAccount: echo }
`;

const CLUSTER = `outbound|9000||${ECHO}`;

function client(network?: string) {
  return proxyFromNode({
    id: "sidecar~10.1.0.9~client.test~test.svc.cluster.local",
    metadata: { GENERATOR: "grpc", NAMESPACE: "test", ...(network ? { NETWORK: network } : {}) },
  });
}

/** "ADDRESS:PORT wWEIGHT" per host of the named cluster. */
function hosts(all: readonly ClusterLoadAssignment[], cluster: string): string[] {
  const cla = all.find((c) => c.clusterName === cluster);
  if (!cla) throw new Error(`no assignment ${cluster}`);
  return cla.endpoints.flatMap((g) =>
    g.lbEndpoints.map((lb) => {
      const a = lb.hostIdentifier.case === "endpoint" ? lb.hostIdentifier.value.address?.address : undefined;
      const sa = a?.case === "socketAddress" ? a.value : undefined;
      const port = sa?.portSpecifier.case === "portValue" ? sa.portSpecifier.value : 0;
      return `${sa?.address}:${port} w${lb.loadBalancingWeight}`;
    })
  ).sort();
}

describe("proxyless gRPC in two networks", () => {
  const push = pushFrom(TWO_NETWORKS);

  test("a client in net1 gets net2's endpoints as net2's gateway, as Envoy does", () => {
    const grpc = buildGrpcEndpoints(push, client("net1"), [CLUSTER]);
    expect(hosts(grpc, CLUSTER)).toEqual(["10.1.0.1:9000 w1", "198.18.2.100:15443 w2"]);
    expect(hosts(grpc, CLUSTER)).toEqual(hosts(buildEndpoints(push, client("net1")), CLUSTER));
  });

  test("the gateway hop is listed: it routes by an SNI gRPC clients do not send", () => {
    const gaps = grpcUnsupported(push, client("net1")).filter((g) =>
      g.resource === `cluster ${CLUSTER}` && g.field.startsWith("endpoints")
    );
    expect(gaps.map((g) => g.field)).toEqual(["endpoints (network net2)"]);
    expect(gaps[0]!.reason).toContain("198.18.2.100:15443");
    expect(gaps[0]!.reason).toContain(`outbound_.9000_._.${ECHO}`);
  });

  test("a client in net2 reaches net2 directly and net1 (no gateway) directly; nothing listed", () => {
    const grpc = buildGrpcEndpoints(push, client("net2"), [CLUSTER]);
    expect(hosts(grpc, CLUSTER)).toEqual(["10.1.0.1:9000 w1", "10.2.0.1:9000 w1", "10.2.0.2:9000 w1"]);
    expect(grpcUnsupported(push, client("net2")).filter((g) => g.field.startsWith("endpoints"))).toEqual([]);
  });

  test("a client without a network gets every endpoint directly", () => {
    const grpc = buildGrpcEndpoints(push, client(), [CLUSTER]);
    expect(hosts(grpc, CLUSTER)).toEqual(["10.1.0.1:9000 w1", "10.2.0.1:9000 w1", "10.2.0.2:9000 w1"]);
  });
});

/** The echo v1 workload (10.0.0.1, serving 7001) as a proxyless gRPC server. */
const server = () =>
  proxyFromNode({
    id: "sidecar~10.0.0.1~echo-v1.test~test.svc.cluster.local",
    metadata: { GENERATOR: "grpc", NAMESPACE: "test", LABELS: { app: "echo", version: "v1" } },
  });

function sidecarWith(ingress: string, extra = ""): string {
  return `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: echo, namespace: test }
spec:
  workloadSelector: { labels: { app: echo } }
${extra}  ingress:
${ingress.trim().replace(/^/gm, "    ")}
`;
}

const PREFIX = "xds.istio.io/grpc/lds/inbound/";

describe("gRPC server listeners follow Sidecar ingress", () => {
  test("without a Sidecar the served port is the instance's", () => {
    const names = buildGrpcListeners(pushFrom(...MESH), server(), "*").map((l) => l.name);
    expect(names.filter((n) => n.startsWith(PREFIX))).toEqual([`${PREFIX}10.0.0.1:7001`]);
  });

  test("ingress ports replace the served ones, for '*' and for requested names", () => {
    const push = pushFrom(...MESH, sidecarWith("- port: { number: 9443, name: grpc, protocol: GRPC }"));
    const all = buildGrpcListeners(push, server(), "*").map((l) => l.name);
    expect(all.filter((n) => n.startsWith(PREFIX))).toEqual([`${PREFIX}10.0.0.1:9443`]);
    const asked = buildGrpcListeners(push, server(), [`${PREFIX}0.0.0.0:7001`, `${PREFIX}0.0.0.0:9443`]);
    expect(asked.map((l) => l.name)).toEqual([`${PREFIX}0.0.0.0:9443`]);
    const addr = asked[0]!.address?.address;
    expect(addr?.case === "socketAddress" && addr.value.address).toBe("0.0.0.0");
    expect(grpcUnsupported(push, server()).filter((g) => g.resource === "server listeners")).toEqual([]);
  });

  test("a bind address restricts the listener to that address", () => {
    const push = pushFrom(
      ...MESH,
      sidecarWith("- port: { number: 9443, name: grpc, protocol: GRPC }\n  bind: 10.0.0.1"),
    );
    expect(buildGrpcListeners(push, server(), "*").map((l) => l.name).filter((n) => n.startsWith(PREFIX)))
      .toEqual([`${PREFIX}10.0.0.1:9443`]);
    const asked = buildGrpcListeners(push, server(), [`${PREFIX}0.0.0.0:9443`, `${PREFIX}10.0.0.1:9443`]);
    expect(asked.map((l) => l.name)).toEqual([`${PREFIX}10.0.0.1:9443`]);
  });

  test("what a gRPC server cannot do of an ingress listener is listed", () => {
    const push = pushFrom(
      ...MESH,
      sidecarWith(
        `
- port: { number: 9443, name: tcp, protocol: TCP }
  defaultEndpoint: 127.0.0.1:8080
  captureMode: IPTABLES
  connectionPool: { tcp: { maxConnections: 5 } }
- port: { number: 9444, name: https, protocol: HTTPS }
  tls: { mode: SIMPLE, serverCertificate: /etc/cert.pem, privateKey: /etc/key.pem }
`,
        "  inboundConnectionPool: { http: { http1MaxPendingRequests: 3 } }\n",
      ),
    );
    const gaps = grpcUnsupported(push, server()).filter((g) => g.resource === "server listeners");
    expect(gaps.map((g) => g.field)).toEqual([
      "Sidecar test/echo inboundConnectionPool",
      "Sidecar test/echo ingress[0].captureMode",
      "Sidecar test/echo ingress[0].connectionPool",
      "Sidecar test/echo ingress[0].defaultEndpoint",
      "Sidecar test/echo ingress[0].port.protocol",
      "Sidecar test/echo ingress[1].port.protocol",
      "Sidecar test/echo ingress[1].tls",
    ]);
    // Both ports are still served (as gRPC).
    expect(buildGrpcListeners(push, server(), "*").map((l) => l.name).filter((n) => n.startsWith(PREFIX)))
      .toEqual([`${PREFIX}10.0.0.1:9443`, `${PREFIX}10.0.0.1:9444`]);
  });
});
