/**
 * The node proxy, assembled: the view (from pilot over xDS, or given), TLS material following the
 * agent's certificate, the HBONE server (15008), the outbound listener (15001: captured, or an
 * explicit CONNECT proxy with `--capture=none`), the plaintext inbound listener (15006), the DNS
 * proxy (15053) and the capture rules. Capture is installed last, once everything it sends
 * traffic to listens, and removed first on stop, before the listeners close.
 *
 * @module
 */
import type { NodeProxyXdsOptions } from "./xds_client.ts";
import type { Node } from "#gen/envoy/config/core/v3/base_pb.ts";
import type { Clock } from "../../shared/clock.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import type { MetricsRegistry } from "../../shared/metrics.ts";
import type { CertBundle } from "../certs.ts";
import { createEndpointPicker } from "./endpoint_pick.ts";
import { createHbonePool, startHboneServer } from "./hbone.ts";
import { decideInbound, isLocalAddress, startInboundListener } from "./inbound.ts";
import { startOutboundListener } from "./outbound.ts";
import { splitHostPort } from "./sockets.ts";
import { type AccessLogEntry, createTcpTelemetry } from "./telemetry.ts";
import { workloadLabels, workloadTelemetry } from "./telemetry_workloads.ts";
import { createMixerReporter } from "./mixer_report.ts";
import { createTlsMaterial } from "./tls_material.ts";
import { EMPTY_VIEW, type NodeProxyView } from "./view.ts";

/** The node proxy's settings (`meshd agent --node-proxy` and the flags beside it). */
export interface NodeProxySettings {
  readonly capture: "mesh" | "all" | "none";
  readonly captureBackend: "auto" | "nft" | "iptables";
  readonly excludePorts: readonly number[];
  readonly excludeCidrs: readonly string[];
  readonly excludeUids: readonly number[];
  /** Address the outbound, inbound and HBONE listeners bind (default 0.0.0.0; 127.0.0.1 for outbound with capture none). */
  readonly bindAddress?: string;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly tunnelPort: number;
  /** The port peers' node proxies take HBONE on (default: tunnelPort). */
  readonly peerTunnelPort?: number;
  /** `HOST:PORT` of the DNS proxy; empty: no DNS proxy. */
  readonly dnsAddr: string;
  readonly dnsCapture: boolean;
  /** Upstream resolvers of the DNS proxy (default: /etc/resolv.conf). */
  readonly dnsUpstreams?: readonly string[];
  /** Mixer's plaintext gRPC address: each closed connection is reported there too. */
  readonly mixerAddr?: string;
}

/** Where the view comes from: pilot over xDS, or a function (a caller with its own source). */
export type ViewSource =
  | {
    readonly kind: "xds";
    readonly discoveryAddr: string;
    readonly tls?: NodeProxyXdsOptions["tls"];
    readonly node: Node;
  }
  | { readonly kind: "static"; readonly view: () => NodeProxyView };

/** Options of startNodeProxy. */
export interface NodeProxyOptions {
  readonly settings: NodeProxySettings;
  /** The agent's certificate in service (the cert manager's `current`). */
  readonly certs: () => CertBundle | undefined;
  readonly view: ViewSource;
  /**
   * This machine's workload (telemetry, baggage). Its labels (cluster.env's
   * ISTIO_METAJSON_LABELS) default to the xDS node's LABELS metadata.
   */
  readonly workload: {
    readonly name: string;
    readonly namespace: string;
    readonly labels?: Readonly<Record<string, string>>;
  };
  /**
   * Addresses of this machine besides its interfaces' (the instance IP). A tunnel whose target
   * the view does not give must name one of them.
   */
  readonly localAddresses?: readonly string[];
  readonly logger: Logger;
  readonly metrics: MetricsRegistry;
  readonly clock: Clock;
  /** Receives access-log entries (default: one JSON log line each on the logger). */
  readonly accessLog?: (entry: AccessLogEntry) => void;
  readonly random?: () => number;
}

