/**
 * Envoy's semantic checks on listeners (LDS): what Envoy's listener manager and filter chain
 * manager refuse although every field is valid on its own, and the HTTP connection manager's
 * filter order. References are to Envoy's source tree (source/common/listener_manager/,
 * source/extensions/filters/network/http_connection_manager/) and the docs pages named per rule.
 *
 * @module
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { type CidrRange, SocketAddress_Protocol } from "#gen/envoy/config/core/v3/address_pb.ts";
import type {
  Filter,
  FilterChain,
  FilterChainMatch,
} from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { FilterChainMatchSchema } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { HttpConnectionManager } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import {
  duplicates,
  isIpLiteral,
  type Place,
  type ProxyKind,
  socketKey,
  TYPE,
  typeUrlOf,
  under,
  unpackHcm,
  violation,
} from "./semantic_context.ts";
import type { Violation } from "./violation.ts";

/**
 * Network filters Envoy registers as terminal (their factories' `isTerminalFilterByProto`):
 * they must be last in a filter chain, and a chain must end with one.
 */
const TERMINAL_NETWORK = new Set([
  "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
  "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
  "envoy.extensions.filters.network.direct_response.v3.Config",
  "envoy.extensions.filters.network.redis_proxy.v3.RedisProxy",
  "envoy.extensions.filters.network.thrift_proxy.v3.ThriftProxy",
  "envoy.extensions.filters.network.dubbo_proxy.v3.DubboProxy",
  "envoy.extensions.filters.network.echo.v3.Echo",
].map(typeUrlOf));

/** Network filters that are not terminal (a chain may not end with one). */
const NON_TERMINAL_NETWORK = new Set([
  "envoy.extensions.filters.network.rbac.v3.RBAC",
  "envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
  "envoy.extensions.filters.network.ratelimit.v3.RateLimit",
  "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
  "envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit",
  "envoy.extensions.filters.network.sni_cluster.v3.SniCluster",
  "envoy.extensions.filters.network.mongo_proxy.v3.MongoProxy",
  "envoy.extensions.filters.network.mysql_proxy.v3.MySQLProxy",
].map(typeUrlOf));

const HCM = typeUrlOf("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");

/** The only terminal HTTP filter of a downstream HTTP filter chain that meshd renders. */
const ROUTER = typeUrlOf("envoy.extensions.filters.http.router.v3.Router");

/** Listener-level checks of one set's listeners. */
export function checkListeners(listeners: readonly Listener[], kind: ProxyKind): Violation[] {
  const out: Violation[] = [];
  // lds_api.cc: "duplicate listener X found" (a response naming one listener twice is refused).
  for (const name of duplicates(listeners.map((l) => l.name))) {
    out.push(
      violation(
        "listener.unique_names",
        { typeUrl: TYPE.listener, resource: name, path: "name" },
        `duplicate listener ${name} found`,
      ),
    );
  }
  out.push(...uniqueAddresses(listeners));
  for (const l of listeners) out.push(...checkListener(l, kind));
  return out;
}

/**
 * listener_manager_impl.cc (hasListenerWithDuplicatedAddress): two listeners that bind to a port
 * may not share an address ("error adding listener: 'X' has duplicate address 'A' as existing
 * listener"). Listeners with bind_to_port false (a sidecar's per-port listeners behind
 * virtualOutbound), internal and API listeners are exempt.
 */
function uniqueAddresses(listeners: readonly Listener[]): Violation[] {
  const out: Violation[] = [];
  const owner = new Map<string, string>();
  for (const l of listeners) {
    if (l.bindToPort === false || l.apiListener) continue;
    const keys = [l.address, ...l.additionalAddresses.map((a) => a.address)].map(socketKey);
    keys.forEach((key, i) => {
      if (key === undefined) return;
      const first = owner.get(key);
      if (first !== undefined && first !== l.name) {
        out.push(violation(
          "listener.unique_address",
          {
            typeUrl: TYPE.listener,
            resource: l.name,
            path: i === 0 ? "address" : `additional_addresses[${i - 1}]`,
          },
          `error adding listener: '${l.name}' has duplicate address '${key}' as existing listener '${first}'`,
        ));
      } else owner.set(key, l.name);
    });
  }
  return out;
}

