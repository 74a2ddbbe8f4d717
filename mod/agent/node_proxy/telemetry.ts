/**
 * The node proxy's TCP telemetry: Istio's TCP metrics (istio_tcp_connections_opened_total,
 * istio_tcp_connections_closed_total, istio_tcp_sent_bytes_total, istio_tcp_received_bytes_total)
 * with Istio's labels on the agent's metrics registry (the workloads' app, version and canonical
 * labels filled by telemetry_workloads.ts), and one JSON access-log entry per
 * connection with both identities, bytes, duration, the decision and the audit flag. Bytes are
 * counted from the downstream's side as Istio does: received is what the connection's client
 * sent, sent is what it was sent back.
 *
 * @module
 */
import { Counter } from "prom-client";
import type { Clock } from "../../shared/clock.ts";
import type { MetricsRegistry } from "../../shared/metrics.ts";

/** Istio's TCP metric labels, in the order Istio lists them. */
export const TCP_LABELS = [
  "reporter",
  "source_workload",
  "source_workload_namespace",
  "source_principal",
  "source_app",
  "source_version",
  "source_canonical_service",
  "source_canonical_revision",
  "destination_workload",
  "destination_workload_namespace",
  "destination_principal",
  "destination_app",
  "destination_version",
  "destination_canonical_service",
  "destination_canonical_revision",
  "destination_service",
  "destination_service_name",
  "destination_service_namespace",
  "request_protocol",
  "response_flags",
  "connection_security_policy",
] as const;

/** What is known about one connection when it opens (and may be learnt later). */
export interface ConnectionInfo {
  /** `source` for outbound (15001), `destination` for inbound (15006, 15008). */
  readonly reporter: "source" | "destination";
  readonly sourceAddress: string;
  readonly sourceWorkload?: string;
  readonly sourceNamespace?: string;
  readonly sourcePrincipal?: string;
  /** Serial number (hex) of the peer's certificate on a tunnelled inbound connection. */
  readonly sourceCertSerial?: string;
  /** The source workload's `app` label (else its canonical service), and the rest of its labels. */
  readonly sourceApp?: string;
  readonly sourceVersion?: string;
  readonly sourceCanonicalService?: string;
  readonly sourceCanonicalRevision?: string;
  readonly destinationAddress: string;
  readonly destinationPort: number;
  readonly destinationWorkload?: string;
  readonly destinationNamespace?: string;
  readonly destinationPrincipal?: string;
  /** The destination workload's `app` label (else its canonical service), and the rest of its labels. */
  readonly destinationApp?: string;
  readonly destinationVersion?: string;
  readonly destinationCanonicalService?: string;
  readonly destinationCanonicalRevision?: string;
  /** The service's host name, when the destination is a mesh service. */
  readonly destinationService?: string;
  readonly destinationServiceNamespace?: string;
  /** The endpoint the connection went to (outbound). */
  readonly upstream?: string;
  /** hbone, mtls, plaintext, passthrough. */
  readonly transport?: string;
  /** `mutual_tls` or `none`. */
  readonly security?: "mutual_tls" | "none";
  /** Envoy's response flags (UF upstream failure, UH no healthy upstream, UAEX refused, ...). */
  readonly responseFlags?: string;
  /** allow or deny, and the deciding policy or reason. */
  readonly decision?: string;
  readonly reason?: string;
  /** The RBAC policy that decided, if one did. */
  readonly policy?: string;
  readonly audit?: boolean;
}

/** One connection's telemetry. */
export interface ConnectionTelemetry {
  /** Adds or changes what is known (the upstream, identities, the decision). */
  update(info: Partial<ConnectionInfo>): void;
  /** Records the close with the bytes each way; counts and logs once. */
  close(bytes: { received: number; sent: number }, error?: string): void;
}

/** One access-log entry. */
export type AccessLogEntry = ConnectionInfo & {
  readonly start: string;
  readonly durationMs: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly error?: string;
};

