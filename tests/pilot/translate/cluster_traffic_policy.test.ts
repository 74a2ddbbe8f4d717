import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import {
  Cluster_DiscoveryType,
  Cluster_LbPolicy,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import type { DestinationRuleSpec, LoadBalancerSettings } from "../../../mod/api/kinds/networking.ts";
import {
  applyConnectionPool,
  applyLoadBalancer,
  applyLocalityLbConfig,
  applyOutlierDetection,
  httpProtocolOptions,
  tunnelingConfig,
} from "../../../mod/pilot/translate/cluster_traffic_policy.ts";
import { mergeTrafficPolicy } from "../../../mod/api/mod.ts";
import { parseConfig } from "../../../mod/galley/parse.ts";
import { validateResource } from "../../../mod/galley/validate.ts";

const eds = () =>
  create(ClusterSchema, {
    name: "c",
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.EDS },
  });

describe("mergeTrafficPolicy()", () => {
  const rule: DestinationRuleSpec = {
    host: "svc",
    trafficPolicy: {
      loadBalancer: { simple: "RANDOM" },
      outlierDetection: { consecutive5xxErrors: 5 },
      tls: { mode: "ISTIO_MUTUAL" },
      portLevelSettings: [{ port: { number: 9090 }, loadBalancer: { simple: "ROUND_ROBIN" } }],
    },
    subsets: [
      {
        name: "v2",
        labels: { version: "v2" },
        trafficPolicy: {
          connectionPool: { tcp: { maxConnections: 7 } },
          portLevelSettings: [{ port: { number: 8080 }, tls: { mode: "DISABLE" } }],
        },
      },
    ],
  };

  test("mergeTrafficPolicy() uses the top-level policy for ports without port-level settings", () => {
    expect(mergeTrafficPolicy(rule, 80)).toEqual({
      loadBalancer: { simple: "RANDOM" },
      connectionPool: undefined,
      outlierDetection: { consecutive5xxErrors: 5 },
      tls: { mode: "ISTIO_MUTUAL" },
    });
  });

  test("mergeTrafficPolicy() replaces the whole policy with matching port-level settings", () => {
    expect(mergeTrafficPolicy(rule, 9090)).toEqual({
      loadBalancer: { simple: "ROUND_ROBIN" },
      connectionPool: undefined,
      outlierDetection: undefined,
      tls: undefined,
    });
  });

  test("mergeTrafficPolicy() overrides per part with the subset's policy, then its port-level settings", () => {
    expect(mergeTrafficPolicy(rule, 80, "v2")).toEqual({
      loadBalancer: { simple: "RANDOM" },
      connectionPool: { tcp: { maxConnections: 7 } },
      outlierDetection: { consecutive5xxErrors: 5 },
      tls: { mode: "ISTIO_MUTUAL" },
    });
    expect(mergeTrafficPolicy(rule, 8080, "v2").tls).toEqual({ mode: "DISABLE" });
    expect(mergeTrafficPolicy(rule, 8080, "v2").loadBalancer).toBeUndefined();
    expect(mergeTrafficPolicy(undefined, 80)).toEqual({
      loadBalancer: undefined,
      connectionPool: undefined,
      outlierDetection: undefined,
      tls: undefined,
    });
  });
});

