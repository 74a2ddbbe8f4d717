import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { buildGrpcListeners } from "../../../mod/pilot/translate/grpc/mod.ts";
import { pushFrom } from "../_push.ts";
import { ECHO, grpcProxy, MESH, serviceEntry, virtualService, workloadEntry } from "./_fixture.ts";

function hcmOf(l: Listener) {
  const any = l.apiListener?.apiListener ??
    (l.filterChains[0]?.filters[0]?.configType.case === "typedConfig"
      ? l.filterChains[0].filters[0].configType.value
      : undefined);
  const hcm = any && anyUnpack(any, HttpConnectionManagerSchema);
  if (!hcm) throw new Error(`listener ${l.name} has no HttpConnectionManager`);
  return hcm;
}

describe("buildGrpcListeners()", () => {
  test("names API listeners HOST:PORT, with the short forms a client in its namespace may dial", () => {
    const push = pushFrom(
      ...MESH,
      serviceEntry(
        "other",
        "prod",
        "other.prod.svc.cluster.local",
        "[{ number: 80, name: grpc, protocol: GRPC }]",
      ),
      serviceEntry("ext", "test", "api.example.com", "[{ number: 443, name: grpc, protocol: GRPC }]"),
      serviceEntry("wild", "test", '"*.wild.example.com"', "[{ number: 443, name: grpc, protocol: GRPC }]"),
    );
    const names = buildGrpcListeners(push, grpcProxy("test"), "*").map((l) => l.name);
    expect(names).toEqual([
      "api.example.com:443",
      "echo.test.svc.cluster.local:9000",
      "echo.test.svc:9000",
      "echo.test:9000",
      "echo:9000",
      "other.prod.svc.cluster.local:80",
      "other.prod.svc:80",
      "other.prod:80",
    ]);
  });

  test("an API listener takes its routes over ADS under its own name, with the router last", () => {
    const push = pushFrom(...MESH);
    const [l] = buildGrpcListeners(push, grpcProxy(), ["echo:9000"]);
    expect(l!.name).toBe("echo:9000");
    expect(l!.address).toBeUndefined();
    const hcm = hcmOf(l!);
    expect(hcm.routeSpecifier.case).toBe("rds");
    const rds = hcm.routeSpecifier.value as {
      routeConfigName: string;
      configSource: { configSourceSpecifier: { case: string } };
    };
    expect(rds.routeConfigName).toBe("echo:9000");
    expect(rds.configSource.configSourceSpecifier.case).toBe("ads");
    expect(
      hcm.httpFilters.map((f) => [f.name, f.configType.case === "typedConfig" && f.configType.value.typeUrl]),
    ).toEqual([
      ["envoy.filters.http.router", "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"],
    ]);
  });

  test("adds the fault filter before the router when a route of the listener injects faults", () => {
    const push = pushFrom(
      ...MESH,
      virtualService(
        `- fault: { abort: { grpcStatus: UNAVAILABLE, percentage: { value: 10 } } }\n  route: [{ destination: { host: ${ECHO} } }]`,
      ),
    );
    const [l] = buildGrpcListeners(push, grpcProxy(), [`${ECHO}:9000`]);
    expect(
      hcmOf(l!).httpFilters.map((
        f,
      ) => [f.name, f.configType.case === "typedConfig" && f.configType.value.typeUrl]),
    ).toEqual([
      ["envoy.filters.http.fault", "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"],
      ["envoy.filters.http.router", "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"],
    ]);
  });

  test("answers only the names asked for that resolve; a bare host stands for a one-port service", () => {
    const push = pushFrom(...MESH);
    const names = buildGrpcListeners(push, grpcProxy(), [
      ECHO,
      "echo:9001",
      "nope:9000",
      "echo.test:9000",
      "echo.test:9000",
    ])
      .map((l) => l.name);
    expect(names).toEqual([ECHO, "echo.test:9000"]);
    // "echo" is only a name inside namespace test.
    expect(buildGrpcListeners(push, grpcProxy("prod"), ["echo:9000", "echo.test:9000"]).map((l) => l.name))
      .toEqual([
        "echo.test:9000",
      ]);
  });

  test("server listeners serve the proxy's instances, echo the requested address and allow every call", () => {
    const push = pushFrom(...MESH);
    const server = grpcProxy("test", "10.0.0.1");
    expect(buildGrpcListeners(push, server, "*").map((l) => l.name)).toContain(
      "xds.istio.io/grpc/lds/inbound/10.0.0.1:7001",
    );
    const name = "xds.istio.io/grpc/lds/inbound/0.0.0.0:7001";
    const got = buildGrpcListeners(push, server, [
      name,
      "xds.istio.io/grpc/lds/inbound/0.0.0.0:7777",
      "xds.istio.io/grpc/lds/inbound/[::]:7001",
    ]);
    expect(got.map((l) => l.name)).toEqual([name, "xds.istio.io/grpc/lds/inbound/[::]:7001"]);
    const l = got[0]!;
    expect(l.address?.address.case).toBe("socketAddress");
    const sa = l.address!.address.value as { address: string; portSpecifier: { value: number } };
    expect([sa.address, sa.portSpecifier.value]).toEqual(["0.0.0.0", 7001]);
    expect((got[1]!.address!.address.value as { address: string }).address).toBe("::");
    expect(l.filterChains).toHaveLength(1);
    expect(l.filterChains[0]!.filters).toHaveLength(1);
    expect(l.filterChains[0]!.transportSocket).toBeUndefined();
    const hcm = hcmOf(l);
    expect(hcm.httpFilters.map((f) => f.name)).toEqual(["envoy.filters.http.router"]);
    expect(hcm.routeSpecifier.case).toBe("routeConfig");
    const rc = hcm.routeSpecifier.value as {
      virtualHosts: {
        domains: string[];
        routes: { match: { pathSpecifier: unknown }; action: { case: string } }[];
      }[];
    };
    expect(rc.virtualHosts.map((v) => v.domains)).toEqual([["*"]]);
    expect(rc.virtualHosts[0]!.routes.map((r) => [r.match.pathSpecifier, r.action.case])).toEqual([
      [{ case: "prefix", value: "/" }, "nonForwardingAction"],
    ]);
    // A proxy that serves nothing gets no server listener.
    expect(buildGrpcListeners(push, grpcProxy("test", "10.0.0.99"), [name])).toEqual([]);
  });

  test("a workload serving two ports gets one server listener per port", () => {
    const push = pushFrom(
      serviceEntry(
        "multi",
        "test",
        "multi.test.svc.cluster.local",
        "[{ number: 9000, name: grpc, protocol: GRPC }, { number: 9001, name: admin, protocol: GRPC }]",
      ),
      workloadEntry("m1", "test", "multi", "10.0.0.5"),
    );
    expect(
      buildGrpcListeners(push, grpcProxy("test", "10.0.0.5"), "*").filter((l) =>
        l.name.startsWith("xds.istio.io")
      ).map((l) => l.name),
    )
      .toEqual([
        "xds.istio.io/grpc/lds/inbound/10.0.0.5:9000",
        "xds.istio.io/grpc/lds/inbound/10.0.0.5:9001",
      ]);
  });
});
