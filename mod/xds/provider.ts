/**
 * What the xDS stream server sees of the world: providers that say which resources a client
 * should have, and notice when that changes (go-control-plane's split: the provider decides
 * *what* to send, the stream server decides *how*).
 */
import type { Any } from "@bufbuild/protobuf/wkt";
import type { Node } from "#gen/envoy/config/core/v3/base_pb.ts";
import type { PeerCertificate } from "../grpc/raw.ts";

/** A connected xDS client, as providers see it. */
export interface XdsClient {
  /** Unique per stream. */
  readonly connectionId: string;
  /** The node the client sent in its first request. */
  readonly node: Node;
  /** The client's certificate, on TLS connections where it presented one. */
  readonly peer?: PeerCertificate;
}

/** One named resource at one version. */
export interface XdsResource {
  readonly name: string;
  /** Changes whenever the resource's content changes (a content hash). */
  readonly version: string;
  /** The encoded resource. Providers share one Any per distinct content. */
  readonly resource: Any;
}

/** Serves resources of some type URLs. */
export interface ResourceProvider {
  /** Type URLs this provider answers for; each type URL has one provider. */
  readonly typeUrls: readonly string[];
  /**
   * False while the provider has nothing authoritative to say (its inputs are still loading);
   * nothing is sent until it turns true and the provider notifies its watchers. Absent means
   * always ready.
   */
  ready?(): boolean;
  /**
   * The resources of `typeUrl` the client should have now, keyed by name. `names` is what the
   * client subscribed to ("*" for a wildcard subscription); the server sends only those, so a
   * provider may return more, but must include every subscribed name it can produce (some
   * resources exist only when asked for by name). Must be cheap when nothing changed
   * (providers cache). Throwing refuses the request with the error's message (a gRPC error
   * ending the stream; a ConnectError keeps its code). During a push caused by `watch`, a
   * ConnectError ends that client's stream the same way; other errors are logged and the
   * stream stays.
   */
  resources(
    client: XdsClient,
    typeUrl: string,
    names: ReadonlySet<string> | "*",
  ): ReadonlyMap<string, XdsResource>;
  /**
   * Registers a listener called when resources of some type URLs may have changed, for every
   * client (when `clients` is undefined) or those it selects. Returns an unsubscribe function.
   */
  watch(listener: (typeUrls: ReadonlySet<string>, clients?: (c: XdsClient) => boolean) => void): () => void;
}

/** Events the stream server reports, for metrics and debug pages. All methods are optional. */
export interface XdsObserver {
  connected?(client: XdsClient): void;
  disconnected?(client: XdsClient): void;
  /** A response was sent. */
  pushed?(client: XdsClient, typeUrl: string, version: string, resources: number): void;
  /** The client accepted `version`. */
  acked?(client: XdsClient, typeUrl: string, version: string): void;
  /** The client rejected `version`, keeping its previous config. */
  nacked?(client: XdsClient, typeUrl: string, version: string, message: string): void;
}
