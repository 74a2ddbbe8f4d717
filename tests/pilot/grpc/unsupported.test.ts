import { describe, expect, test } from "bun:test";
import { Cluster_LbPolicy } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { buildClusters } from "../../../mod/pilot/translate/mod.ts";
import { buildGrpcClusters, grpcUnsupported } from "../../../mod/pilot/translate/grpc/mod.ts";
import { pushFrom } from "../_push.ts";
import { destinationRule, ECHO, grpcProxy, MESH, virtualService } from "./_fixture.ts";

const fields = (push: ReturnType<typeof pushFrom>) =>
  grpcUnsupported(push, grpcProxy()).map((u) => `${u.resource} ${u.field}`);

describe("grpcUnsupported()", () => {
  test("is empty when gRPC expresses everything", () => {
    expect(grpcUnsupported(pushFrom(...MESH, destinationRule("tls: { mode: DISABLE }")), grpcProxy()))
      .toEqual([]);
  });

  test("names auto mTLS, which Envoy gets and proxyless clients only get from an explicit DestinationRule", () => {
    expect(fields(pushFrom(...MESH))).toEqual([`cluster outbound|9000||${ECHO} tls (auto mTLS)`]);
  });

  test("lists load-balancer settings gRPC has no counterpart for, per cluster", () => {
    const push = pushFrom(
      ...MESH,
      destinationRule(
        "loadBalancer:\n  simple: LEAST_REQUEST\n  warmup: { duration: 30s, minimumPercent: 10, aggression: 2 }\n  zoneAwareLbSetting: { enabled: true, minClusterSize: 3 }",
        "loadBalancer:\n  consistentHash: { httpCookie: { name: user, ttl: 0s }, maglev: { tableSize: 131 } }",
      ),
    );
    const got = fields(push);
    expect(got).toContain(`cluster outbound|9000||${ECHO} loadBalancer.simple`);
    expect(got).toContain(`cluster outbound|9000||${ECHO} loadBalancer.warmup`);
    expect(got).toContain(`cluster outbound|9000||${ECHO} loadBalancer.zoneAwareLbSetting`);
    expect(got).toContain(`cluster outbound|9000|v1|${ECHO} loadBalancer.consistentHash.httpCookie`);
    expect(got).toContain(`cluster outbound|9000|v1|${ECHO} loadBalancer.consistentHash.maglev`);
    // Envoy renders them: slow start, zone-aware routing, maglev.
    const envoy = new Map(buildClusters(push, grpcProxy()).map((c) => [c.name, c]));
    const top = envoy.get(`outbound|9000||${ECHO}`)!;
    expect(top.lbConfig.case).toBe("leastRequestLbConfig");
    expect(top.commonLbConfig?.localityConfigSpecifier.case).toBe("zoneAwareLbConfig");
    expect(envoy.get(`outbound|9000|v1|${ECHO}`)!.lbPolicy).toBe(Cluster_LbPolicy.MAGLEV);
    // gRPC gets what it can: round robin, and a ring hash for maglev.
    const grpc = new Map(buildGrpcClusters(push, grpcProxy()).map((c) => [c.name, c]));
    expect(grpc.get(`outbound|9000||${ECHO}`)!.lbPolicy).toBe(Cluster_LbPolicy.ROUND_ROBIN);
    expect(grpc.get(`outbound|9000|v1|${ECHO}`)!.lbPolicy).toBe(Cluster_LbPolicy.RING_HASH);
  });

  test("lists connection-pool limits gRPC does not read and TLS modes it cannot use", () => {
    const push = pushFrom(
      ...MESH,
      destinationRule(
        "connectionPool:\n  tcp: { maxConnections: 5 }\n  http: { http2MaxRequests: 10 }\ntls: { mode: SIMPLE }",
      ),
    );
    const got = fields(push);
    expect(got).toContain(`cluster outbound|9000||${ECHO} connectionPool.tcp.maxConnections`);
    expect(got).not.toContain(`cluster outbound|9000||${ECHO} connectionPool.http.http2MaxRequests`);
    expect(got).toContain(`cluster outbound|9000||${ECHO} tls.mode`);
  });

  test("lists route parts gRPC cannot express, by VirtualService rule", () => {
    const push = pushFrom(
      ...MESH,
      destinationRule(),
      virtualService(`
- match: [{ queryParams: { a: { exact: b } } }]
  route: [{ destination: { host: ${ECHO} } }]
- match: [{ headers: { x: { exact: r } } }]
  redirect: { uri: /elsewhere }
- retries: { attempts: 2, retryOn: "retriable-4xx,unavailable" }
  rewrite: { uri: /v2 }
  route: [{ destination: { host: ${ECHO} } }]`),
    );
    const name = `route ${ECHO}:9000 test/echo`;
    expect(fields(push).filter((f) => f.startsWith("route "))).toEqual([
      `${name} http[0].match[0]`,
      `${name} http[1].redirect`,
      `${name} http[2].retries.retryOn`,
      `${name} http[2].rewrite`,
    ]);
  });
});
