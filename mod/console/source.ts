/**
 * What the console reads, as the daemon's assembly hands it over: the same sources the /debug/
 * endpoints serve (called in process, never over HTTP), galley's config store, and the metrics
 * registry. Also the shapes of the debug answers the pages read, kept loose on purpose: a field a
 * module does not report shows as absent, it never breaks a page.
 *
 * @module
 */
import type { ConfigStore, Diagnostic, Resource } from "../galley/mod.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";

/** The daemon's state the console shows. */
export interface ConsoleSource {
  /** The modules running, those not ready yet, and whether shutdown began. */
  readiness(): { modules: readonly string[]; notReady: readonly string[]; stopping: boolean };
  /**
   * The JSON a `/debug/<path>` handler answers, called in process with `query` as its query
   * string; undefined when no handler has that path (the module is not running) or it failed.
   */
  debug(path: string, query?: Readonly<Record<string, string>>): Promise<unknown>;
  /** Galley's store (absent when galley does not run here). */
  readonly config?: ConfigStore;
  /** Galley's analyzers over accepted resources (absent: no findings are shown). */
  analyze?(resources: readonly Resource[]): readonly Diagnostic[];
  /** The daemon's metrics (refusal counters for the security page). */
  readonly metrics?: MetricsRegistry;
  /** Epoch milliseconds. */
  now(): number;
}

/** One edge of /debug/servicegraph. */
export interface GraphEdgeView {
  readonly source: string;
  readonly destination: string;
  readonly requestRate: number;
  readonly errorRate: number;
  readonly requests: number;
  readonly errors: number;
  readonly latencyP50Ms?: number;
  readonly latencyP99Ms?: number;
}

/** /debug/servicegraph. */
export interface GraphView {
  readonly windowMs: number;
  readonly edges: readonly GraphEdgeView[];
  readonly dropped: number;
  /** Edges before a filter or limit kept only `edges` (absent: all are there). */
  readonly total?: number;
}

/** One type's state in /debug/syncz. */
export interface TypeSyncView {
  readonly state: string;
  readonly sentVersion?: string;
  readonly ackedVersion?: string;
  readonly nackedVersion?: string;
  readonly nackMessage?: string;
  readonly resources?: number;
  readonly sentBytes?: number;
}

/** One proxy in /debug/syncz. */
export interface ProxySyncView {
  readonly proxy: string;
  readonly connection: string;
  readonly mode: string;
  readonly connectedAt: string;
  readonly types: Readonly<Record<string, TypeSyncView>>;
  readonly grpcUnsupported?: number;
}

/** A certificate as /debug/ca describes it. */
export interface CertView {
  readonly subject: string;
  readonly serial: string;
  readonly notAfter: string;
  readonly fingerprint: string;
  readonly signing?: boolean;
  readonly leavesValidUntil?: string | null;
}

/** /debug/ca. */
export interface CaView {
  readonly ready?: boolean;
  readonly mode?: string;
  readonly trustDomain?: string | null;
  readonly signing?: CertView;
  readonly roots?: readonly CertView[];
}

/** Reads a debug answer as an object, or undefined. */
export function asObject(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v as Record<string, unknown> : undefined;
}

/** Reads a debug answer as an array (empty when it is not one). */
export function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** The windows the graph page offers ("": mixer's default window). */
export const GRAPH_WINDOWS: readonly string[] = ["", "1m", "5m", "15m"];

/** A `?window=` the page offers, else "" (the default window). */
export function graphWindow(text: string | undefined): string {
  return text !== undefined && GRAPH_WINDOWS.includes(text) ? text : "";
}

/** The service graph over `window` (one of {@link GRAPH_WINDOWS}), or an empty one when mixer does not run. */
export async function readGraph(src: ConsoleSource, window = ""): Promise<GraphView> {
  const g = asObject(await src.debug("servicegraph", window === "" ? undefined : { window }));
  return {
    windowMs: typeof g?.windowMs === "number" ? g.windowMs : 0,
    edges: asArray(g?.edges) as GraphEdgeView[],
    dropped: typeof g?.dropped === "number" ? g.dropped : 0,
  };
}

/** The proxies' sync state, empty when pilot does not run. */
export async function readSync(src: ConsoleSource): Promise<readonly ProxySyncView[]> {
  return asArray(await src.debug("syncz")) as ProxySyncView[];
}

/** The CA's state, or undefined when citadel does not run. */
export async function readCa(src: ConsoleSource): Promise<CaView | undefined> {
  return asObject(await src.debug("ca")) as CaView | undefined;
}