function checkListener(l: Listener, kind: ProxyKind): Violation[] {
  const out: Violation[] = [];
  const at: Place = { typeUrl: TYPE.listener, resource: l.name, path: "" };
  if (l.apiListener) {
    // listener_manager_impl.cc: an API listener is taken from the bootstrap only; one sent over
    // LDS is dropped with a warning ("can not be added because currently only one ApiListener
    // is allowed"), so an Envoy proxy silently lacks it. gRPC clients read only API listeners
    // (and server listeners, which have an address).
    if (kind !== "proxyless") {
      out.push(
        violation(
          "listener.api_listener_over_lds",
          under(at, "api_listener"),
          `listener ${l.name}: an ApiListener sent over LDS is ignored by Envoy`,
        ),
      );
      return out;
    }
    // xds_listener.cc: a client listener's api_listener must be an HttpConnectionManager.
    const hcm = unpackHcm(l.apiListener.apiListener);
    if (!hcm) {
      out.push(
        violation(
          "grpc.listener.api_listener_hcm",
          under(at, "api_listener.api_listener"),
          `listener ${l.name}: api_listener is not an HttpConnectionManager`,
        ),
      );
    } else out.push(...checkHcm(hcm, under(at, "api_listener.api_listener"), kind));
    return out;
  }
  // listener_impl.cc: "error adding listener named 'X': address is necessary".
  if (!l.address) {
    out.push(
      violation(
        "listener.address_required",
        under(at, "address"),
        `error adding listener named '${l.name}': address is necessary`,
      ),
    );
  }
  // listener_impl.cc: a UDP listener without QUIC options is connectionless: its work is done by
  // its listener filters, and filter chains are refused ("1 filter chain(s) specified for
  // connection-less UDP listener").
  const udp = l.address?.address.case === "socketAddress" &&
    l.address.address.value.protocol === SocketAddress_Protocol.UDP;
  if (udp && !l.udpListenerConfig?.quicOptions) {
    if (l.filterChains.length > 0 || l.defaultFilterChain) {
      out.push(
        violation(
          "listener.udp_filter_chains",
          under(at, "filter_chains"),
          `error adding listener '${l.name}': ${l.filterChains.length} filter chain(s) specified for connection-less UDP listener`,
        ),
      );
    }
    return out;
  }
  // listener_impl.cc: a TCP listener with neither filter chains nor a default filter chain
  // ("error adding listener 'X': no filter chains specified").
  if (
    l.filterChains.length === 0 && !l.defaultFilterChain && l.listenerSpecifier.case !== "internalListener"
  ) {
    out.push(
      violation(
        "listener.filter_chains_required",
        under(at, "filter_chains"),
        `error adding listener '${l.name}': no filter chains specified`,
      ),
    );
  }
  out.push(...filterChainMatches(l, at));
  l.filterChains.forEach((fc, i) =>
    out.push(...checkFilterChain(fc, under(at, `filter_chains[${i}]`), kind))
  );
  if (l.defaultFilterChain) {
    out.push(...checkFilterChain(l.defaultFilterChain, under(at, "default_filter_chain"), kind));
  }
  return out;
}

/** A CIDR range as Envoy keys it: the address masked to its prefix length. */
function cidrKey(r: CidrRange): string {
  const len = r.prefixLen ?? (r.addressPrefix.includes(":") ? 128 : 32);
  const parts = r.addressPrefix.split(".");
  if (parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p))) {
    const n = parts.reduce((a, p) => (a * 256) + Number(p), 0);
    const masked = len <= 0
      ? 0
      : Math.floor(n / 2 ** (32 - Math.min(len, 32))) * 2 ** (32 - Math.min(len, 32));
    return `${[24, 16, 8, 0].map((s) => Math.floor(masked / 2 ** s) % 256).join(".")}/${len}`;
  }
  return `${r.addressPrefix.toLowerCase()}/${len}`;
}

/** `values`, or one wildcard ("") when empty: Envoy's lookup tables treat an empty list as "any". */
function orAny<T>(values: readonly T[], key: (v: T) => string): string[] {
  return values.length === 0 ? [""] : values.map(key);
}

/**
 * Every leaf a FilterChainMatch occupies in Envoy's lookup tables (filter_chain_manager_impl.cc
 * addFilterChainForDestinationPorts ... addFilterChainForSourcePorts): destination port, then
 * destination IP, server name, transport protocol, application protocol, direct source IP,
 * source type, source IP, source port. Two chains on one leaf overlap.
 */
function matchLeaves(m: FilterChainMatch | undefined): string[] {
  const dims: string[][] = [
    [String(m?.destinationPort ?? 0)],
    orAny(m?.prefixRanges ?? [], cidrKey),
    orAny(m?.serverNames ?? [], (s) => s.toLowerCase()),
    [m?.transportProtocol ?? ""],
    orAny(m?.applicationProtocols ?? [], (s) => s),
    orAny(m?.directSourcePrefixRanges ?? [], cidrKey),
    [String(m?.sourceType ?? 0)],
    orAny(m?.sourcePrefixRanges ?? [], cidrKey),
    orAny(m?.sourcePorts ?? [], String),
  ];
  let leaves = [""];
  for (const d of dims) {
    const next: string[] = [];
    for (const l of leaves) for (const v of d) next.push(`${l}|${v}`);
    leaves = next;
    if (leaves.length > 100_000) break; // far beyond any generated listener; stop expanding
  }
  return leaves;
}