describe("applyLoadBalancer()", () => {
  test("applyLoadBalancer() defaults to LEAST_REQUEST and maps simple algorithms", () => {
    const cases: Array<[string | undefined, Cluster_LbPolicy]> = [
      [undefined, Cluster_LbPolicy.LEAST_REQUEST],
      ["LEAST_REQUEST", Cluster_LbPolicy.LEAST_REQUEST],
      ["LEAST_CONN", Cluster_LbPolicy.LEAST_REQUEST],
      ["ROUND_ROBIN", Cluster_LbPolicy.ROUND_ROBIN],
      ["RANDOM", Cluster_LbPolicy.RANDOM],
    ];
    for (const [simple, want] of cases) {
      const c = eds();
      applyLoadBalancer(c, simple ? { simple: simple as "RANDOM" } : undefined);
      expect(c.lbPolicy).toBe(want);
    }
  });

  test("applyLoadBalancer() turns PASSTHROUGH into an ORIGINAL_DST cluster without EDS", () => {
    const c = eds();
    c.edsClusterConfig = create(ClusterSchema, {}).edsClusterConfig;
    applyLoadBalancer(c, { simple: "PASSTHROUGH" });
    expect(c.clusterDiscoveryType).toEqual({ case: "type", value: Cluster_DiscoveryType.ORIGINAL_DST });
    expect(c.lbPolicy).toBe(Cluster_LbPolicy.CLUSTER_PROVIDED);
    expect(c.edsClusterConfig).toBeUndefined();
  });

  test("applyLoadBalancer() uses RING_HASH (1024 by default) or MAGLEV for consistent hashing", () => {
    const ring = eds();
    applyLoadBalancer(ring, { consistentHash: { httpHeaderName: "x-user" } });
    expect(ring.lbPolicy).toBe(Cluster_LbPolicy.RING_HASH);
    expect(ring.lbConfig.case === "ringHashLbConfig" && ring.lbConfig.value.minimumRingSize).toBe(1024n);
    const maglev = eds();
    applyLoadBalancer(maglev, { consistentHash: { useSourceIp: true, maglev: { tableSize: 131 } } });
    expect(maglev.lbPolicy).toBe(Cluster_LbPolicy.MAGLEV);
    expect(maglev.lbConfig.case === "maglevLbConfig" && maglev.lbConfig.value.tableSize).toBe(131n);
  });

  test("applyLoadBalancer() sets slow start from warmup: window, aggression and minimum weight", () => {
    const c = eds();
    const lb = { simple: "LEAST_REQUEST", warmup: { duration: "1m", minimumPercent: 10, aggression: 2 } };
    applyLoadBalancer(c, lb as LoadBalancerSettings);
    const ss = c.lbConfig.case === "leastRequestLbConfig" ? c.lbConfig.value.slowStartConfig : undefined;
    expect(ss?.slowStartWindow?.seconds).toBe(60n);
    expect(ss?.aggression?.defaultValue).toBe(2);
    expect(ss?.minWeightPercent?.value).toBe(10);
    const random = eds();
    applyLoadBalancer(random, { simple: "RANDOM", warmup: { duration: "1m" } } as LoadBalancerSettings);
    expect(random.lbConfig.case).toBeUndefined();
  });

  test("applyLoadBalancer() sets slow start from warmupDurationSecs", () => {
    const c = eds();
    applyLoadBalancer(c, { simple: "ROUND_ROBIN", warmupDurationSecs: "45s" });
    expect(
      c.lbConfig.case === "roundRobinLbConfig" && c.lbConfig.value.slowStartConfig?.slowStartWindow?.seconds,
    ).toBe(45n);
  });
});

describe("applyConnectionPool()", () => {
  test("applyConnectionPool() sets unlimited circuit breakers by default", () => {
    const c = eds();
    applyConnectionPool(c, undefined);
    expect(c.circuitBreakers?.thresholds[0]).toMatchObject({
      maxConnections: 4294967295,
      maxPendingRequests: 4294967295,
      maxRequests: 4294967295,
      maxRetries: 4294967295,
      trackRemaining: true,
    });
  });

  test("applyConnectionPool() maps TCP and HTTP limits, connect timeout and keepalive", () => {
    const c = eds();
    applyConnectionPool(c, {
      tcp: {
        maxConnections: 10,
        connectTimeout: "300ms",
        tcpKeepalive: { probes: 2, time: "1m", interval: "5s" },
      },
      http: { http1MaxPendingRequests: 20, http2MaxRequests: 30, maxRetries: 4 },
    });
    expect(c.circuitBreakers?.thresholds[0]).toMatchObject({
      maxConnections: 10,
      maxPendingRequests: 20,
      maxRequests: 30,
      maxRetries: 4,
    });
    expect(c.connectTimeout).toMatchObject({ seconds: 0n, nanos: 300_000_000 });
    expect(c.upstreamConnectionOptions?.tcpKeepalive).toMatchObject({
      keepaliveProbes: 2,
      keepaliveTime: 60,
      keepaliveInterval: 5,
    });
  });
});

describe("httpProtocolOptions()", () => {
  const http = { name: "http", number: 80, protocol: "HTTP" as const };
  test("httpProtocolOptions() is empty for plain HTTP and TCP ports", () => {
    expect(httpProtocolOptions(http, undefined)).toBeUndefined();
    expect(
      httpProtocolOptions({ name: "tcp", number: 5432, protocol: "TCP" }, { http: { idleTimeout: "1s" } }),
    )
      .toBeUndefined();
  });

  test("httpProtocolOptions() upgrades to HTTP/2 on request and carries pool limits", () => {
    const o = httpProtocolOptions(http, {
      http: { h2UpgradePolicy: "UPGRADE", idleTimeout: "5s", maxRequestsPerConnection: 3 },
    })!;
    expect(o.upstreamProtocolOptions.case).toBe("explicitHttpConfig");
    expect(o.commonHttpProtocolOptions?.idleTimeout?.seconds).toBe(5n);
    expect(o.commonHttpProtocolOptions?.maxRequestsPerConnection).toBe(3);
    const grpc = httpProtocolOptions({ name: "grpc", number: 9, protocol: "GRPC" }, {
      http: { h2UpgradePolicy: "DO_NOT_UPGRADE" },
    });
    expect(grpc).toBeUndefined();
    const client = httpProtocolOptions(http, { http: { useClientProtocol: true } })!;
    expect(client.upstreamProtocolOptions.case).toBe("useDownstreamProtocolConfig");
  });
});

