import { describe, expect, test } from "bun:test";
import { Cluster_DiscoveryType, Cluster_LbPolicy } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { buildGrpcClusters } from "../../../mod/pilot/translate/grpc/mod.ts";
import { pushFrom } from "../_push.ts";
import { destinationRule, ECHO, grpcProxy, MESH, serviceEntry } from "./_fixture.ts";

describe("buildGrpcClusters()", () => {
  test("one EDS-over-ADS cluster per service port and DestinationRule subset, named outbound|PORT|SUBSET|HOST", () => {
    const push = pushFrom(
      ...MESH,
      destinationRule(),
      serviceEntry(
        "other",
        "prod",
        "other.prod.svc.cluster.local",
        "[{ number: 80, name: grpc, protocol: GRPC }]",
      ),
    );
    const clusters = buildGrpcClusters(push, grpcProxy());
    // Sorted by name ("|" sorts after letters).
    expect(clusters.map((c) => c.name)).toEqual([
      "outbound|80||other.prod.svc.cluster.local",
      `outbound|9000|v1|${ECHO}`,
      `outbound|9000|v2|${ECHO}`,
      `outbound|9000||${ECHO}`,
    ]);
    for (const c of clusters) {
      expect(c.clusterDiscoveryType).toEqual({ case: "type", value: Cluster_DiscoveryType.EDS });
      expect(c.edsClusterConfig?.serviceName).toBe(c.name);
      expect(c.edsClusterConfig?.edsConfig?.configSourceSpecifier.case).toBe("ads");
      expect(c.lbPolicy).toBe(Cluster_LbPolicy.ROUND_ROBIN);
      expect(c.outlierDetection).toBeUndefined();
      // Istio's unlimited defaults, as Envoy's clusters have them (gRPC reads max_requests).
      expect(c.circuitBreakers?.thresholds.map((t) => t.maxRequests)).toEqual([4294967295]);
      expect(c.transportSocket).toBeUndefined();
    }
  });

  test("consistent hashing is a ring hash with the ring size clamped to what gRPC accepts", () => {
    const push = pushFrom(
      ...MESH,
      destinationRule(
        "loadBalancer:\n  consistentHash:\n    httpHeaderName: x-user\n    ringHash: { minimumRingSize: 100000000 }",
      ),
    );
    const c = buildGrpcClusters(push, grpcProxy()).find((x) => x.name === `outbound|9000||${ECHO}`)!;
    expect(c.lbPolicy).toBe(Cluster_LbPolicy.RING_HASH);
    expect(c.lbConfig.case).toBe("ringHashLbConfig");
    expect((c.lbConfig.value as { minimumRingSize?: bigint }).minimumRingSize).toBe(8_388_608n);
  });

  test("LEAST_REQUEST, which gRPC lacks, is ROUND_ROBIN", () => {
    const push = pushFrom(...MESH, destinationRule("loadBalancer: { simple: LEAST_REQUEST }"));
    expect(buildGrpcClusters(push, grpcProxy()).map((c) => c.lbPolicy)).toEqual([
      Cluster_LbPolicy.ROUND_ROBIN,
      Cluster_LbPolicy.ROUND_ROBIN,
      Cluster_LbPolicy.ROUND_ROBIN,
    ]);
  });

  test("outlier detection: consecutive errors become failure-percentage ejection, success-rate ejection is off", () => {
    const push = pushFrom(
      ...MESH,
      destinationRule(
        "outlierDetection:\n  consecutive5xxErrors: 3\n  interval: 500ms\n  baseEjectionTime: 30s\n  maxEjectionPercent: 100",
      ),
    );
    const od = buildGrpcClusters(push, grpcProxy()).find((x) => x.name === `outbound|9000||${ECHO}`)!
      .outlierDetection!;
    expect(od.consecutive5xx).toBe(3);
    expect(od.enforcingConsecutive5xx).toBe(100);
    expect(od.enforcingSuccessRate).toBe(0);
    expect(od.enforcingFailurePercentage).toBe(100);
    expect(od.failurePercentageRequestVolume).toBe(3);
    expect(od.failurePercentageMinimumHosts).toBe(1);
    expect(od.failurePercentageThreshold).toBe(50);
    expect(od.maxEjectionPercent).toBe(100);
    expect(od.interval).toMatchObject({ seconds: 0n, nanos: 500_000_000 });
    expect(od.baseEjectionTime).toMatchObject({ seconds: 30n, nanos: 0 });
  });

  test("circuit breakers carry max_requests from http2MaxRequests; a subset's policy overrides the rule's", () => {
    const push = pushFrom(
      ...MESH,
      destinationRule(
        "connectionPool:\n  http: { http2MaxRequests: 100 }",
        "connectionPool:\n  http: { http2MaxRequests: 7 }",
      ),
    );
    const byName = new Map(buildGrpcClusters(push, grpcProxy()).map((c) => [c.name, c]));
    const max = (n: string) =>
      byName.get(n)!.circuitBreakers?.thresholds.map((t) => [t.priority, t.maxRequests]);
    expect(max(`outbound|9000||${ECHO}`)).toEqual([[0, 100]]);
    expect(max(`outbound|9000|v1|${ECHO}`)).toEqual([[0, 7]]);
    expect(max(`outbound|9000|v2|${ECHO}`)).toEqual([[0, 100]]);
  });
});

describe("buildGrpcClusters() merges DestinationRule policy as Envoy does", () => {
  test("port-level settings replace the level above wholesale, for the rule and for a subset", () => {
    const push = pushFrom(
      ...MESH,
      destinationRule(
        "loadBalancer: { simple: RANDOM }\noutlierDetection: { consecutive5xxErrors: 5 }\ntls: { mode: ISTIO_MUTUAL }\nportLevelSettings:\n- port: { number: 9000 }\n  loadBalancer: { simple: ROUND_ROBIN }",
        "connectionPool:\n  http: { http2MaxRequests: 7 }",
      ),
    );
    const byName = new Map(buildGrpcClusters(push, grpcProxy()).map((c) => [c.name, c]));
    const top = byName.get(`outbound|9000||${ECHO}`)!;
    // Port 9000's settings name only a load balancer: no outlier detection, no TLS inherited.
    expect(top.outlierDetection).toBeUndefined();
    expect(top.transportSocket).toBeUndefined();
    const v1 = byName.get(`outbound|9000|v1|${ECHO}`)!;
    expect(v1.outlierDetection).toBeUndefined();
    expect(v1.circuitBreakers?.thresholds[0]?.maxRequests).toBe(7);
  });
});