/** The node proxy's telemetry sink. */
export interface TcpTelemetry {
  /** Counts a connection as opened (with what is known now) and returns its handle. */
  open(info: ConnectionInfo): ConnectionTelemetry;
}

/** Options of createTcpTelemetry. */
export interface TcpTelemetryOptions {
  readonly registry: MetricsRegistry;
  readonly clock: Clock;
  /** Receives each access-log entry (the node proxy writes them as JSON log lines). */
  readonly accessLog: (entry: AccessLogEntry) => void;
}

/** The labels of a connection, with Istio's "unknown" for what is not known. */
export function tcpLabels(i: ConnectionInfo): Record<(typeof TCP_LABELS)[number], string> {
  const u = (v: string | undefined) => (v === undefined || v === "" ? "unknown" : v);
  return {
    reporter: i.reporter,
    source_workload: u(i.sourceWorkload),
    source_workload_namespace: u(i.sourceNamespace ?? namespaceOf(i.sourcePrincipal)),
    source_principal: u(i.sourcePrincipal),
    source_app: u(i.sourceApp),
    source_version: u(i.sourceVersion),
    source_canonical_service: u(i.sourceCanonicalService),
    source_canonical_revision: u(i.sourceCanonicalRevision),
    destination_workload: u(i.destinationWorkload),
    destination_workload_namespace: u(i.destinationNamespace ?? namespaceOf(i.destinationPrincipal)),
    destination_principal: u(i.destinationPrincipal),
    destination_app: u(i.destinationApp),
    destination_version: u(i.destinationVersion),
    destination_canonical_service: u(i.destinationCanonicalService),
    destination_canonical_revision: u(i.destinationCanonicalRevision),
    destination_service: u(i.destinationService ?? `${i.destinationAddress}:${i.destinationPort}`),
    destination_service_name: u(i.destinationService?.split(".")[0]),
    destination_service_namespace: u(i.destinationServiceNamespace),
    request_protocol: "tcp",
    response_flags: i.responseFlags === undefined || i.responseFlags === "" ? "-" : i.responseFlags,
    connection_security_policy: i.security ?? "none",
  };
}

/** The namespace in a SPIFFE identity (`spiffe://TD/ns/NS/sa/SA`). */
export function namespaceOf(principal: string | undefined): string | undefined {
  return principal === undefined ? undefined : /\/ns\/([^/]+)\//.exec(principal)?.[1];
}

/** Creates the metrics on `registry` and returns the sink. Call once per registry. */
export function createTcpTelemetry(o: TcpTelemetryOptions): TcpTelemetry {
  const labelNames = [...TCP_LABELS];
  const opened = new Counter({
    name: "istio_tcp_connections_opened_total",
    help: "TCP connections opened, by Istio's labels",
    labelNames,
    registers: [o.registry],
  });
  const closed = new Counter({
    name: "istio_tcp_connections_closed_total",
    help: "TCP connections closed, by Istio's labels",
    labelNames,
    registers: [o.registry],
  });
  const sent = new Counter({
    name: "istio_tcp_sent_bytes_total",
    help: "Bytes sent back to the connection's client, by Istio's labels",
    labelNames,
    registers: [o.registry],
  });
  const received = new Counter({
    name: "istio_tcp_received_bytes_total",
    help: "Bytes received from the connection's client, by Istio's labels",
    labelNames,
    registers: [o.registry],
  });
  return {
    open(first) {
      let info = first;
      const start = o.clock.now();
      opened.inc(tcpLabels(info));
      let done = false;
      return {
        update(more) {
          info = { ...info, ...more };
        },
        close(bytes, error) {
          if (done) return;
          done = true;
          const labels = tcpLabels(info);
          closed.inc(labels);
          if (bytes.sent > 0) sent.inc(labels, bytes.sent);
          if (bytes.received > 0) received.inc(labels, bytes.received);
          o.accessLog({
            ...info,
            start: new Date(start).toISOString(),
            durationMs: o.clock.now() - start,
            bytesReceived: bytes.received,
            bytesSent: bytes.sent,
            ...(error !== undefined ? { error } : {}),
          });
        },
      };
    },
  };
}
