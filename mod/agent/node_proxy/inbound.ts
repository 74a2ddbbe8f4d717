/**
 * Inbound on the node proxy: the decision for a connection to local port P (PeerAuthentication
 * of the port's rule, or of the rule for every port, then its RBAC), shared by the HBONE server
 * (tunnelled, with the peer's SPIFFE identity) and the 15006 listener for plaintext connections
 * the capture rules redirected (their original destination gives P). STRICT accepts only
 * tunnelled connections; PERMISSIVE both; DISABLE both too, since the tunnel is the node proxy's
 * own transport. A port the view says nothing about is accepted (PERMISSIVE, no RBAC) and goes to
 * the address and port it was meant for.
 *
 * @module
 */
import { createServer, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { originalDestination, type SocketAddress } from "./original_dst.ts";
import { evaluateRbac, type UnknownMatcher } from "./rbac.ts";
import { relay } from "./relay.ts";
import { closeServer, dial, listen, trackConnections } from "./sockets.ts";
import type { TcpTelemetry } from "./telemetry.ts";
import type { InboundPort, NodeProxyView } from "./view.ts";

/** One inbound connection to decide on. */
export interface InboundRequest {
  /** The local port the connection is for. */
  readonly port: number;
  /** The address it was sent to (this machine's). */
  readonly destinationAddress: string;
  readonly sourceAddress: string;
  /** The peer's SPIFFE identity for a tunnelled (mTLS) connection; undefined for plaintext. */
  readonly peer?: string;
  /**
   * Whether an address is this machine's. When given, a connection whose target comes from the
   * request rather than from the view (no rule, or a rule without a target address) must name
   * one, so that a tunnel cannot be used to reach other machines.
   */
  readonly isLocal?: (address: string) => boolean;
}

/** The verdict on an inbound connection. */
export interface InboundDecision {
  readonly allowed: boolean;
  /** Why it was refused (PeerAuthentication or RBAC). */
  readonly reason?: string;
  /** The RBAC policy that decided, if any. */
  readonly policy?: string;
  /** A LOG (AUDIT) policy matched. */
  readonly audit: boolean;
  /** The PeerAuthentication mode applied. */
  readonly mtls: InboundPort["mtls"];
  /** Where to connect when allowed. */
  readonly target: { readonly address: string; readonly port: number };
}

/** The rule for `port`: its own, else the rule for every port (0), else undefined. */
export function inboundRule(view: NodeProxyView, port: number): InboundPort | undefined {
  return view.inbound.get(port) ?? view.inbound.get(0);
}

/** Decides on `req` under `view`. Pure apart from `onUnknown`. */
export function decideInbound(
  view: NodeProxyView,
  req: InboundRequest,
  onUnknown?: UnknownMatcher,
): InboundDecision {
  const rule = inboundRule(view, req.port);
  const target = {
    address: rule && rule.target.address !== "" ? rule.target.address : req.destinationAddress,
    port: rule && rule.target.port !== 0 ? rule.target.port : req.port,
  };
  const mtls = rule?.mtls ?? "PERMISSIVE";
  const fromRequest = !rule || rule.target.address === "";
  if (fromRequest && req.isLocal && !req.isLocal(req.destinationAddress)) {
    return {
      allowed: false,
      reason: `${req.destinationAddress} is not an address of this machine`,
      audit: false,
      mtls,
      target,
    };
  }
  if (mtls === "STRICT" && req.peer === undefined) {
    return {
      allowed: false,
      reason: `PeerAuthentication STRICT on port ${req.port} refuses plaintext`,
      audit: false,
      mtls,
      target,
    };
  }
  const rbac = evaluateRbac(rule?.rbac ?? [], {
    ...(req.peer !== undefined ? { principal: req.peer } : {}),
    sourceAddress: req.sourceAddress,
    destinationAddress: req.destinationAddress,
    destinationPort: req.port,
  }, onUnknown);
  return {
    allowed: rbac.allowed,
    ...(rbac.reason !== undefined ? { reason: `RBAC: ${rbac.reason}` } : {}),
    ...(rbac.policy !== undefined ? { policy: rbac.policy } : {}),
    audit: rbac.audit,
    mtls,
    target,
  };
}

/** Options of startInboundListener. */
export interface InboundListenerOptions {
  readonly host: string;
  readonly port: number;
  readonly view: () => NodeProxyView;
  /**
   * How the destination of a connection is known: `original` from SO_ORIGINAL_DST (the 15006
   * capture listener), `local` from the socket's own address (a listener bound on the service
   * port itself).
   */
  readonly destination: "original" | "local";
  readonly telemetry: TcpTelemetry;
  readonly logger: Logger;
  readonly onUnknown?: UnknownMatcher;
  /** Connect timeout to the local application (default 10 s). */
  readonly connectTimeoutMs?: number;
}

/** A listening inbound (plaintext) server. */
export interface InboundListener {
  /** HOST:PORT it is bound to. */
  readonly addr: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Starts the plaintext inbound listener. Rejects naming the address when it cannot bind. */
export async function startInboundListener(o: InboundListenerOptions): Promise<InboundListener> {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    socket.setNoDelay(true);
    void handle(o, socket).catch((err) => {
      o.logger.warn("inbound connection failed", { err: errorMessage(err) });
      socket.destroy();
    });
  });
  const open = trackConnections(server);
  const port = await listen(server, o.host, o.port, "inbound");
  return {
    addr: `${o.host}:${port}`,
    port,
    close: () => closeServer(server, open),
  };
}

