/**
 * The settings that bound what peers may hold on every listener of `meshd serve` (gRPC, gRPC
 * over TLS, admin, webhook, metrics): connections in total and per source address, handshake and idle
 * timeouts, HTTP/2 streams, unread output and gRPC keepalive. Each listener has its own count,
 * so an attack on one leaves the others served. The daemon and galley's webhook both read them.
 */
import type { Settings } from "../cli/flags.ts";
import type { SettingSpec } from "../cli/setting.ts";
import { DEFAULT_GRPC_LIMITS, type GrpcListenerLimits } from "../grpc/server.ts";

const D = DEFAULT_GRPC_LIMITS;

/** The listener settings of `meshd serve`. */
export const LISTENER_SETTINGS: readonly SettingSpec[] = [
  {
    name: "max-connections",
    kind: { type: "int", min: 1 },
    default: D.maxConnections,
    help:
      "most connections open at once on each listener (gRPC, gRPC TLS, admin, webhook, metrics); more are closed at once",
  },
  {
    name: "max-connections-per-source",
    kind: { type: "int", min: 1 },
    default: D.maxConnectionsPerSource,
    help: "most connections open at once from one source address on each listener (loopback included)",
  },
  {
    name: "handshake-timeout",
    kind: { type: "duration" },
    default: D.handshakeTimeoutMs,
    help:
      "time a new connection has to finish TLS and the HTTP/2 preface (or send its first HTTP/1 request); 0 disables",
  },
  {
    name: "idle-timeout",
    kind: { type: "duration" },
    default: D.idleTimeoutMs,
    help: "a connection with no open streams or requests this long is closed (GOAWAY on HTTP/2); 0 disables",
  },
  {
    name: "max-concurrent-streams",
    kind: { type: "int", min: 1 },
    default: D.maxConcurrentStreams,
    help:
      "HTTP/2 streams one gRPC connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused",
  },
  {
    name: "max-unread-output-per-connection",
    kind: { type: "int", min: 65536 },
    default: D.maxUnreadOutputPerConnection,
    help:
      "response bytes queued on one gRPC connection and not yet read by its client; past it the sending stream is reset (must hold the largest response)",
  },
  {
    name: "grpc-keepalive-min-time",
    kind: { type: "duration" },
    default: D.keepaliveMinTimeMs,
    help: "shortest interval between a client's pings; clients pinging more often get GOAWAY too_many_pings",
  },
  {
    name: "grpc-keepalive-permit-without-calls",
    kind: { type: "bool" },
    default: D.keepalivePermitWithoutCalls,
    help: "allow pings at --grpc-keepalive-min-time on connections without calls (otherwise every 2h)",
  },
  {
    name: "grpc-keepalive-time",
    kind: { type: "duration" },
    default: D.keepaliveTimeMs,
    help: "interval of the server's own pings to find dead clients; 0 disables",
  },
  {
    name: "grpc-keepalive-timeout",
    kind: { type: "duration" },
    default: D.keepaliveTimeoutMs,
    help: "how long the server waits for a ping's answer before it closes the connection",
  },
];

/** The limits the listener settings give. */
export function listenerLimits(settings: Settings): GrpcListenerLimits {
  return {
    maxConnections: settings.number("max-connections"),
    maxConnectionsPerSource: settings.number("max-connections-per-source"),
    handshakeTimeoutMs: settings.number("handshake-timeout"),
    idleTimeoutMs: settings.number("idle-timeout"),
    maxConcurrentStreams: settings.number("max-concurrent-streams"),
    maxUnreadOutputPerConnection: settings.number("max-unread-output-per-connection"),
    keepaliveMinTimeMs: settings.number("grpc-keepalive-min-time"),
    keepalivePermitWithoutCalls: settings.bool("grpc-keepalive-permit-without-calls"),
    keepaliveTimeMs: settings.number("grpc-keepalive-time"),
    keepaliveTimeoutMs: settings.number("grpc-keepalive-timeout"),
  };
}
