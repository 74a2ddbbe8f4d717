/**
 * The agent's ADS client to pilot: one HTTP/2 session (plaintext, or mutual TLS with the
 * workload's certificate) and a Connect client of Envoy's AggregatedDiscoveryService over it,
 * shared by the registration stream and the node proxy's subscription.
 *
 * @module
 */
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AggregatedDiscoveryService } from "#gen/envoy/service/discovery/v3/ads_pb.ts";

/** TLS to pilot: PEM roots, the workload's chain and key (mutual TLS), and the name to verify. */
export interface AdsTls {
  readonly ca: string;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  /** The name pilot's certificate must carry; unset, the address's host is checked. */
  readonly serverName?: string;
}

/** An ADS client on its own session; `close()` aborts the session and its streams. */
export interface AdsClient {
  readonly client: Client<typeof AggregatedDiscoveryService>;
  close(): void;
}

/** Opens an ADS client to `addr` (HOST:PORT), over TLS when `tls` is given. */
export function openAdsClient(addr: string, tls?: AdsTls): AdsClient {
  const url = `${tls ? "https" : "http"}://${addr}`;
  const manager = new Http2SessionManager(
    url,
    { pingIntervalMs: 30_000 },
    tls
      ? {
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        ALPNProtocols: ["h2"],
        ...(tls.serverName ? { servername: tls.serverName } : {}),
      }
      : {},
  );
  return {
    client: createClient(
      AggregatedDiscoveryService,
      createGrpcTransport({ baseUrl: url, sessionManager: manager }),
    ),
    close: () => manager.abort(),
  };
}