describe("applyOutlierDetection()", () => {
  test("applyOutlierDetection() enforces 5xx and gateway errors and sets the panic threshold", () => {
    const c = eds();
    applyOutlierDetection(c, {
      consecutive5xxErrors: 5,
      consecutiveGatewayErrors: 0,
      interval: "10s",
      baseEjectionTime: "30s",
      maxEjectionPercent: 50,
    });
    expect(c.outlierDetection).toMatchObject({
      consecutive5xx: 5,
      enforcingConsecutive5xx: 100,
      consecutiveGatewayFailure: 0,
      enforcingConsecutiveGatewayFailure: 0,
      enforcingSuccessRate: 0,
      maxEjectionPercent: 50,
    });
    expect(c.outlierDetection?.interval?.seconds).toBe(10n);
    expect(c.commonLbConfig?.healthyPanicThreshold?.value).toBe(0);
    const none = eds();
    applyOutlierDetection(none, undefined);
    expect(none.outlierDetection).toBeUndefined();
  });
});

describe("applyLocalityLbConfig()", () => {
  test("applyLocalityLbConfig() needs distribute, or failover with outlier detection", () => {
    const failoverOnly = eds();
    applyLocalityLbConfig(failoverOnly, { localityLbSetting: { failover: [{ from: "a", to: "b" }] } });
    expect(failoverOnly.commonLbConfig).toBeUndefined();
    const withOutlier = eds();
    applyOutlierDetection(withOutlier, { consecutive5xxErrors: 1 });
    applyLocalityLbConfig(withOutlier, { localityLbSetting: { failover: [{ from: "a", to: "b" }] } });
    expect(withOutlier.commonLbConfig?.localityConfigSpecifier.case).toBe("localityWeightedLbConfig");
    const distribute = eds();
    applyLocalityLbConfig(distribute, { localityLbSetting: { distribute: [{ from: "*", to: { a: 100 } }] } });
    expect(distribute.commonLbConfig?.localityConfigSpecifier.case).toBe("localityWeightedLbConfig");
    const disabled = eds();
    applyLocalityLbConfig(disabled, {
      localityLbSetting: { enabled: false, distribute: [{ from: "*", to: { a: 100 } }] },
    });
    expect(disabled.commonLbConfig).toBeUndefined();
  });
});

describe("applyLocalityLbConfig() and zoneAwareLbSetting", () => {
  test("zoneAwareLbSetting turns on Envoy's zone-aware routing with its minimum cluster size", () => {
    const c = eds();
    applyLocalityLbConfig(
      c,
      { zoneAwareLbSetting: { enabled: true, minClusterSize: 3 } } as LoadBalancerSettings,
    );
    const spec = c.commonLbConfig?.localityConfigSpecifier;
    expect(spec?.case).toBe("zoneAwareLbConfig");
    if (spec?.case !== "zoneAwareLbConfig") return;
    expect(spec.value.minClusterSize).toBe(3n);
    expect(spec.value.routingEnabled?.value).toBe(100);
    const off = eds();
    applyLocalityLbConfig(off, { zoneAwareLbSetting: { enabled: false } } as LoadBalancerSettings);
    expect(off.commonLbConfig).toBeUndefined();
  });

  test("locality weights win over zone-aware routing (one choice in Envoy)", () => {
    const c = eds();
    applyLocalityLbConfig(c, {
      localityLbSetting: { distribute: [{ from: "r/*", to: { "r/a/*": 100 } }] },
      zoneAwareLbSetting: { enabled: true },
    } as LoadBalancerSettings);
    expect(c.commonLbConfig?.localityConfigSpecifier.case).toBe("localityWeightedLbConfig");
  });
});