async function destinationOf(o: InboundListenerOptions, s: Socket): Promise<SocketAddress | undefined> {
  if (o.destination === "local") {
    return {
      address: s.localAddress ?? "",
      port: s.localPort ?? 0,
      family: s.localFamily === "IPv6" ? 6 : 4,
    };
  }
  return await originalDestination(s);
}

async function handle(o: InboundListenerOptions, socket: Socket): Promise<void> {
  socket.on("error", () => {});
  const dest = await destinationOf(o, socket);
  if (!dest) {
    o.logger.warn("inbound connection was not redirected (no original destination); closing", {
      source: socket.remoteAddress,
    });
    socket.destroy();
    return;
  }
  const source = socket.remoteAddress ?? "";
  const d = decideInbound(o.view(), {
    port: dest.port,
    destinationAddress: dest.address,
    sourceAddress: source,
  }, o.onUnknown);
  const t = o.telemetry.open({
    reporter: "destination",
    sourceAddress: source,
    destinationAddress: dest.address,
    destinationPort: dest.port,
    security: "none",
    transport: "plaintext",
    decision: d.allowed ? "allow" : "deny",
    audit: d.audit,
    ...(d.reason !== undefined ? { reason: d.reason } : {}),
    ...(d.allowed ? {} : { responseFlags: "UAEX" }),
  });
  if (!d.allowed) {
    socket.destroy();
    t.close({ received: 0, sent: 0 });
    return;
  }
  let upstream: Socket;
  try {
    upstream = await dial(d.target.address, d.target.port, o.connectTimeoutMs ?? 10_000);
  } catch (err) {
    socket.destroy();
    t.update({ responseFlags: "UF" });
    t.close({ received: 0, sent: 0 }, errorMessage(err));
    return;
  }
  socket.resume();
  const r = await relay(socket, upstream).done;
  t.close({ received: r.aToB, sent: r.bToA }, r.error);
}

/**
 * Whether `address` is one of this machine's: an interface address, or `extra` (the workload's
 * instance IP). Loopback addresses count only when an interface has them (127.0.0.1, ::1).
 */
export function isLocalAddress(address: string, extra: readonly string[] = []): boolean {
  const plain = address.startsWith("::ffff:") ? address.slice(7) : address;
  if (extra.includes(plain)) return true;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.address === plain) return true;
  }
  return false;
}