/** A running node proxy. */
export interface NodeProxy {
  /** Bound addresses (HOST:PORT). */
  readonly addrs: {
    readonly outbound: string;
    readonly inbound?: string;
    readonly tunnel: string;
    readonly dns?: string;
  };
  /** The view in force. */
  view(): NodeProxyView;
  /**
   * Tells the proxy the certificate changed: new connections (and the HBONE server) use it;
   * pooled tunnels take no new streams and close when theirs end; nothing established is cut.
   */
  certificateChanged(): void;
  /** Removes capture, then closes the listeners. Idempotent. */
  stop(): Promise<void>;
}

/** Addresses capture sends to the node proxy in "mesh" mode: every VIP and endpoint address. */
export function meshCidrs(view: NodeProxyView): string[] {
  const out = new Set<string>();
  const add = (a: string) => out.add(a.includes(":") ? `${a}/128` : `${a}/32`);
  for (const s of view.services) s.addresses.forEach(add);
  for (const c of view.clusters.values()) for (const e of c.endpoints) add(e.address);
  return [...out].sort();
}

/** The workload's labels: given, else the string values of the xDS node's LABELS metadata. */
export function selfLabels(o: Pick<NodeProxyOptions, "workload" | "view">): Record<string, string> {
  if (o.workload.labels) return { ...o.workload.labels };
  const md = o.view.kind === "xds" ? o.view.node.metadata?.["LABELS"] : undefined;
  if (!md || typeof md !== "object" || Array.isArray(md)) return {};
  return Object.fromEntries(
    Object.entries(md).filter((e): e is [string, string] => typeof e[1] === "string"),
  );
}

/** Ports capture redirects inbound: those the view has rules for (not the rule for every port). */
export function inboundPorts(view: NodeProxyView): number[] {
  return [...view.inbound.keys()].filter((p) => p !== 0).sort((a, b) => a - b);
}

