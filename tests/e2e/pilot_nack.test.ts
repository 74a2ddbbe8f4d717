/**
 * NACK handling with real gRPC xDS clients, at the ADS level.
 *
 * No valid config makes the gRPC translation emit something gRPC rejects (the translator
 * avoids every rejection it knows of: weights that do not add up, routes with actions gRPC
 * refuses, virtual hosts left without routes, out-of-range ring sizes and durations, duplicate
 * endpoints and localities). So this test serves a bad resource itself: the real ADS server
 * and the real gRPC translation of real config, through a ResourceProvider written here that
 * can swap in a route configuration whose weighted clusters total 0, which both gRPC clients
 * reject. It checks that each client NACKs it with its own message, keeps routing with its last
 * good config, that the NACK shows in the sync status /debug/syncz serves, that the rejected
 * version is not sent again, and that a good version is then ACKed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create, type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import {
  RouteActionSchema,
  WeightedCluster_ClusterWeightSchema,
  WeightedClusterSchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { type RouteConfiguration, RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConfigStore } from "../../mod/galley/store.ts";
import { createGrpcServer, type GrpcServer } from "../../mod/grpc/server.ts";
import { proxyFromNode } from "../../mod/pilot/model/proxy.ts";
import { createPushContext, type PushContext } from "../../mod/pilot/model/push_context.ts";
import {
  buildGrpcClusters,
  buildGrpcEndpoints,
  buildGrpcListeners,
  buildGrpcRoutes,
} from "../../mod/pilot/translate/grpc/mod.ts";
import { type ProxySync, syncStatus } from "../../mod/pilot/xds/sync_status.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import type { ResourceProvider, XdsResource } from "../../mod/xds/provider.ts";
import { type AdsServer, createAdsServer } from "../../mod/xds/server.ts";
import { contentVersion } from "../../mod/shared/content_version.ts";
import { type Backend, startBackend } from "./_grpc_backend.ts";
import {
  type ClientKind,
  destinationRuleYaml,
  ECHO_HOST,
  ECHO_PORT,
  meshYaml,
  nodeId,
  startClient,
  virtualServiceYaml,
  type XdsClientProcess,
} from "./_grpc.ts";
import { eventually } from "./_meshd.ts";

const T = "type.googleapis.com/envoy.config.";
const TYPES = {
  listener: `${T}listener.v3.Listener`,
  route: `${T}route.v3.RouteConfiguration`,
  cluster: `${T}cluster.v3.Cluster`,
  endpoint: `${T}endpoint.v3.ClusterLoadAssignment`,
};

function encode<D extends DescMessage>(
  schema: D,
  typeUrl: string,
  name: string,
  msg: MessageShape<D>,
): XdsResource {
  const value = toBinary(schema, msg);
  return { name, version: contentVersion(value), resource: create(AnySchema, { typeUrl, value }) };
}

/** Route configurations whose every route splits over v1 and v2 with weight 0 each (total 0). */
function poisoned(rc: RouteConfiguration): RouteConfiguration {
  const copy = structuredClone(rc);
  for (const vh of copy.virtualHosts) {
    for (const r of vh.routes) {
      r.action = {
        case: "route",
        value: create(RouteActionSchema, {
          clusterSpecifier: {
            case: "weightedClusters",
            value: create(WeightedClusterSchema, {
              clusters: ["v1", "v2"].map((s) =>
                create(WeightedCluster_ClusterWeightSchema, {
                  name: `outbound|${ECHO_PORT}|${s}|${ECHO_HOST}`,
                  weight: 0,
                })
              ),
              totalWeight: 0,
            }),
          },
        }),
      };
    }
  }
  return copy;
}