/** filter_chain_manager_impl.cc: the rules Envoy applies to a listener's filter chain matches. */
function filterChainMatches(l: Listener, at: Place): Violation[] {
  const out: Violation[] = [];
  const byMessage = new Map<string, string>();
  const byLeaf = new Map<string, number>();
  l.filterChains.forEach((fc, i) => {
    const m = fc.filterChainMatch;
    const place = under(at, `filter_chains[${i}].filter_chain_match`);
    const name = fc.name || `#${i}`;
    // "error adding listener 'X': contains filter chains with unimplemented fields".
    if (m && (m.addressSuffix !== "" || m.suffixLen !== undefined)) {
      out.push(
        violation(
          "listener.filter_chain_match_unimplemented",
          place,
          `error adding listener '${l.name}': contains filter chains with unimplemented fields (address_suffix, suffix_len)`,
        ),
      );
    }
    // "error adding listener 'X': partial wildcards are not supported in \"server_names\"".
    for (const [j, s] of (m?.serverNames ?? []).entries()) {
      if (s.includes("*") && !(s.startsWith("*.") && !s.slice(1).includes("*"))) {
        out.push(
          violation(
            "listener.server_name_wildcard",
            under(place, `server_names[${j}]`),
            `error adding listener '${l.name}': partial wildcards are not supported in "server_names" (${s})`,
          ),
        );
      }
    }
    // Envoy parses every CIDR of a match as an IP address ("malformed IP address: X").
    for (
      const [field, ranges] of [["prefix_ranges", m?.prefixRanges], [
        "source_prefix_ranges",
        m?.sourcePrefixRanges,
      ], ["direct_source_prefix_ranges", m?.directSourcePrefixRanges]] as const
    ) {
      (ranges ?? []).forEach((r, j) => {
        if (!isIpLiteral(r.addressPrefix)) {
          out.push(
            violation(
              "listener.cidr",
              under(place, `${field}[${j}].address_prefix`),
              `malformed IP address: ${r.addressPrefix}`,
            ),
          );
        }
      });
    }
    // "error adding listener 'X': filter chain 'A' has the same matching rules defined as 'B'".
    const key = Buffer.from(toBinary(FilterChainMatchSchema, m ?? emptyMatch)).toString("hex");
    const same = byMessage.get(key);
    if (same !== undefined) {
      out.push(
        violation(
          "listener.filter_chain_match_unique",
          place,
          `error adding listener '${l.name}': filter chain '${name}' has the same matching rules defined as '${same}'`,
        ),
      );
      return;
    }
    byMessage.set(key, name);
    // "error adding listener 'X': multiple filter chains with overlapping matching rules are defined".
    for (const leaf of matchLeaves(m)) {
      const other = byLeaf.get(leaf);
      if (other !== undefined && other !== i) {
        out.push(
          violation(
            "listener.filter_chain_match_overlap",
            place,
            `error adding listener '${l.name}': multiple filter chains with overlapping matching rules are defined ('${name}' and '${
              l.filterChains[other]!.name || `#${other}`
            }')`,
          ),
        );
        break;
      }
      byLeaf.set(leaf, i);
    }
  });
  return out;
}

const emptyMatch: FilterChainMatch = create(FilterChainMatchSchema);

function filterTypeUrl(f: Filter): string | undefined {
  return f.configType.case === "typedConfig" ? f.configType.value.typeUrl : undefined;
}

/**
 * config/utility.h validateTerminalFilters, for network filter chains: "terminal filter named X
 * of type Y must be the last filter in a network filter chain" and "non-terminal filter named X
 * of type Y is the last filter in a network filter chain". Then each HTTP connection manager in it.
 */
