import { create, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import { createGrpcServer } from "../../mod/grpc/server.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createAdsServer } from "../../mod/xds/server.ts";
import type { ResourceProvider, XdsResource } from "../../mod/xds/provider.ts";
import { contentVersion } from "../../mod/xds/version.ts";
import { createConfigStore } from "../../mod/galley/store.ts";
import { createPushContext } from "../../mod/pilot/model/push_context.ts";
import { proxyFromNode } from "../../mod/pilot/model/proxy.ts";
import { buildGrpcClusters, buildGrpcEndpoints, buildGrpcListeners, buildGrpcRoutes } from "../../mod/pilot/translate/grpc/mod.ts";
import { startBackend } from "./_grpc_backend.ts";
import { destinationRuleYaml, meshYaml, virtualServiceYaml } from "./_grpc.ts";

const T = "type.googleapis.com/envoy.config.";
const log = createLogger({ write: (l) => process.env.LOG && process.stderr.write(l) });
const b1 = await startBackend("echo-v1");
const b2 = await startBackend("echo-v2");
if (process.env.FAILV2) b2.fail({ code: Number(process.env.FAILV2), count: process.env.FAILCOUNT ? Number(process.env.FAILCOUNT) : undefined });
if (process.env.DELAYV2) b2.delay(Number(process.env.DELAYV2));
const store = createConfigStore({ logger: log });
const yaml = [meshYaml([{ name: "echo-v1", port: b1.port, version: "v1" }, { name: "echo-v2", port: b2.port, version: "v2" }]), destinationRuleYaml(process.env.DR ?? ""), virtualServiceYaml(process.env.VS ?? `
- route:
  - destination: {host: echo.test.svc.cluster.local, subset: v1}
    weight: 90
  - destination: {host: echo.test.svc.cluster.local, subset: v2}
    weight: 10
`)].join("---\n");
store.sink("t").replace([{ origin: "mesh.yaml", content: yaml }]);
console.error(JSON.stringify(store.status().resources.filter((r) => r.state !== "accepted")));
const push = createPushContext({ config: store.snapshot() });
function pack(typeUrl: string, name: string, bytes: Uint8Array): XdsResource {
  return { name, version: contentVersion(bytes), resource: create(AnySchema, { typeUrl, value: bytes }) };
}
const provider: ResourceProvider = {
  typeUrls: [`${T}listener.v3.Listener`, `${T}route.v3.RouteConfiguration`, `${T}cluster.v3.Cluster`, `${T}endpoint.v3.ClusterLoadAssignment`],
  resources(client, typeUrl, names) {
    const proxy = proxyFromNode(client.node);
    const list = names === "*" ? "*" : [...names];
    const m = new Map<string, XdsResource>();
    if (typeUrl.endsWith("Listener")) for (const l of buildGrpcListeners(push, proxy, list)) m.set(l.name, pack(typeUrl, l.name, toBinary(ListenerSchema, l)));
    if (typeUrl.endsWith("RouteConfiguration")) for (const l of buildGrpcRoutes(push, proxy, list).map(tweak)) m.set(l.name, pack(typeUrl, l.name, toBinary(RouteConfigurationSchema, l)));
    if (typeUrl.endsWith("Cluster")) for (const l of buildGrpcClusters(push, proxy)) m.set(l.name, pack(typeUrl, l.name, toBinary(ClusterSchema, l)));
    if (typeUrl.endsWith("ClusterLoadAssignment")) for (const l of buildGrpcEndpoints(push, proxy, list)) m.set(l.clusterName, pack(typeUrl, l.clusterName, toBinary(ClusterLoadAssignmentSchema, l)));
    return m;
  },
  watch: () => () => {},
};
function tweak(rc: any) {
  for (const vh of rc.virtualHosts) for (const r of vh.routes) {
    const a = r.action.value; if (!a?.maxStreamDuration) continue;
    if (process.env.MSD === "msd") a.maxStreamDuration.grpcTimeoutHeaderMax = undefined;
    if (process.env.MSD === "hdr") a.maxStreamDuration.maxStreamDuration = undefined;
    if (process.env.MSD === "none") a.timeout = undefined;
  }
  return rc;
}
const grpc = createGrpcServer({ logger: log });
const ads = createAdsServer({ logger: log });
ads.addProvider(provider);
ads.register(grpc);
const addr = await grpc.listen("127.0.0.1:0");
console.log(`127.0.0.1:${addr.port}`);
setInterval(() => { if (process.env.STREAMS) console.error(JSON.stringify(ads.streams())); }, 2000);