/** Starts the node proxy. On failure everything started so far is stopped again. */
export async function startNodeProxy(o: NodeProxyOptions): Promise<NodeProxy> {
  const log = o.logger;
  const s = o.settings;
  const cleanups: Array<() => Promise<void> | void> = [];
  const stopAll = async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn("node proxy cleanup failed", { err: errorMessage(err) });
      }
    }
  };
  const unknownSeen = new Set<string>();
  const onUnknown = (what: string) => {
    if (unknownSeen.has(what)) return;
    unknownSeen.add(what);
    log.warn("RBAC matcher not supported by the node proxy; it never matches", { matcher: what });
  };
  const accessLogger = log.child({ component: "access" });
  const writeLog = o.accessLog ?? ((e: AccessLogEntry) => accessLogger.info("tcp", { ...e }));
  const mixer = o.settings.mixerAddr
    ? await createMixerReporter(o.settings.mixerAddr, log.child({ component: "mixer" }))
    : undefined;
  if (mixer) cleanups.push(() => mixer.close());
  const counted = createTcpTelemetry({
    registry: o.metrics,
    clock: o.clock,
    accessLog: mixer
      ? (e) => {
        writeLog(e);
        mixer.report(e);
      }
      : writeLog,
  });
  const self = workloadLabels(o.workload.name, o.workload.namespace, selfLabels(o));
  const telemetry = workloadTelemetry(counted, {
    self,
    view: () => currentView(),
  });
  const tls = createTlsMaterial(o.certs);
  const pool = createHbonePool({ tls, logger: log.child({ component: "hbone" }) });
  cleanups.push(() => pool.close());
  tls.onChange(() => pool.drain());

  let view: NodeProxyView = o.view.kind === "static" ? o.view.view() : EMPTY_VIEW;
  const currentView = () => (o.view.kind === "static" ? o.view.view() : view);
  let onViewChange: ((v: NodeProxyView) => void) | undefined;
  const isLocal = (a: string) => isLocalAddress(a, o.localAddresses ?? []);
  try {
    const bind = s.bindAddress ?? "0.0.0.0";
    const tunnel = await startHboneServer({
      host: bind,
      port: s.tunnelPort,
      tls,
      decide: (req) => decideInbound(currentView(), { ...req, isLocal }, onUnknown),
      telemetry,
      logger: log.child({ component: "hbone" }),
    });
    cleanups.push(() => tunnel.close());
    const outbound = await startOutboundListener({
      host: s.capture === "none" ? (s.bindAddress ?? "127.0.0.1") : bind,
      port: s.outboundPort,
      mode: s.capture === "none" ? "explicit" : "capture",
      context: {
        view: currentView,
        picker: createEndpointPicker({ clock: o.clock, ...(o.random ? { random: o.random } : {}) }),
        pool,
        tls,
        telemetry,
        logger: log.child({ component: "outbound" }),
        peerTunnelPort: s.peerTunnelPort ?? s.tunnelPort,
        workload: {
          name: o.workload.name,
          namespace: o.workload.namespace,
          service: self.canonicalService,
          version: self.canonicalRevision,
        },
      },
    });
    cleanups.push(() => outbound.close());
    const inbound = s.capture === "none" ? undefined : await startInboundListener({
      host: bind,
      port: s.inboundPort,
      view: currentView,
      destination: "original",
      telemetry,
      logger: log.child({ component: "inbound" }),
      onUnknown,
    });
    if (inbound) cleanups.push(() => inbound.close());

    let dnsAddr: string | undefined;
    if (s.dnsAddr !== "") {
      const { startDnsProxy } = await import("./dns_proxy.ts");
      const dns = await startDnsProxy({
        addr: s.dnsAddr,
        view: currentView,
        ...(s.dnsUpstreams ? { upstreams: [...s.dnsUpstreams] } : {}),
        logger: log.child({ component: "dns" }),
      });
      cleanups.push(() => dns.stop());
      dnsAddr = dns.addr;
    }

    if (o.view.kind === "xds") {
      const { startNodeProxyXds } = await import("./xds_client.ts");
      const xds = startNodeProxyXds({
        discoveryAddr: o.view.discoveryAddr,
        ...(o.view.tls ? { tls: o.view.tls } : {}),
        node: o.view.node,
        logger: log.child({ component: "node-proxy-xds" }),
        clock: o.clock,
        onView(v: NodeProxyView) {
          view = v;
          log.info("node proxy view updated", {
            version: v.version,
            services: v.services.length,
            clusters: v.clusters.size,
          });
          onViewChange?.(v);
        },
      });
      cleanups.push(() => xds.stop());
    }

    if (s.capture !== "none") {
      const { installCapture } = await import("./capture.ts");
      const dnsPort = dnsAddr ? splitHostPort(dnsAddr)?.port ?? 15053 : 15053;
      const v = currentView();
      const capture = await installCapture({
        mode: s.capture,
        backend: s.captureBackend,
        outboundPort: outbound.port,
        inboundPort: inbound!.port,
        dnsPort,
        tunnelPort: tunnel.port,
        excludeUids: [...s.excludeUids],
        excludePorts: [...s.excludePorts],
        excludeCidrs: [...s.excludeCidrs],
        inboundPorts: inboundPorts(v),
        meshCidrs: meshCidrs(v),
        captureDns: s.dnsCapture && dnsAddr !== undefined,
        logger: log.child({ component: "capture" }),
      });
      // Removed first on stop: pushed last, cleanups run in reverse.
      cleanups.push(() => capture.remove());
      let last = JSON.stringify([inboundPorts(v), meshCidrs(v)]);
      let updating: Promise<void> = Promise.resolve();
      onViewChange = (nv) => {
        const key = JSON.stringify([inboundPorts(nv), meshCidrs(nv)]);
        if (key === last) return;
        last = key;
        updating = updating.then(() =>
          capture.update({ inboundPorts: inboundPorts(nv), meshCidrs: meshCidrs(nv) }).catch((err) =>
            log.error("updating the capture rules failed", { err: errorMessage(err) })
          )
        );
      };
      onViewChange(currentView()); // a view that arrived while the rules were being installed
      log.info("node proxy capture installed", { backend: capture.backend, mode: s.capture });
    }

    log.info("node proxy started", {
      outbound: outbound.addr,
      inbound: inbound?.addr ?? null,
      tunnel: tunnel.addr,
      dns: dnsAddr ?? null,
      capture: s.capture,
    });
    let stopping: Promise<void> | undefined;
    return {
      addrs: {
        outbound: outbound.addr,
        tunnel: tunnel.addr,
        ...(inbound ? { inbound: inbound.addr } : {}),
        ...(dnsAddr ? { dns: dnsAddr } : {}),
      },
      view: currentView,
      certificateChanged: () => void tls.refresh(),
      stop: () => (stopping ??= stopAll()),
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
