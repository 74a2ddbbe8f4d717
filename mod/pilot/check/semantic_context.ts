/**
 * What the semantic checks share: the resource set they read, their options, and small pure
 * helpers (making a violation, reading addresses, unpacking the HTTP connection manager).
 *
 * @module
 */
import { isIP } from "node:net";
import type { Any } from "@bufbuild/protobuf/wkt";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Cluster } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import type { Address } from "#gen/envoy/config/core/v3/address_pb.ts";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { RouteConfiguration } from "#gen/envoy/config/route/v3/route_pb.ts";
import {
  type HttpConnectionManager,
  HttpConnectionManagerSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { TYPE_URLS } from "../translate/mod.ts";
import type { Violation } from "./violation.ts";

/** One proxy's resources of the four types, decoded. */
export interface EnvoyResourceSet {
  readonly clusters: readonly Cluster[];
  readonly endpoints: readonly ClusterLoadAssignment[];
  readonly listeners: readonly Listener[];
  readonly routes: readonly RouteConfiguration[];
}

/** The kind of proxy a set is for: Envoy sidecar, Envoy gateway, or proxyless gRPC. */
export type ProxyKind = "sidecar" | "router" | "proxyless";

/** Options of the semantic checks. */
export interface SemanticOptions {
  /**
   * SDS secret names the node agent serves this proxy; `default` and `ROOTCA` when absent
   * (gateway credential names are added by the caller, see configuredSecretNames).
   */
  readonly secretNames?: ReadonlySet<string>;
  readonly proxyKind: ProxyKind;
  /**
   * The set is a part of the proxy's resources (proxyless gRPC clients ask for resources by
   * name): rules that need the whole set (every EDS cluster has endpoints, every RDS name its
   * route configuration) are skipped.
   */
  readonly partial?: boolean;
}

/** The SDS secrets every proxy gets from its node agent (mod/agent/sds_server.ts). */
export const DEFAULT_SECRET_NAMES: ReadonlySet<string> = new Set(["default", "ROOTCA"]);

/** Type URLs of the four resource types. */
export const TYPE = TYPE_URLS;

/** A violation of `rule` by resource `resource` of type `typeUrl`. */
export function violation(
  rule: string,
  at: { typeUrl: string; resource: string; path: string },
  message: string,
): Violation {
  return { rule, typeUrl: at.typeUrl, resource: at.resource, path: at.path, message };
}

/** Where a violation sits: the resource and the path inside it. */
export interface Place {
  readonly typeUrl: string;
  readonly resource: string;
  readonly path: string;
}

/** `place` with `sub` appended to its path. */
export function under(place: Place, sub: string): Place {
  return { ...place, path: place.path ? `${place.path}.${sub}` : sub };
}

/** The socket address of an Address as `ip:port` (protocol prefixed for UDP), or undefined. */
export function socketKey(address: Address | undefined): string | undefined {
  if (address?.address.case !== "socketAddress") return undefined;
  const s = address.address.value;
  const port = s.portSpecifier.case === "portValue"
    ? String(s.portSpecifier.value)
    : s.portSpecifier.value ?? "";
  return `${s.protocol === 1 ? "udp:" : ""}${s.address.toLowerCase()}:${port}`;
}

/** Whether `text` is an IPv4 or IPv6 literal. */
export function isIpLiteral(text: string): boolean {
  return isIP(text) !== 0;
}

/** The type URL of a message type. */
export function typeUrlOf(typeName: string): string {
  return `type.googleapis.com/${typeName}`;
}

/** The HTTP connection manager packed in `any`, or undefined when it holds another type. */
export function unpackHcm(any: Any | undefined): HttpConnectionManager | undefined {
  if (!any || any.typeUrl !== typeUrlOf(HttpConnectionManagerSchema.typeName)) return undefined;
  return anyUnpack(any, HttpConnectionManagerSchema);
}

/** The names that occur more than once in `names`, each once, in first-seen order. */
export function duplicates(names: Iterable<string>): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) dup.add(n);
    else seen.add(n);
  }
  return [...dup];
}
