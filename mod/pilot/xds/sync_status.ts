/**
 * Per-proxy sync status, as /debug/syncz serves it and `meshd proxy-status` prints it.
 */
import type { StreamStatus } from "../../xds/mod.ts";
import { TYPE_SHORT } from "./generator.ts";

/** How far a proxy is with one type. */
export type SyncState = "SYNCED" | "STALE" | "NACKED" | "NOT SENT";

/** One type of one proxy. */
export interface TypeSync {
  readonly state: SyncState;
  readonly sentVersion?: string;
  readonly ackedVersion?: string;
  readonly nackedVersion?: string;
  /** The client's error message for the last NACK. */
  readonly nackMessage?: string;
  readonly resources: number;
  /** Size of the last response sent, in bytes. */
  readonly sentBytes?: number;
  /** Set when that response was larger than clients likely accept: "SENT 26.7 MB > 4 MB client limit". */
  readonly sizeWarning?: string;
}

/** One connected proxy. */
export interface ProxySync {
  readonly proxy: string;
  readonly connection: string;
  readonly mode: "sotw" | "delta";
  readonly connectedAt: string;
  readonly types: Readonly<Partial<Record<"CDS" | "LDS" | "EDS" | "RDS", TypeSync>>>;
  /**
   * Proxyless gRPC only: how many settings its resources leave out or approximate (listed by
   * /debug/config_dump as grpcUnsupported); absent when none.
   */
  readonly grpcUnsupported?: number;
}

/**
 * The sync status of every stream that subscribed to pilot's types; `unsupported` counts what a
 * proxyless gRPC stream's config cannot express.
 */
export function syncStatus(
  streams: readonly StreamStatus[],
  unsupported: (s: StreamStatus) => number = () => 0,
): ProxySync[] {
  const out: ProxySync[] = [];
  for (const s of streams) {
    const types: Partial<Record<"CDS" | "LDS" | "EDS" | "RDS", TypeSync>> = {};
    for (const t of s.types) {
      const short = TYPE_SHORT[t.typeUrl];
      if (!short) continue;
      const state: SyncState = t.sentVersion === undefined
        ? "NOT SENT"
        : t.nackedVersion !== undefined && t.nackedVersion === t.sentVersion
        ? "NACKED"
        : t.ackedVersion === t.sentVersion
        ? "SYNCED"
        : "STALE";
      types[short] = {
        state,
        sentVersion: t.sentVersion,
        ackedVersion: t.ackedVersion,
        nackedVersion: t.nackedVersion,
        nackMessage: t.lastNack,
        resources: t.sentResources,
        sentBytes: t.sentBytes,
        sizeWarning: t.sizeWarning,
      };
    }
    if (Object.keys(types).length === 0) continue;
    const gaps = unsupported(s);
    out.push({
      proxy: s.nodeId,
      connection: s.connectionId,
      mode: s.mode,
      connectedAt: new Date(s.connectedAt).toISOString(),
      types,
      ...(gaps > 0 ? { grpcUnsupported: gaps } : {}),
    });
  }
  return out.sort((a, b) => (a.proxy < b.proxy ? -1 : a.proxy > b.proxy ? 1 : 0));
}