function checkFilterChain(fc: FilterChain, at: Place, kind: ProxyKind): Violation[] {
  const out: Violation[] = [];
  // xds_listener.cc (gRFC A36): a server listener's filter chain holds exactly one filter, the
  // HttpConnectionManager.
  if (kind === "proxyless" && (fc.filters.length !== 1 || filterTypeUrl(fc.filters[0]!) !== HCM)) {
    out.push(
      violation(
        "grpc.listener.filter_chain_hcm",
        under(at, "filters"),
        "filter chain must have exactly one filter, an HttpConnectionManager",
      ),
    );
  }
  fc.filters.forEach((f, i) => {
    const type = filterTypeUrl(f);
    const place = under(at, `filters[${i}]`);
    const last = i === fc.filters.length - 1;
    if (type && !last && TERMINAL_NETWORK.has(type)) {
      out.push(
        violation(
          "listener.terminal_filter",
          place,
          `terminal filter named ${f.name} of type ${type} must be the last filter in a network filter chain`,
        ),
      );
    }
    if (type && last && NON_TERMINAL_NETWORK.has(type)) {
      out.push(
        violation(
          "listener.terminal_filter",
          place,
          `non-terminal filter named ${f.name} of type ${type} is the last filter in a network filter chain`,
        ),
      );
    }
    const hcm = f.configType.case === "typedConfig" ? unpackHcm(f.configType.value) : undefined;
    if (hcm) out.push(...checkHcm(hcm, under(place, "typed_config"), kind));
  });
  return out;
}

/**
 * http_connection_manager/config.cc: the HTTP filter chain ends with the router and has no
 * terminal filter before it (same messages as above, "in a http filter chain"). gRPC's
 * xds_listener.cc refuses an empty list ("http filter list is empty"), a duplicate filter name
 * ("duplicate HTTP filter name") and the same order errors.
 */
export function checkHcm(hcm: HttpConnectionManager, at: Place, kind: ProxyKind): Violation[] {
  const out: Violation[] = [];
  const filters = hcm.httpFilters;
  if (filters.length === 0) {
    out.push(
      violation(
        "hcm.router_last",
        under(at, "http_filters"),
        "http filter list is empty: the router must be the last HTTP filter",
      ),
    );
  }
  filters.forEach((f, i) => {
    const type = f.configType.case === "typedConfig" ? f.configType.value.typeUrl : undefined;
    if (type === undefined) return; // discovered (ECDS) or typeless: nothing to judge here
    const last = i === filters.length - 1;
    const place = under(at, `http_filters[${i}]`);
    if (last && type !== ROUTER) {
      out.push(
        violation(
          "hcm.router_last",
          place,
          `non-terminal filter named ${f.name} of type ${type} is the last filter in a http filter chain`,
        ),
      );
    }
    if (!last && type === ROUTER) {
      out.push(
        violation(
          "hcm.router_last",
          place,
          `terminal filter named ${f.name} of type ${type} must be the last filter in a http filter chain`,
        ),
      );
    }
  });
  if (kind === "proxyless") {
    for (const name of duplicates(filters.map((f) => f.name))) {
      out.push(
        violation(
          "grpc.hcm.unique_filter_names",
          under(at, "http_filters"),
          `duplicate HTTP filter name: ${name}`,
        ),
      );
    }
    // xds_listener.cc: RDS must come over ADS (or the same server, "self").
    const rs = hcm.routeSpecifier;
    if (rs.case === "scopedRoutes") {
      out.push(
        violation(
          "grpc.hcm.route_specifier",
          under(at, "scoped_routes"),
          "HttpConnectionManager: scoped_routes is not supported by gRPC",
        ),
      );
    }
    if (rs.case === "rds") {
      const src = rs.value.configSource?.configSourceSpecifier.case;
      if (src !== "ads" && src !== "self") {
        out.push(
          violation(
            "grpc.hcm.rds_source",
            under(at, "rds.config_source"),
            "HttpConnectionManager ConfigSource for RDS does not specify ADS or SELF",
          ),
        );
      }
    }
  }
  return out;
}

/** The RDS names a set's listeners use, with the first place each is used. */
export function rdsNames(listeners: readonly Listener[]): Map<string, Place> {
  const out = new Map<string, Place>();
  const note = (hcm: HttpConnectionManager | undefined, place: Place) => {
    if (hcm?.routeSpecifier.case === "rds" && !out.has(hcm.routeSpecifier.value.routeConfigName)) {
      out.set(hcm.routeSpecifier.value.routeConfigName, under(place, "rds.route_config_name"));
    }
  };
  for (const l of listeners) {
    const at: Place = { typeUrl: TYPE.listener, resource: l.name, path: "" };
    note(unpackHcm(l.apiListener?.apiListener), under(at, "api_listener.api_listener"));
    const chains: [FilterChain, string][] = l.filterChains.map((fc, i) => [fc, `filter_chains[${i}]`]);
    if (l.defaultFilterChain) chains.push([l.defaultFilterChain, "default_filter_chain"]);
    for (const [fc, p] of chains) {
      fc.filters.forEach((f, i) => {
        if (f.configType.case === "typedConfig") {
          note(unpackHcm(f.configType.value), under(at, `${p}.filters[${i}].typed_config`));
        }
      });
    }
  }
  return out;
}
