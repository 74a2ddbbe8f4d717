/**
 * /debug/simulate: `meshd simulate` against the running config, over the listeners and routes
 * pilot serves the proxy (the translation shared by every proxy with its key), so a simulation
 * costs decoding the listeners and the one route configuration the request reaches, not a
 * translation of the whole mesh.
 *
 * @module
 */
import { type DescMessage, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import type { DebugHandler } from "../../runtime/module.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { XdsResource } from "../../xds/mod.ts";
import type { PushContext } from "../model/push_context.ts";
import { type Proxy, proxyFromNode, ProxyIdError } from "../model/proxy.ts";
import type { PilotProvider } from "../xds/generator.ts";
import { simulate, type SimulationRequest } from "./simulate.ts";

/** Decoded messages by the encoded resource they came from (resources are shared and replaced per push). */
const decoded = new WeakMap<XdsResource, unknown>();

function decode<D extends DescMessage>(schema: D, r: XdsResource): MessageShape<D> {
  let m = decoded.get(r) as MessageShape<D> | undefined;
  if (m === undefined) {
    m = fromBinary(schema, r.resource.value);
    decoded.set(r, m);
  }
  return m;
}

/**
 * The proxy a node id stands for when it is not connected: its namespace from the id, its
 * labels from the first workload at its address.
 */
export function proxyOfNodeId(push: PushContext, id: string): Proxy {
  const bare = proxyFromNode({ id, metadata: {} });
  const labels = { ...(push.instancesOf(bare)[0]?.labels ?? {}) };
  return proxyFromNode({ id, metadata: { NAMESPACE: bare.namespace, LABELS: labels } });
}

/** The request a query asks for, or an error naming the parameter. */
export function simulationQuery(q: URLSearchParams): SimulationRequest | { error: string } {
  const host = q.get("host");
  if (!host) return { error: "host: missing (give ?host=NAME&port=N)" };
  const port = Number(q.get("port"));
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return { error: `port: ${JSON.stringify(q.get("port"))} is not a port number` };
  }
  const inbound = ["on", "true", "1"].includes(q.get("inbound") ?? "");
  return {
    host,
    port,
    path: q.get("path") || "/",
    method: q.get("method") || "GET",
    ...(inbound ? { direction: "inbound" as const } : {}),
  };
}

/**
 * The handler over `provider`; `connected` gives the Proxy of a connected client with that node
 * id (its real metadata), else the id alone is read ({@link proxyOfNodeId}).
 */
export function simulateDebugHandler(
  provider: Pick<PilotProvider, "push" | "servedOf">,
  connected: (nodeId: string) => Proxy | undefined = () => undefined,
): DebugHandler {
  return {
    path: "simulate",
    description:
      "meshd simulate against the running config: ?proxyID=NODE_ID&host=H&port=P[&path=/x&method=GET&inbound=true]",
    handle(req) {
      const q = new URL(req.url).searchParams;
      const id = q.get("proxyID");
      if (!id) return Response.json({ error: "proxyID: missing (a node id)" }, { status: 400 });
      const request = simulationQuery(q);
      if ("error" in request) return Response.json(request, { status: 400 });
      const push = provider.push();
      let proxy: Proxy;
      try {
        proxy = connected(id) ?? proxyOfNodeId(push, id);
      } catch (err) {
        if (err instanceof ProxyIdError) {
          return Response.json({ error: `proxyID: ${err.message}` }, { status: 400 });
        }
        throw err;
      }
      try {
        const served = provider.servedOf(proxy);
        const result = simulate(
          push,
          proxy,
          request,
          served && {
            listeners: [...served.listeners.values()].map((r) => decode(ListenerSchema, r)),
            route: (name) => {
              const r = served.routes.get(name);
              return r && decode(RouteConfigurationSchema, r);
            },
          },
        );
        return Response.json({ proxy: id, pushVersion: push.version, ...result });
      } catch (err) {
        return Response.json({ error: errorMessage(err) }, { status: 500 });
      }
    },
  };
}
