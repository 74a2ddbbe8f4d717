import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { simulate } from "../../../mod/pilot/simulate/simulate.ts";
import { buildListeners, mergeListeners } from "../../../mod/pilot/translate/listener.ts";
import {
  bindsItself,
  inboundTargets,
  ingressTarget,
  sidecarIngressPorts,
} from "../../../mod/pilot/translate/listener_inbound.ts";
import { socketAddress } from "../../../mod/pilot/translate/conversion.ts";
import { pushFrom, sidecar } from "../_push.ts";
import { readCase } from "./_golden.ts";

const { push, proxy } = readCase("sidecar_ingress_egress");

describe("Sidecar ingress listeners", () => {
  test("a captured ingress port gets chains in virtualInbound, replacing the served ports", () => {
    const r = simulate(push, proxy, { host: "10.70.0.5", port: 9080, direction: "inbound" });
    expect(r).toMatchObject({
      listener: "virtualInbound",
      filterChain: "inbound|9080||",
      cluster: "inbound|9080||",
    });
    // Port 80, which the workload's service declares, is no longer an inbound port.
    expect(simulate(push, proxy, { host: "10.70.0.5", port: 80, direction: "inbound" }).filterChain)
      .toBe("InboundPassthroughFilterChain");
  });

  test("captureMode NONE binds BIND_PORT itself and terminates the listener's own TLS", () => {
    const r = simulate(push, proxy, {
      host: "10.70.0.5",
      port: 9443,
      direction: "inbound",
      sni: "shop.example",
    });
    expect(r).toMatchObject({
      listener: "0.0.0.0_9443",
      filterChain: "inbound|9443||-tls",
      cluster: "inbound|9443||",
    });
    const l = buildListeners(push, proxy).find((x) => x.name === "0.0.0.0_9443")!;
    expect(l.bindToPort).toBeUndefined();
    expect(l.listenerFilters.map((f) => f.name)).toEqual([]);
    expect(l.filterChains[0]!.filterChainMatch?.destinationPort).toBeUndefined();
  });

  test("a captured ingress port with a bind address takes only connections to that address", () => {
    expect(simulate(push, proxy, { host: "10.70.0.5", port: 5432, direction: "inbound" }).cluster)
      .toBe("inbound|5432||");
    // Envoy narrows by destination port first: the port's chains all want 10.70.0.5, so none
    // takes a connection to another address (the passthrough chain is not consulted).
    expect(simulate(push, proxy, { host: "10.70.0.99", port: 5432, direction: "inbound" }).error)
      .toBe("no filter chain matches the connection");
  });

  test("ingressTarget() reads defaultEndpoint: loopback, the proxy's own address, a socket", () => {
    const p = proxyFromNode({
      id: "sidecar~10.1.0.4~a.ns~ns.svc.cluster.local",
      metadata: { INSTANCE_IPS: "10.1.0.4,fd00::4" },
    });
    expect(ingressTarget(undefined, 9080, p)).toEqual({ address: "127.0.0.1", port: 9080 });
    expect(ingressTarget("127.0.0.1:8080", 9080, p)).toEqual({ address: "127.0.0.1", port: 8080 });
    expect(ingressTarget("0.0.0.0:8080", 9080, p)).toEqual({ address: "10.1.0.4", port: 8080 });
    expect(ingressTarget("[::]:8080", 9080, p)).toEqual({ address: "fd00::4", port: 8080 });
    expect(ingressTarget("[::1]:8080", 9080, p)).toEqual({ address: "::1", port: 8080 });
    expect(ingressTarget("unix:///run/app.sock", 9080, p)).toEqual({
      address: "unix:///run/app.sock",
      port: 0,
    });
  });

  test("inboundTargets(): per ingress port its target, protocol and connection pool", () => {
    const targets = inboundTargets(push, proxy);
    expect(targets.map((t) => [t.port, t.target.address, t.target.port, t.servicePort.protocol])).toEqual([
      [9080, "127.0.0.1", 8080, "HTTP"],
      [9443, "127.0.0.1", 8443, "HTTP"],
      [5432, "unix:///var/run/shop-db.sock", 0, "TCP"],
    ]);
  });

  test("a listener's connectionPool wins over inboundConnectionPool; protocol from the port or its name", () => {
    const p = pushFrom(`
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: app }
spec:
  inboundConnectionPool: { tcp: { maxConnections: 10 } }
  ingress:
    - port: { number: 8080, name: grpc-api }
    - port: { number: 8081, protocol: "", name: plain }
      connectionPool: { tcp: { maxConnections: 99 } }
    - port: { number: 8443, protocol: HTTPS, name: https }
      tls: { mode: SIMPLE, serverCertificate: /etc/a.pem, privateKey: /etc/a-key.pem }
`);
    const ports = sidecarIngressPorts(p, sidecar("10.0.0.9", "app"))!;
    expect(ports.map((x) => [x.protocol, x.connectionPool?.tcp?.maxConnections])).toEqual([
      ["GRPC", 10],
      ["TCP", 99],
      ["HTTP", 10], // HTTPS behind the listener's own TLS is HTTP to the application
    ]);
  });
});

