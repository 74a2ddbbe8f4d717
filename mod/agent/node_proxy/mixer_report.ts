/**
 * Reports each closed node-proxy connection to mixer as an Istio TCP attribute bag
 * (`connection.event: close`, bytes each way, duration, both principals, the destination service
 * and port, mTLS), through mixer's Report client, which batches. Mixer's rules and adapters (the
 * Prometheus adapter's istio_tcp_* metrics among them) then see VM connections as they see an
 * Envoy sidecar's TCP access logs.
 *
 * @module
 */
import type { AttributeBag } from "../../mixer/mod.ts";
import type { Logger } from "../../shared/logger.ts";
import type { AccessLogEntry } from "./telemetry.ts";

/** The IPv4 address as the four bytes Istio's `ip` attributes carry; undefined otherwise. */
function ipv4Bytes(address: string): Uint8Array | undefined {
  const parts = address.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) < 256)) return undefined;
  return Uint8Array.from(parts.map(Number));
}

/** The attribute bag of one closed connection. */
export function connectionBag(e: AccessLogEntry): AttributeBag {
  const bag: AttributeBag = {
    "context.protocol": "tcp",
    "api.protocol": "tcp",
    "context.reporter.kind": e.reporter === "source" ? "outbound" : "inbound",
    "connection.event": "close",
    "connection.received.bytes": e.bytesReceived,
    "connection.sent.bytes": e.bytesSent,
    "connection.duration": e.durationMs,
    "connection.mtls": e.security === "mutual_tls",
    "destination.port": e.destinationPort,
    "source.address": e.sourceAddress,
    "destination.address": e.destinationAddress,
  };
  const set = (name: string, v: unknown) => {
    if (v !== undefined && v !== "") bag[name] = v;
  };
  set("source.ip", ipv4Bytes(e.sourceAddress.replace(/:\d+$/, "")));
  set("destination.ip", ipv4Bytes(e.destinationAddress));
  set("source.principal", e.sourcePrincipal);
  set("destination.principal", e.destinationPrincipal);
  set("source.workload.name", e.sourceWorkload);
  set("source.workload.namespace", e.sourceNamespace);
  set("destination.workload.name", e.destinationWorkload);
  set("destination.workload.namespace", e.destinationNamespace);
  set("destination.service.host", e.destinationService);
  set("destination.service.name", e.destinationService?.split(".")[0]);
  set("destination.service.namespace", e.destinationServiceNamespace);
  return bag;
}

/** A sink for closed connections that reports them to mixer at `address` (host:port, plaintext). */
export interface MixerReporter {
  report(e: AccessLogEntry): void;
  close(): Promise<void>;
}

/** Creates the reporter; failures are logged (at most once a second, by the client). */
export async function createMixerReporter(address: string, logger: Logger): Promise<MixerReporter> {
  const { createMixerClient } = await import("../../mixer/lazy.ts");
  const client = createMixerClient({
    address,
    onError: (err) => logger.warn("mixer report failed", { addr: address, err: String(err) }),
  });
  return {
    report: (e) => client.report(connectionBag(e)),
    close: () => client.close(),
  };
}
