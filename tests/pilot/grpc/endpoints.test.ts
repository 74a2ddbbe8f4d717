import { describe, expect, test } from "bun:test";
import { HealthStatus } from "#gen/envoy/config/core/v3/health_check_pb.ts";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { createConfigStore } from "../../../mod/galley/store.ts";
import { createPushContext } from "../../../mod/pilot/model/push_context.ts";
import type { Endpoint } from "../../../mod/pilot/model/service.ts";
import { buildGrpcEndpoints } from "../../../mod/pilot/translate/grpc/mod.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { pushFrom } from "../_push.ts";
import { destinationRule, ECHO, grpcProxy, serviceEntry, workloadEntry } from "./_fixture.ts";

function summary(cla: ClusterLoadAssignment) {
  return cla.endpoints.map((l) => ({
    locality: `${l.locality?.region}/${l.locality?.zone}/${l.locality?.subZone}`,
    weight: l.loadBalancingWeight,
    endpoints: l.lbEndpoints.map((e) => {
      const ep = e.hostIdentifier.value as {
        address: { address: { value: { address: string; portSpecifier: { value: number } } } };
      };
      return `${ep.address.address.value.address}:${ep.address.address.value.portSpecifier.value}*${e.loadBalancingWeight}`;
    }),
  }));
}

const MESH = [
  serviceEntry("echo", "test", ECHO),
  workloadEntry("a", "test", "echo", "10.0.0.1", { version: "v1", locality: "us/east/a" }),
  workloadEntry("b", "test", "echo", "10.0.0.2", { version: "v2", locality: "us/east/a", weight: 3 }),
  workloadEntry("c", "test", "echo", "10.0.0.3", { version: "v1", locality: "eu/west" }),
  workloadEntry("d", "test", "echo", "10.0.0.4", { version: "v1" }),
];

describe("buildGrpcEndpoints()", () => {
  test("groups endpoints by locality and weights every locality", () => {
    const push = pushFrom(...MESH, destinationRule());
    const [cla] = buildGrpcEndpoints(push, grpcProxy(), [`outbound|9000||${ECHO}`]);
    expect(cla!.clusterName).toBe(`outbound|9000||${ECHO}`);
    expect(summary(cla!)).toEqual([
      { locality: "//", weight: 1, endpoints: ["10.0.0.4:9000*1"] },
      { locality: "eu/west/", weight: 1, endpoints: ["10.0.0.3:9000*1"] },
      { locality: "us/east/a", weight: 4, endpoints: ["10.0.0.1:9000*1", "10.0.0.2:9000*3"] },
    ]);
    for (const l of cla!.endpoints) {
      expect(l.loadBalancingWeight).toBeGreaterThan(0);
      for (const e of l.lbEndpoints) expect(e.healthStatus).toBe(HealthStatus.HEALTHY);
    }
  });

  test("a subset cluster holds only the endpoints with the subset's labels", () => {
    const push = pushFrom(...MESH, destinationRule());
    const [v2] = buildGrpcEndpoints(push, grpcProxy(), [`outbound|9000|v2|${ECHO}`]);
    expect(summary(v2!)).toEqual([{ locality: "us/east/a", weight: 3, endpoints: ["10.0.0.2:9000*3"] }]);
  });

  test('"*" answers every cluster, and unknown names are left out', () => {
    const push = pushFrom(...MESH, destinationRule());
    expect(buildGrpcEndpoints(push, grpcProxy(), "*").map((c) => c.clusterName)).toEqual([
      `outbound|9000|v1|${ECHO}`,
      `outbound|9000|v2|${ECHO}`,
      `outbound|9000||${ECHO}`,
    ]);
    expect(
      buildGrpcEndpoints(push, grpcProxy(), [
        `outbound|9000|v3|${ECHO}`,
        "outbound|9000||nope.test.svc.cluster.local",
      ]),
    ).toEqual([]);
  });

  test("leaves out unhealthy endpoints, addresses that are not IPs, and repeats of an address", () => {
    const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
    store.sink("t").replace([{ origin: "m.yaml", content: serviceEntry("echo", "test", ECHO) }]);
    const base = createPushContext({ config: store.snapshot() });
    const svc = base.services[0]!;
    const ep = (address: string, healthy: boolean, locality?: string): Endpoint => ({
      hostname: ECHO,
      namespace: "test",
      servicePort: svc.ports[0]!,
      address,
      port: 9000,
      labels: { app: "echo" },
      weight: 1,
      healthy,
      tlsMode: "disabled",
      source: "test",
      ...(locality ? { locality } : {}),
    });
    const push = createPushContext({
      config: store.snapshot(),
      registries: [{
        services: [],
        workloads: [],
        endpoints: [
          ep("10.0.0.1", true, "r/z"),
          ep("10.0.0.1", true, "r/z/"),
          ep("10.0.0.2", false),
          ep("echo.example.com", true),
          ep("unix:///tmp/s", true),
          ep("2001:db8::1", true),
        ],
      }],
    });
    const [cla] = buildGrpcEndpoints(push, grpcProxy(), [`outbound|9000||${ECHO}`]);
    expect(summary(cla!)).toEqual([
      { locality: "//", weight: 1, endpoints: ["2001:db8::1:9000*1"] },
      { locality: "r/z/", weight: 1, endpoints: ["10.0.0.1:9000*1"] },
    ]);
  });
});