describe("Sidecar egress listeners", () => {
  test("captureMode NONE binds 127.0.0.1:PORT with the port's HTTP routes", () => {
    const r = simulate(push, proxy, {
      host: "127.0.0.1",
      port: 9080,
      headers: { host: "reviews.shop.svc.cluster.local" },
    });
    expect(r).toMatchObject({
      listener: "127.0.0.1_9080",
      routeConfig: "9080",
      cluster: "outbound|9080||reviews.shop.svc.cluster.local",
    });
  });

  test("a TCP egress listener on its bind address serves only the hosts it lists", () => {
    expect(simulate(push, proxy, { host: "127.0.0.2", port: 5432 })).toMatchObject({
      listener: "127.0.0.2_5432",
      cluster: "outbound|5432||db.shop.svc.cluster.local",
    });
    // Captured traffic on the port still reaches the services the catch-all listener admits.
    expect(simulate(push, proxy, { host: "cache.shop.svc.cluster.local", port: 5432 }).listener)
      .toBe("0.0.0.0_5432");
  });

  test("on a VM without capture (INTERCEPTION_MODE NONE) DEFAULT listeners are bound", () => {
    const yaml = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: app }
spec:
  ingress:
    - port: { number: 9080, protocol: HTTP, name: http }
      defaultEndpoint: 127.0.0.1:8080
  egress:
    - port: { number: 5432, protocol: TCP, name: tcp }
      hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: app }
spec:
  hosts: [db.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 5432, name: tcp, protocol: TCP }]
  endpoints: [{ address: 10.0.2.1 }]
`;
    const p = pushFrom(yaml);
    const vm = proxyFromNode({
      id: "sidecar~10.0.0.9~vm-1.app~app.svc.cluster.local",
      metadata: { NAMESPACE: "app", INTERCEPTION_MODE: "NONE" },
    });
    const captured = sidecar("10.0.0.9", "app");
    const names = (x: typeof vm) => buildListeners(p, x).map((l) => l.name);
    expect(names(vm)).toContain("0.0.0.0_9080");
    expect(names(vm)).toContain("127.0.0.1_5432");
    expect(names(captured)).not.toContain("0.0.0.0_9080");
    expect(names(captured)).not.toContain("127.0.0.1_5432");
    expect(simulate(p, vm, { host: "127.0.0.1", port: 5432 }).cluster).toBe(
      "outbound|5432||db.app.svc.cluster.local",
    );
    expect(simulate(p, vm, { host: "10.0.0.9", port: 9080, direction: "inbound" })).toMatchObject({
      listener: "0.0.0.0_9080",
      cluster: "inbound|9080||",
    });
  });

  test("bindsItself(): NONE binds, IPTABLES is captured, DEFAULT follows the proxy", () => {
    const vm = proxyFromNode({
      id: "sidecar~10.0.0.9~vm.app~app.svc.cluster.local",
      metadata: { INTERCEPTION_MODE: "NONE" },
    });
    const pod = sidecar("10.0.0.9", "app");
    expect([
      bindsItself("NONE", pod),
      bindsItself("IPTABLES", vm),
      bindsItself(undefined, vm),
      bindsItself("DEFAULT", pod),
    ])
      .toEqual([true, false, true, false]);
  });
});

describe("mergeListeners()", () => {
  const listener = (name: string, ip: string, port: number) =>
    create(ListenerSchema, { name, address: socketAddress(ip, port) });

  test("a later listener replaces an earlier one with its name or its address", () => {
    const merged = mergeListeners([
      [
        listener("0.0.0.0_9080", "0.0.0.0", 9080),
        listener("a", "10.0.0.1", 80),
        listener("b", "10.0.0.2", 80),
      ],
      [listener("0.0.0.0_9080", "0.0.0.0", 9080), listener("c", "10.0.0.1", 80)],
    ]);
    expect(merged.map((l) => l.name).sort()).toEqual(["0.0.0.0_9080", "b", "c"]);
  });
});
