/**
 * Outbound on the node proxy (15001). For each accepted connection: its destination (the original
 * destination of a captured connection, or the target of an explicit `CONNECT host:port` with
 * `--capture=none`), the mesh service it names (by virtual IP or host name and port, or the
 * cluster an endpoint address belongs to), an endpoint chosen by the picker, and the upstream
 * connection by the endpoint's transport: an HBONE CONNECT stream to the endpoint machine's node
 * proxy, Istio mutual TLS straight to the endpoint (the peer's SPIFFE identity checked), or plain
 * TCP. A failed connect ejects toward outlier detection and moves on to another endpoint. A
 * destination outside the mesh passes through unchanged.
 *
 * @module
 */
import { createServer, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { endpointKey, type EndpointPicker } from "./endpoint_pick.ts";
import { formatBaggage } from "./baggage.ts";
import { EarlyData, HboneError, type HbonePool } from "./hbone.ts";
import { connectResponse, readConnectRequest } from "./http_connect.ts";
import { originalDestination } from "./original_dst.ts";
import { matchTcpRoute, pickRouteCluster, routeService } from "./outbound_route.ts";
import { relay } from "./relay.ts";
import { closeServer, dial, hostPort, listen, trackConnections } from "./sockets.ts";
import type { ConnectionTelemetry, TcpTelemetry } from "./telemetry.ts";
import { peerIdentity, type TlsMaterial } from "./tls_material.ts";
import type { Endpoint, MeshService, NodeProxyView, UpstreamCluster } from "./view.ts";

/** ALPN of Istio's mutual TLS between sidecars. */
export const ISTIO_ALPN = ["istio-peer-exchange", "istio"];

/** Connect attempts per connection at most (each to another endpoint). */
export const MAX_CONNECT_ATTEMPTS = 5;

/** Where an outbound connection goes. */
export type OutboundRoute =
  | {
    readonly kind: "service";
    readonly service: MeshService;
    readonly cluster: UpstreamCluster;
    /** Set when the destination was an endpoint's own address: that endpoint only. */
    readonly endpoint?: Endpoint;
  }
  /** A mesh service port whose cluster has no endpoints (or is not in the view). */
  | { readonly kind: "no-cluster"; readonly service: MeshService; readonly clusterName: string }
  | { readonly kind: "passthrough" };

/** The default-subset cluster name of a service port: `outbound|PORT||HOST`. */
function isDefaultSubset(name: string): boolean {
  return name.split("|")[2] === "";
}

/**
 * Routes a destination (an address or a mesh host name, and a port) in `view`: a VirtualService
 * `tcp` route that takes it (outbound_route.ts; its cluster picked by weight with `o.random`),
 * else a service's virtual IP or host name with one of its ports, else an endpoint address of
 * some cluster (preferring the port's default subset), else passthrough.
 */
export function routeOutbound(
  view: NodeProxyView,
  host: string,
  port: number,
  o: { readonly random?: () => number } = {},
): OutboundRoute {
  const h = host.toLowerCase().replace(/\.$/, "");
  const tcp = matchTcpRoute(view.tcpRoutes ?? [], h, port);
  if (tcp) {
    const name = pickRouteCluster(tcp, (o.random ?? Math.random)());
    const service = routeService(view, tcp, name);
    const cluster = view.clusters.get(name);
    return cluster
      ? { kind: "service", service, cluster }
      : { kind: "no-cluster", service, clusterName: name };
  }
  for (const service of view.services) {
    if (service.host !== h && !service.addresses.includes(h)) continue;
    const sp = service.ports.find((p) => p.port === port);
    if (!sp) continue;
    const cluster = view.clusters.get(sp.cluster);
    return cluster
      ? { kind: "service", service, cluster }
      : { kind: "no-cluster", service, clusterName: sp.cluster };
  }
  let found: { cluster: UpstreamCluster; endpoint: Endpoint } | undefined;
  for (const cluster of view.clusters.values()) {
    const endpoint = cluster.endpoints.find((e) => e.address === h && e.port === port);
    if (endpoint && (!found || isDefaultSubset(cluster.name))) found = { cluster, endpoint };
  }
  if (found) {
    const serviceHost = found.cluster.name.split("|")[3] ?? "";
    const service = view.services.find((s) => s.host === serviceHost) ??
      { host: serviceHost, namespace: "", addresses: [], ports: [] };
    return { kind: "service", service, cluster: found.cluster, endpoint: found.endpoint };
  }
  return { kind: "passthrough" };
}

/** The SNI Istio's sidecars send to each other: `outbound_.PORT_.SUBSET_.HOST`. */
export function istioSni(clusterName: string): string {
  const [dir, port, subset, host] = clusterName.split("|");
  return `${dir}_.${port}_.${subset}_.${host}`;
}

/** What outbound needs from the node proxy. */
export interface OutboundContext {
  readonly view: () => NodeProxyView;
  readonly picker: EndpointPicker;
  readonly pool: HbonePool;
  readonly tls: TlsMaterial;
  readonly telemetry: TcpTelemetry;
  readonly logger: Logger;
  /** The port peers' node proxies take HBONE on (15008). */
  readonly peerTunnelPort: number;
  /**
   * This machine's workload, for telemetry and the baggage header (with its canonical service and
   * revision, which the peer reports as the source's app and version).
   */
  readonly workload: {
    readonly name: string;
    readonly namespace: string;
    readonly service?: string;
    readonly version?: string;
  };
}

/** An upstream connection made. */
export interface Upstream {
  readonly stream: Duplex;
  readonly endpoint?: Endpoint;
  readonly transport: "hbone" | "mtls" | "plaintext" | "passthrough";
  readonly peerIdentity?: string;
}

/** Why no upstream connection could be made, with Envoy's response flag. */
export class UpstreamError extends Error {
  /** UH no healthy upstream, UF connect failure, UAEX refused by the destination's policy. */
  readonly flag: "UH" | "UF" | "UAEX";
  constructor(flag: UpstreamError["flag"], message: string) {
    super(message);
    this.flag = flag;
  }
}

function tlsDial(ctx: OutboundContext, e: Endpoint, sni: string, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: e.address,
      port: e.port,
      secureContext: ctx.tls.current().context,
      ALPNProtocols: ISTIO_ALPN,
      servername: sni,
      allowHalfOpen: true,
      // Checked below against the endpoint's SPIFFE identities instead of a host name.
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`mTLS to ${endpointKey(e)} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new Error(`mTLS to ${endpointKey(e)}: ${err.message}`));
    };
    s.once("error", onError);
    s.once("secureConnect", () => {
      clearTimeout(timer);
      s.off("error", onError);
      s.on("error", () => {});
      const id = peerIdentity(s);
      if (e.identities.length > 0 && (id === undefined || !e.identities.includes(id))) {
        s.destroy();
        reject(
          new Error(
            `mTLS to ${endpointKey(e)}: the peer is ${id ?? "without a SPIFFE identity"}, ` +
              `not one of ${e.identities.join(", ")}`,
          ),
        );
        return;
      }
      resolve(s);
    });
  });
}

/** One connect to one endpoint by its transport; a tunnel sends `early` ahead of its answer. */
async function connectEndpoint(
  ctx: OutboundContext,
  cluster: UpstreamCluster,
  e: Endpoint,
  early?: EarlyData,
): Promise<Upstream> {
  const timeoutMs = cluster.connectTimeoutMs > 0 ? cluster.connectTimeoutMs : 10_000;
  switch (e.transport) {
    case "hbone": {
      const s = await ctx.pool.connect({
        peer: e.address,
        peerPort: ctx.peerTunnelPort,
        authority: hostPort(e.address, e.port),
        identities: e.identities,
        timeoutMs,
        baggage: formatBaggage(ctx.workload.name, ctx.workload.namespace, {
          ...(ctx.workload.service ? { service: ctx.workload.service } : {}),
          ...(ctx.workload.version ? { version: ctx.workload.version } : {}),
        }),
        ...(early ? { early } : {}),
      });
      return { stream: s.stream, endpoint: e, transport: "hbone", peerIdentity: s.peerIdentity };
    }
    case "mtls": {
      const s = await tlsDial(ctx, e, istioSni(cluster.name), timeoutMs);
      return { stream: s, endpoint: e, transport: "mtls", ...optional("peerIdentity", peerIdentity(s)) };
    }
    default:
      return { stream: await dial(e.address, e.port, timeoutMs), endpoint: e, transport: "plaintext" };
  }
}

function optional<K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [k]: v }) as { [P in K]?: V };
}

/**
 * Connects to an endpoint of `route`'s cluster, trying others after a connect failure (at most
 * MAX_CONNECT_ATTEMPTS); a refusal by the destination's policy is final. Rejects with an
 * UpstreamError. A tunnel sends the downstream's `early` bytes ahead of its answer; they are kept
 * for the next attempt when it fails.
 */
export async function connectRoute(
  ctx: OutboundContext,
  route: Extract<OutboundRoute, { kind: "service" }>,
  early?: EarlyData,
): Promise<Upstream> {
  const tried = new Set<string>();
  const errors: string[] = [];
  const cluster = route.cluster;
  for (let i = 0; i < MAX_CONNECT_ATTEMPTS; i++) {
    const e = route.endpoint ?? ctx.picker.pick(cluster, tried);
    if (!e || tried.has(endpointKey(e))) break;
    tried.add(endpointKey(e));
    try {
      const up = await connectEndpoint(ctx, cluster, e, early);
      ctx.picker.report(cluster, e, true);
      return up;
    } catch (err) {
      if (err instanceof HboneError && err.kind === "refused") throw new UpstreamError("UAEX", err.message);
      ctx.picker.report(cluster, e, false);
      errors.push(errorMessage(err));
      ctx.logger.debug("upstream connect failed", {
        cluster: cluster.name,
        endpoint: endpointKey(e),
        err: errorMessage(err),
      });
    }
  }
  if (errors.length === 0) throw new UpstreamError("UH", `no healthy endpoint in ${cluster.name}`);
  throw new UpstreamError("UF", `${cluster.name}: ${errors.join("; ")}`);
}

/**
 * Carries one accepted connection to `host:port`. `accepted` is called once the upstream is
 * connected (the explicit proxy answers 200 then) and `refused` when none could be made.
 */
export async function proxyOutbound(
  ctx: OutboundContext,
  downstream: Socket,
  target: { host: string; port: number; first?: Buffer },
  hooks: { accepted?: () => void; refused?: (err: UpstreamError) => void } = {},
): Promise<void> {
  const route = routeOutbound(ctx.view(), target.host, target.port);
  const base = {
    reporter: "source" as const,
    sourceAddress: downstream.remoteAddress ?? "",
    sourceWorkload: ctx.workload.name,
    sourceNamespace: ctx.workload.namespace,
    ...optional("sourcePrincipal", ctx.tls.identity()),
    destinationAddress: target.host,
    destinationPort: target.port,
    ...(route.kind === "passthrough" ? {} : {
      destinationService: route.service.host,
      destinationServiceNamespace: route.service.namespace,
    }),
  };
  // The downstream's first bytes go ahead of a tunnel's answer, saving a round trip.
  const early = new EarlyData(downstream, target.first);
  let up: Upstream;
  try {
    if (route.kind === "passthrough") {
      up = { stream: await dial(target.host, target.port, 10_000), transport: "passthrough" };
    } else if (route.kind === "no-cluster") {
      throw new UpstreamError(
        "UH",
        `no cluster ${route.clusterName} for ${route.service.host}:${target.port}`,
      );
    } else {
      up = await connectRoute(ctx, route, early);
    }
  } catch (err) {
    const e = err instanceof UpstreamError ? err : new UpstreamError("UF", errorMessage(err));
    const t: ConnectionTelemetry = ctx.telemetry.open({ ...base, responseFlags: e.flag, decision: "deny" });
    t.close({ received: 0, sent: 0 }, e.message);
    if (hooks.refused) hooks.refused(e);
    else downstream.destroy();
    return;
  }
  const cluster = route.kind === "service" ? route.cluster : undefined;
  if (cluster && up.endpoint) ctx.picker.track(cluster, up.endpoint, 1);
  const t = ctx.telemetry.open({
    ...base,
    ...(up.endpoint ? { upstream: endpointKey(up.endpoint) } : {}),
    ...optional("destinationPrincipal", up.peerIdentity),
    transport: up.transport,
    security: up.transport === "hbone" || up.transport === "mtls" ? "mutual_tls" : "none",
    decision: "allow",
  });
  hooks.accepted?.();
  early.commitTo(up.stream);
  downstream.resume();
  const r = await relay(downstream, up.stream).done;
  if (cluster && up.endpoint) ctx.picker.track(cluster, up.endpoint, -1);
  t.close({ received: r.aToB + early.bytes, sent: r.bToA }, r.error);
}

/** Options of startOutboundListener. */
export interface OutboundListenerOptions {
  readonly host: string;
  readonly port: number;
  /** `capture`: original destinations of redirected connections; `explicit`: HTTP CONNECT. */
  readonly mode: "capture" | "explicit";
  readonly context: OutboundContext;
  /** How long the explicit proxy waits for the request head (default 10 s). */
  readonly headTimeoutMs?: number;
}

/** A listening outbound server. */
export interface OutboundListener {
  readonly addr: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Starts the outbound listener. Rejects naming the address when it cannot bind. */
export async function startOutboundListener(o: OutboundListenerOptions): Promise<OutboundListener> {
  const log = o.context.logger;
  let boundPort = o.port;
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    socket.on("error", () => {});
    socket.setNoDelay(true);
    const work = o.mode === "explicit" ? explicit(socket) : captured(socket);
    void work.catch((err) => {
      log.warn("outbound connection failed", { err: errorMessage(err) });
      socket.destroy();
    });
  });
  const captured = async (socket: Socket) => {
    const dest = await originalDestination(socket);
    if (!dest || (dest.port === boundPort && dest.address === socket.localAddress)) {
      log.warn("outbound connection was not redirected (no original destination); closing", {
        source: socket.remoteAddress,
      });
      socket.destroy();
      return;
    }
    await proxyOutbound(o.context, socket, { host: dest.address, port: dest.port });
  };
  const explicit = async (socket: Socket) => {
    let req;
    try {
      req = await readConnectRequest(socket, o.headTimeoutMs ?? 10_000);
    } catch (err) {
      log.debug("bad explicit proxy request", { err: errorMessage(err) });
      if (!socket.destroyed) socket.end(connectResponse(400, "Bad Request"));
      return;
    }
    await proxyOutbound(o.context, socket, { host: req.host, port: req.port, first: req.rest }, {
      accepted: () => socket.write(connectResponse(200, "Connection Established")),
      refused: (e) => {
        if (!socket.destroyed) {
          socket.end(
            e.flag === "UAEX"
              ? connectResponse(403, "Forbidden")
              : connectResponse(503, "Service Unavailable"),
          );
        }
      },
    });
  };
  const open = trackConnections(server);
  boundPort = await listen(server, o.host, o.port, "outbound");
  return { addr: hostPort(o.host, boundPort), port: boundPort, close: () => closeServer(server, open) };
}
