/**
 * Config sources. A source watches a place that holds configuration (a directory, etcd, the
 * Kubernetes API, another galley over MCP) and reports it as *origins*: named units of content
 * (a file, a key, an object) that galley parses, validates and merges into its snapshot.
 *
 * The interface fits list-then-watch stores: `replace` carries a full listing (the initial one,
 * or a re-list after a lost watch), `update` carries changes, and both may carry the store's
 * revision (etcd revision, Kubernetes resourceVersion, xDS version) so a source can resume.
 */

/** The content of one origin. */
export interface OriginContent {
  /** Stable name within the source, e.g. a file path or an etcd key. Used in diagnostics. */
  readonly origin: string;
  /** YAML or JSON text (one or more documents). */
  readonly content: string | Uint8Array;
  /** The store's version of this origin, if it has one. */
  readonly version?: string;
}

/** An origin that could not be read: its resources stay as they were and it is marked rejected. */
export interface OriginError {
  readonly origin: string;
  readonly error: string;
}

/** An origin that is gone: its resources are removed. */
export interface OriginDeleted {
  readonly origin: string;
  readonly deleted: true;
}

/** One change reported by a source. */
export type OriginChange = OriginContent | OriginError | OriginDeleted;

/**
 * What a sink did with a listing or an update. Not applied: the change as a whole broke a bound
 * (total resources or bytes, or a source emptied at once) and the sink kept what it had. The
 * source must then deliver its next change as a full `replace`, since the sink does not hold
 * the state the refused change would have led to.
 */
export type SinkVerdict = { readonly applied: true } | { readonly applied: false; readonly reason: string };

/** Problems of a source as a whole, not of one origin. */
export interface SourceProblems {
  /**
   * Why the source's current listing was not delivered, if it was not (a walk over the file
   * limit, a directory that cannot be read); the sink keeps what it had.
   */
  readonly withheld?: string;
  /** What the source skipped or wants seen, e.g. a directory loop. */
  readonly warnings: readonly string[];
}

/** Where a source delivers what it sees. Calls are synchronous and never concurrent. */
export interface SourceSink {
  /**
   * The complete current state. Origins the sink knows from this source but that are absent
   * here are removed. Called once when the source starts, again after a re-list, and for the
   * next change after a refused one.
   */
  replace(origins: readonly (OriginContent | OriginError)[], revision?: string): SinkVerdict;
  /** Changes since the last call. */
  update(changes: readonly OriginChange[], revision?: string): SinkVerdict;
  /** The source's current problems; each call replaces the previous report. */
  report(problems: SourceProblems): void;
}

/** A place configuration comes from. */
export interface ConfigSource {
  /** Human-readable name, e.g. "dir:/etc/meshd/config" or "xds://10.0.0.1:15010". */
  readonly name: string;
  /**
   * Starts watching. Rejects if the source is misconfigured (a missing directory, a bad
   * address). A local source delivers its first `replace` before resolving; a remote one may
   * deliver it later, and keeps retrying while its store is unreachable, leaving the sink's
   * state as it was.
   */
  start(sink: SourceSink): Promise<void>;
  /** True once the first `replace` was delivered. */
  synced(): boolean;
  /** Stops watching; no sink call happens after it resolves. */
  stop(): Promise<void>;
}

/** Narrows an OriginChange. */
export function isDeleted(c: OriginChange): c is OriginDeleted {
  return "deleted" in c;
}

/** Narrows an OriginChange. */
export function isError(c: OriginChange): c is OriginError {
  return "error" in c;
}
