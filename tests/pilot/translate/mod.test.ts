import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import {
  buildClusters,
  buildEndpoints,
  buildListeners,
  buildRoutes,
  TYPE_URLS,
} from "../../../mod/pilot/translate/mod.ts";
import { caseNames, readCase } from "./_golden.ts";

describe("translate/mod.ts", () => {
  test("TYPE_URLS names Envoy's v3 resource types", () => {
    expect(TYPE_URLS).toEqual({
      cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
      listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
      route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
      endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    });
  });

  for (const name of caseNames()) {
    test(`every EDS cluster has an assignment and every RDS name a route configuration (${name})`, () => {
      const { push, proxy } = readCase(name);
      const eds = buildClusters(push, proxy).filter((c) => c.edsClusterConfig).map((c) =>
        c.edsClusterConfig!.serviceName
      );
      // A router's SNI-DNAT clusters share their outbound cluster's assignment (same EDS name).
      const unique = [...new Set(eds)].sort();
      expect(buildEndpoints(push, proxy).map((c) => c.clusterName).sort()).toEqual(unique);
      const rds = new Set<string>();
      for (const l of buildListeners(push, proxy)) {
        for (const fc of l.filterChains) {
          for (const f of fc.filters) {
            const m = f.configType.case === "typedConfig"
              ? anyUnpack(f.configType.value, HttpConnectionManagerSchema)
              : undefined;
            if (m?.routeSpecifier.case === "rds") rds.add(m.routeSpecifier.value.routeConfigName);
          }
        }
      }
      expect(buildRoutes(push, proxy).map((r) => r.name).sort()).toEqual([...rds].sort());
      const names = buildClusters(push, proxy).map((c) => c.name);
      expect(new Set(names).size).toBe(names.length);
      const listenerNames = buildListeners(push, proxy).map((l) => l.name);
      expect(new Set(listenerNames).size).toBe(listenerNames.length);
    });
  }
});