describe("DestinationRule fields beyond the pool limits", () => {
  test("applyConnectionPool() sets the retry budget with Istio's defaults for what is unset", () => {
    const c = eds();
    applyConnectionPool(c, undefined, { percent: 25, minRetryConcurrency: 5 });
    expect(c.circuitBreakers?.thresholds[0]?.retryBudget).toMatchObject({
      budgetPercent: { value: 25 },
      minRetryConcurrency: 5,
    });
    const d = eds();
    applyConnectionPool(d, undefined, {});
    expect(d.circuitBreakers?.thresholds[0]?.retryBudget).toMatchObject({
      budgetPercent: { value: 20 },
      minRetryConcurrency: 3,
    });
    const none = eds();
    applyConnectionPool(none, undefined);
    expect(none.circuitBreakers?.thresholds[0]?.retryBudget).toBeUndefined();
  });

  test("httpProtocolOptions() sends HTTP/2 keepalive pings on HTTP/2 upstreams only", () => {
    const pool = { http: { http2KeepAlive: { interval: "15s", timeout: "5s" } } };
    const h2 = httpProtocolOptions({ name: "grpc", number: 9, protocol: "GRPC" }, pool)!;
    const cfg = h2.upstreamProtocolOptions.case === "explicitHttpConfig"
      ? h2.upstreamProtocolOptions.value.protocolConfig
      : undefined;
    expect(cfg?.case).toBe("http2ProtocolOptions");
    expect(cfg?.case === "http2ProtocolOptions" ? cfg.value.connectionKeepalive : undefined).toMatchObject({
      interval: { seconds: 15n },
      timeout: { seconds: 5n },
    });
    expect(httpProtocolOptions({ name: "http", number: 80, protocol: "HTTP" }, pool)).toBeUndefined();
  });

  test("tunnelingConfig() names the target as host:port and uses POST only when asked", () => {
    expect(tunnelingConfig({ targetHost: "db.example.com", targetPort: 5432 })).toMatchObject({
      hostname: "db.example.com:5432",
      usePost: false,
    });
    expect(tunnelingConfig({ protocol: "POST", targetHost: "2001:db8::1", targetPort: 443 })).toMatchObject({
      hostname: "[2001:db8::1]:443",
      usePost: true,
    });
  });

  test("applyLocalityLbConfig() weights localities for failoverPriority with outlier detection", () => {
    const lb: LoadBalancerSettings = { localityLbSetting: { failoverPriority: ["tier"] } };
    const c = eds();
    applyOutlierDetection(c, { consecutive5xxErrors: 3 });
    applyLocalityLbConfig(c, lb);
    expect(c.commonLbConfig?.localityConfigSpecifier.case).toBe("localityWeightedLbConfig");
    const without = eds();
    applyLocalityLbConfig(without, lb);
    expect(without.commonLbConfig?.localityConfigSpecifier.case).toBeUndefined();
  });
});

describe("DestinationRule fields meshd refuses with a warning", () => {
  const warnings = (trafficPolicy: string) => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: r, namespace: ns }
spec:
  host: r.ns.svc.cluster.local
  trafficPolicy: ${trafficPolicy}
`;
    return parseConfig(yaml, "dr.yaml").resources.flatMap((r) => validateResource(r))
      .filter((d) => d.severity === "warning").map((d) => [d.field, d.message]);
  };

  test("zoneAwareLbSetting failover and failoverPriority: named at each field, enabled and minClusterSize kept", () => {
    const got = warnings(
      "{ loadBalancer: { zoneAwareLbSetting: { enabled: true, minClusterSize: 2, " +
        "failover: [{ from: r1, to: r2 }], failoverPriority: [topology.istio.io/network] } } }",
    );
    const at = "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting";
    expect(got.map(([f]) => f)).toEqual([
      `${at}.failoverPriority`,
      `${at}.failover[0].from`,
      `${at}.failover[0].to`,
    ]);
    for (const [, m] of got) expect(m).toContain("not supported by meshd");
    expect(warnings("{ loadBalancer: { zoneAwareLbSetting: { enabled: true, minClusterSize: 2 } } }"))
      .toEqual([]);
  });

  test("retryBudget.budgetInterval (Envoy's retry budget has no interval); percent and minRetryConcurrency kept", () => {
    expect(warnings("{ retryBudget: { percent: 20, minRetryConcurrency: 3, budgetInterval: 10s } }")).toEqual(
      [
        ["spec.trafficPolicy.retryBudget.budgetInterval", expect.stringContaining("not supported by meshd")],
      ],
    );
    expect(warnings("{ retryBudget: { percent: 20, minRetryConcurrency: 3 } }")).toEqual([]);
  });
});
