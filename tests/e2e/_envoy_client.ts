/**
 * An ADS client that subscribes the way Envoy does (CDS and LDS wildcard, then EDS for the EDS
 * clusters and RDS for the route names they name), ACKing or NACKing each response.
 */
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Cluster_DiscoveryType, ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { AggregatedDiscoveryService } from "#gen/envoy/service/discovery/v3/ads_pb.ts";
import {
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  type DiscoveryResponse,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { createChannel } from "../../mod/shared/channel.ts";

const T = "type.googleapis.com/envoy.config.";
/** Pilot's four type URLs. */
export const CDS = `${T}cluster.v3.Cluster`;
export const EDS = `${T}endpoint.v3.ClusterLoadAssignment`;
export const LDS = `${T}listener.v3.Listener`;
export const RDS = `${T}route.v3.RouteConfiguration`;

/** An Envoy-like ADS client. */
export interface EnvoyClient {
  /** Latest response per type. */
  readonly last: Map<string, DiscoveryResponse>;
  /** Names subscribed per type. */
  readonly names: Map<string, string[]>;
  /** Responses received, in order. */
  readonly responses: DiscoveryResponse[];
  /** When set, the next response of this type is NACKed with this message. */
  nackNext(typeUrl: string, message: string): void;
  close(): void;
}

/** Connects to `addr` (HOST:PORT) as `nodeId` with `metadata`. */
export function connectEnvoy(addr: string, nodeId: string, metadata: Record<string, unknown>): EnvoyClient {
  const client = createClient(AggregatedDiscoveryService, createGrpcTransport({ baseUrl: `http://${addr}` }));
  const reqs = createChannel<DiscoveryRequest>();
  const abort = new AbortController();
  const last = new Map<string, DiscoveryResponse>();
  const names = new Map<string, string[]>();
  const responses: DiscoveryResponse[] = [];
  const nack = new Map<string, string>();
  const acked = new Map<string, string>();
  const node = { id: nodeId, metadata: metadata as never };
  const request = (
    typeUrl: string,
    extra: { versionInfo?: string; responseNonce?: string; errorDetail?: { code: number; message: string } } =
      {},
  ) => {
    const init: MessageInitShape<typeof DiscoveryRequestSchema> = {
      node,
      typeUrl,
      resourceNames: names.get(typeUrl) ?? [],
      ...extra,
    };
    reqs.push(create(DiscoveryRequestSchema, init));
  };
  request(CDS);
  request(LDS);
  (async () => {
    try {
      for await (const res of client.streamAggregatedResources(reqs, { signal: abort.signal })) {
        responses.push(res);
        const msg = nack.get(res.typeUrl);
        if (msg !== undefined) {
          nack.delete(res.typeUrl);
          request(res.typeUrl, {
            versionInfo: acked.get(res.typeUrl) ?? "",
            responseNonce: res.nonce,
            errorDetail: { code: 3, message: msg },
          });
          continue;
        }
        last.set(res.typeUrl, res);
        acked.set(res.typeUrl, res.versionInfo);
        request(res.typeUrl, { versionInfo: res.versionInfo, responseNonce: res.nonce });
        if (res.typeUrl === CDS) {
          const eds = res.resources.map((a) => fromBinary(ClusterSchema, a.value))
            .filter((c) =>
              c.clusterDiscoveryType.case === "type" &&
              c.clusterDiscoveryType.value === Cluster_DiscoveryType.EDS
            )
            .map((c) => c.edsClusterConfig?.serviceName || c.name).sort();
          if (JSON.stringify(eds) !== JSON.stringify(names.get(EDS))) {
            names.set(EDS, eds);
            request(EDS);
          }
        }
        if (res.typeUrl === LDS) {
          const rds = new Set<string>();
          for (const a of res.resources) {
            for (const fc of fromBinary(ListenerSchema, a.value).filterChains) {
              for (const f of fc.filters) {
                if (f.configType.case !== "typedConfig") continue;
                const hcm = anyUnpack(f.configType.value, HttpConnectionManagerSchema);
                if (hcm?.routeSpecifier.case === "rds") rds.add(hcm.routeSpecifier.value.routeConfigName);
              }
            }
          }
          const list = [...rds].sort();
          if (JSON.stringify(list) !== JSON.stringify(names.get(RDS))) {
            names.set(RDS, list);
            request(RDS);
          }
        }
      }
    } catch {
      // stream closed
    }
  })();
  return {
    last,
    names,
    responses,
    nackNext: (t, m) => nack.set(t, m),
    close: () => abort.abort(),
  };
}
