import { describe, expect, test } from "bun:test";
import { type DescMessage, equals, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import {
  buildGrpcClusters,
  buildGrpcEndpoints,
  buildGrpcListeners,
  buildGrpcRoutes,
} from "../../../mod/pilot/translate/grpc/mod.ts";
import { pushFrom } from "../_push.ts";
import { destinationRule, ECHO, grpcProxy, MESH, virtualService } from "./_fixture.ts";

function roundTrips<D extends DescMessage>(schema: D, msgs: MessageShape<D>[]): void {
  expect(msgs.length).toBeGreaterThan(0);
  for (const m of msgs) {
    const back = fromBinary(schema, toBinary(schema, m));
    expect(equals(schema, back, m)).toBe(true);
  }
}

describe("gRPC translation output", () => {
  const push = pushFrom(
    ...MESH,
    destinationRule(
      "loadBalancer:\n  consistentHash: { httpHeaderName: x-user }\noutlierDetection: { consecutive5xxErrors: 5, interval: 1s }\nconnectionPool:\n  http: { http2MaxRequests: 10 }",
    ),
    virtualService(`
- match: [{ headers: { end-user: { exact: jason } } }]
  fault: { delay: { fixedDelay: 1s, percentage: { value: 5 } }, abort: { grpcStatus: UNAVAILABLE, percentage: { value: 1 } } }
  retries: { attempts: 2, retryOn: unavailable, backoff: 10ms }
  timeout: 2s
  route: [{ destination: { host: ${ECHO}, subset: v2 } }]
- route:
  - { destination: { host: ${ECHO}, subset: v1 }, weight: 75 }
  - { destination: { host: ${ECHO}, subset: v2 }, weight: 25 }`),
  );

  test("every message survives toBinary/fromBinary unchanged", () => {
    const client = grpcProxy();
    const server = grpcProxy("test", "10.0.0.1");
    roundTrips(ListenerSchema, [
      ...buildGrpcListeners(push, client, "*"),
      ...buildGrpcListeners(push, server, "*"),
    ]);
    roundTrips(RouteConfigurationSchema, buildGrpcRoutes(push, client, "*"));
    roundTrips(ClusterSchema, buildGrpcClusters(push, client));
    roundTrips(ClusterLoadAssignmentSchema, buildGrpcEndpoints(push, client, "*"));
  });

  test("is deterministic: the same inputs give the same bytes, sorted by name", () => {
    const a = buildGrpcRoutes(push, grpcProxy(), "*").map((r) => toBinary(RouteConfigurationSchema, r));
    const b = buildGrpcRoutes(push, grpcProxy(), "*").map((r) => toBinary(RouteConfigurationSchema, r));
    expect(a).toEqual(b);
    const names = buildGrpcClusters(push, grpcProxy()).map((c) => c.name);
    expect(names).toEqual([...names].sort());
  });
});