/** A provider serving the gRPC translation of `push()`, with bad route configurations while `poison` is on. */
function testProvider(push: () => PushContext) {
  const listeners = new Set<(t: ReadonlySet<string>) => void>();
  let poison = false;
  const provider: ResourceProvider = {
    typeUrls: Object.values(TYPES),
    resources(client, typeUrl, names) {
      const proxy = proxyFromNode(client.node);
      const list = names === "*" ? "*" : [...names];
      const p = push();
      const out = new Map<string, XdsResource>();
      if (typeUrl === TYPES.listener) {
        for (const l of buildGrpcListeners(p, proxy, list)) {
          out.set(l.name, encode(ListenerSchema, typeUrl, l.name, l));
        }
      } else if (typeUrl === TYPES.route) {
        for (const r of buildGrpcRoutes(p, proxy, list)) {
          out.set(r.name, encode(RouteConfigurationSchema, typeUrl, r.name, poison ? poisoned(r) : r));
        }
      } else if (typeUrl === TYPES.cluster) {
        for (const c of buildGrpcClusters(p, proxy)) {
          out.set(c.name, encode(ClusterSchema, typeUrl, c.name, c));
        }
      } else {
        for (const e of buildGrpcEndpoints(p, proxy, list)) {
          out.set(e.clusterName, encode(ClusterLoadAssignmentSchema, typeUrl, e.clusterName, e));
        }
      }
      return out;
    },
    watch(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
  return {
    provider,
    setPoison(on: boolean) {
      poison = on;
    },
    notify() {
      for (const l of listeners) l(new Set(Object.values(TYPES)));
    },
  };
}

/** The clients and the message each one's NACK must carry. */
const CLIENTS: readonly { kind: ClientKind; message: RegExp }[] = [
  { kind: "grpc-js", message: /weighted_clusters sum of weights is 0/ },
  { kind: "python", message: /weighted_cluster has no valid clusters specified/ },
];

describe("NACKs from real gRPC xDS clients (ADS server, gRPC translation, a provider serving a bad route)", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-e2e-nack-"));
  const logger = createLogger({ write: () => {} });
  const store = createConfigStore({ logger });
  let current: PushContext;
  let grpc: GrpcServer;
  let ads: AdsServer;
  let v1: Backend;
  let v2: Backend;
  const clients = new Map<ClientKind, XdsClientProcess>();
  const provider = testProvider(() => current);
  const route = (subset: string) =>
    virtualServiceYaml(`- route:\n  - destination: {host: ${ECHO_HOST}, subset: ${subset}}`);
  const setConfig = (subset: string) => {
    store.sink("test").replace([{
      origin: "mesh.yaml",
      content: [
        meshYaml([{ name: "echo-v1", port: v1.port, version: "v1" }, {
          name: "echo-v2",
          port: v2.port,
          version: "v2",
        }]),
        destinationRuleYaml(),
        route(subset),
      ].join("---\n"),
    }]);
    current = createPushContext({ config: store.snapshot() });
    provider.notify();
  };
  const status = (kind: ClientKind): ProxySync | undefined =>
    syncStatus(ads.streams()).find((p) => p.proxy === nodeId(`nack-${kind}`));

  beforeAll(async () => {
    v1 = await startBackend("echo-v1");
    v2 = await startBackend("echo-v2");
    setConfig("v1");
    grpc = createGrpcServer({ logger });
    ads = createAdsServer({ logger });
    ads.addProvider(provider.provider);
    ads.register(grpc);
    const addr = await grpc.listen("127.0.0.1:0");
    for (const { kind } of CLIENTS) {
      clients.set(kind, startClient(kind, `127.0.0.1:${addr.port}`, { dir, nodeId: nodeId(`nack-${kind}`) }));
    }
  }, 30_000);
  afterAll(async () => {
    for (const c of clients.values()) await c.close();
    await grpc?.shutdown(200);
    await v1?.close();
    await v2?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test(
    "each client NACKs the bad route with its own message, keeps its last good config, and ACKs the next good one",
    async () => {
      for (const { kind } of CLIENTS) {
        const s = await clients.get(kind)!.calls({ n: 20, concurrency: 5, deadlineMs: 10_000 });
        expect(s.byBackend).toEqual({ "echo-v1": 20 });
        expect(await eventually(() => status(kind)?.types.RDS?.state === "SYNCED")).toBe(true);
      }
      const good = Object.fromEntries(
        CLIENTS.map(({ kind }) => [kind, status(kind)!.types.RDS!.ackedVersion]),
      );

      provider.setPoison(true);
      provider.notify();
      for (const { kind, message } of CLIENTS) {
        expect(await eventually(() => status(kind)?.types.RDS?.state === "NACKED")).toBe(true);
        const rds = status(kind)!.types.RDS!;
        expect(rds.nackMessage).toMatch(message);
        expect(rds.ackedVersion).toBe(good[kind]);
        expect(rds.nackedVersion).toBe(rds.sentVersion);
        // The client still routes with the config it accepted last.
        const s = await clients.get(kind)!.calls({ n: 20, concurrency: 5 });
        expect(s.byBackend).toEqual({ "echo-v1": 20 });
      }
      // Nothing changed: the rejected version is not sent again.
      const nonces = CLIENTS.map(({ kind }) =>
        ads.streams().find((s) => s.nodeId === nodeId(`nack-${kind}`))!.types
      );
      provider.notify();
      await Bun.sleep(200);
      const again = CLIENTS.map(({ kind }) =>
        ads.streams().find((s) => s.nodeId === nodeId(`nack-${kind}`))!.types
      );
      expect(again.map((ts) => ts.map((t) => t.sentNonce))).toEqual(
        nonces.map((ts) => ts.map((t) => t.sentNonce)),
      );

      provider.setPoison(false);
      setConfig("v2");
      for (const { kind } of CLIENTS) {
        expect(await eventually(() => status(kind)?.types.RDS?.state === "SYNCED")).toBe(true);
        expect(status(kind)!.types.RDS!.ackedVersion).not.toBe(good[kind]);
        // Lifting the poison pushes v1's good routes again before v2's may arrive, and both are
        // ACKed: wait (bounded) until the client routes with v2.
        let s: Awaited<ReturnType<XdsClientProcess["calls"]>> | undefined;
        const onV2 = await eventually(async () => {
          s = await clients.get(kind)!.calls({ n: 20, concurrency: 5 });
          return s.byBackend["echo-v2"] === 20;
        }, 10_000);
        expect(onV2).toBe(true);
        expect(s?.byBackend).toEqual({ "echo-v2": 20 });
        expect(status(kind)!.types.RDS!.state).toBe("SYNCED");
      }
    },
    30_000,
  );
});
