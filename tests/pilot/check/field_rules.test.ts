/**
 * checkFieldRules() against hand-made Envoy resources: every kind of protoc-gen-validate rule
 * Envoy's protos carry catches a bad value at the right path, good resources pass, and the walk
 * goes through Anys (a filter's typed_config) and maps. The rule kinds no Envoy resource of ours
 * uses are checked through compileValueRules() with hand-made `validate.FieldRules`.
 */
import { describe, expect, test } from "bun:test";
import { create, createRegistry, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack, DurationSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { type Cluster, ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import { type RouteSchema, VirtualHostSchema } from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { HttpInspectorSchema } from "#gen/envoy/extensions/filters/listener/http_inspector/v3/http_inspector_pb.ts";
import { RouterSchema } from "#gen/envoy/extensions/filters/http/router/v3/router_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { FieldRulesSchema } from "#gen/validate/validate_pb.ts";
import { checkFieldRules } from "../../../mod/pilot/check/field_rules.ts";
import { compileValueRules } from "../../../mod/pilot/check/field_rules_values.ts";
import {
  emailProblem,
  hostnameProblem,
  isIpv4,
  isIpv6,
  uriProblem,
} from "../../../mod/pilot/check/field_rules_well_known.ts";
import type { Violation } from "../../../mod/pilot/check/violation.ts";
import { TYPE_URLS } from "../../../mod/pilot/translate/mod.ts";

const short = (vs: Violation[]) => vs.map((v) => `${v.rule} @ ${v.path}`);

function cluster(init: MessageInitShape<typeof ClusterSchema> = {}): Violation[] {
  const c: Cluster = create(ClusterSchema, { name: "outbound|80||a.b", ...init });
  return checkFieldRules(ClusterSchema, c, { typeUrl: TYPE_URLS.cluster, resource: c.name });
}

type RouteInit = MessageInitShape<typeof RouteSchema>;
const GOOD_ROUTE: RouteInit = {
  match: { pathSpecifier: { case: "prefix", value: "/" } },
  action: { case: "route", value: { clusterSpecifier: { case: "cluster", value: "c" } } },
};

function routes(vhost: MessageInitShape<typeof VirtualHostSchema>): Violation[] {
  const rc = create(RouteConfigurationSchema, { name: "80", virtualHosts: [vhost] });
  return checkFieldRules(RouteConfigurationSchema, rc, { typeUrl: TYPE_URLS.route, resource: "80" });
}

function listenerWithHcm(hcm: MessageInitShape<typeof HttpConnectionManagerSchema>) {
  return create(ListenerSchema, {
    name: "0.0.0.0_80",
    address: {
      address: {
        case: "socketAddress",
        value: { address: "0.0.0.0", portSpecifier: { case: "portValue", value: 80 } },
      },
    },
    filterChains: [{
      filters: [{
        name: "envoy.filters.network.http_connection_manager",
        configType: {
          case: "typedConfig",
          value: anyPack(HttpConnectionManagerSchema, create(HttpConnectionManagerSchema, hcm)),
        },
      }],
    }],
  });
}

const GOOD_HCM: MessageInitShape<typeof HttpConnectionManagerSchema> = {
  statPrefix: "outbound_0.0.0.0_80",
  routeSpecifier: {
    case: "rds",
    value: { routeConfigName: "80", configSource: { configSourceSpecifier: { case: "ads", value: {} } } },
  },
  httpFilters: [{
    name: "envoy.filters.http.router",
    configType: { case: "typedConfig", value: anyPack(RouterSchema, create(RouterSchema)) },
  }],
};

describe("checkFieldRules() on Envoy resources", () => {
  test("a good cluster, route configuration and listener have no violations", () => {
    expect(cluster({ connectTimeout: { seconds: 10n } })).toEqual([]);
    expect(routes({ name: "a", domains: ["a.b", "a.b:80"], routes: [GOOD_ROUTE] })).toEqual([]);
    const l = listenerWithHcm(GOOD_HCM);
    expect(checkFieldRules(ListenerSchema, l, { typeUrl: TYPE_URLS.listener, resource: l.name })).toEqual([]);
  });

  test("string min_len: a cluster with an empty name", () => {
    const vs = cluster({ name: "" });
    expect(short(vs)).toEqual(["pgv.string.min_len @ name"]);
    expect(vs[0]).toMatchObject({ typeUrl: TYPE_URLS.cluster, resource: "" });
    expect(vs[0]!.message).toBe("ClusterValidationError.Name: value length must be at least 1 characters");
  });

  test("enum defined_only: a cluster discovery type Envoy does not define", () => {
    expect(short(cluster({ clusterDiscoveryType: { case: "type", value: 42 as never } }))).toEqual([
      "pgv.enum.defined_only @ type",
    ]);
  });

  test("duration gt: a zero connect timeout; Envoy's own range check: a negative duration", () => {
    expect(short(cluster({ connectTimeout: { seconds: 0n } }))).toEqual([
      "pgv.duration.gt @ connect_timeout",
    ]);
    const vs = routes({
      name: "a",
      domains: ["*"],
      routes: [{ ...GOOD_ROUTE, action: { case: "route", value: { timeout: { seconds: -1n } } } }],
    });
    expect(short(vs)).toContain("envoy.duration.range @ virtual_hosts[0].routes[0].route.timeout");
  });

  test("repeated min_items and items rules: a virtual host without domains, a domain with a newline", () => {
    expect(short(routes({ name: "a", domains: [] }))).toEqual([
      "pgv.repeated.min_items @ virtual_hosts[0].domains",
    ]);
    expect(short(routes({ name: "a", domains: ["ok", "bad\nhost"] }))).toEqual([
      "pgv.string.well_known_regex @ virtual_hosts[0].domains[1]",
    ]);
  });

  test("oneof required: a route without an action, a match without a path specifier", () => {
    expect(short(routes({ name: "a", domains: ["*"], routes: [{ match: GOOD_ROUTE.match }] }))).toEqual([
      "pgv.oneof.required @ virtual_hosts[0].routes[0].action",
    ]);
    expect(short(routes({ name: "a", domains: ["*"], routes: [{ ...GOOD_ROUTE, match: {} }] }))).toEqual([
      "pgv.oneof.required @ virtual_hosts[0].routes[0].match.path_specifier",
    ]);
  });

  test("string pattern (RE2): a path_separated_prefix ending in a slash", () => {
    const vs = routes({
      name: "a",
      domains: ["*"],
      routes: [{ ...GOOD_ROUTE, match: { pathSpecifier: { case: "pathSeparatedPrefix", value: "/api/" } } }],
    });
    expect(short(vs)).toEqual([
      "pgv.string.pattern @ virtual_hosts[0].routes[0].match.path_separated_prefix",
    ]);
    const ok = routes({
      name: "a",
      domains: ["*"],
      routes: [{ ...GOOD_ROUTE, match: { pathSpecifier: { case: "pathSeparatedPrefix", value: "/api" } } }],
    });
    expect(ok).toEqual([]);
  });

  test("repeated unique: response headers to copy named twice", () => {
    const vs = routes({
      name: "a",
      domains: ["*"],
      routes: [{
        ...GOOD_ROUTE,
        action: {
          case: "route",
          value: {
            clusterSpecifier: { case: "cluster", value: "c" },
            internalRedirectPolicy: { responseHeadersToCopy: ["x-a", "x-a"] },
          },
        },
      }],
    });
    expect(short(vs)).toEqual([
      "pgv.repeated.unique @ virtual_hosts[0].routes[0].route.internal_redirect_policy.response_headers_to_copy",
    ]);
  });

  test("max_bytes and header-name rules on a header to add", () => {
    const vs = routes({
      name: "a",
      domains: ["*"],
      requestHeadersToAdd: [{ header: { key: "x\r\ny", value: "v".repeat(16385) } }],
    });
    expect(short(vs).sort()).toEqual([
      "pgv.string.max_bytes @ virtual_hosts[0].request_headers_to_add[0].header.value",
      "pgv.string.well_known_regex @ virtual_hosts[0].request_headers_to_add[0].header.key",
    ]);
  });

  test("wrapper types: uint32 rules apply to a set UInt32Value, not to an unset one", () => {
    const cla = (weight: number | undefined, factor: number | undefined) =>
      create(ClusterLoadAssignmentSchema, {
        clusterName: "c",
        endpoints: [{ loadBalancingWeight: weight, lbEndpoints: [{ loadBalancingWeight: weight }] }],
        policy: { overprovisioningFactor: factor },
      });
    const check = (weight: number | undefined, factor: number | undefined) =>
      short(
        checkFieldRules(ClusterLoadAssignmentSchema, cla(weight, factor), {
          typeUrl: TYPE_URLS.endpoint,
          resource: "c",
        }),
      );
    expect(check(undefined, undefined)).toEqual([]);
    expect(check(3, 140)).toEqual([]);
    expect(check(0, 0).sort()).toEqual([
      "pgv.uint32.gt @ policy.overprovisioning_factor",
      "pgv.uint32.gte @ endpoints[0].lb_endpoints[0].load_balancing_weight",
      "pgv.uint32.gte @ endpoints[0].load_balancing_weight",
    ]);
  });

  test("recursion through Any: bad fields of an HCM inside a listener filter's typed_config", () => {
    const l = listenerWithHcm({
      ...GOOD_HCM,
      statPrefix: "",
      httpFilters: [{ ...GOOD_HCM.httpFilters![0], name: "" }],
    });
    const vs = checkFieldRules(ListenerSchema, l, { typeUrl: TYPE_URLS.listener, resource: l.name });
    expect(short(vs)).toEqual([
      "pgv.string.min_len @ filter_chains[0].filters[0].typed_config.stat_prefix",
      "pgv.string.min_len @ filter_chains[0].filters[0].typed_config.http_filters[0].name",
    ]);
    expect(vs[0]!.message).toBe(
      "HttpConnectionManagerValidationError.StatPrefix: value length must be at least 1 characters",
    );
    expect(vs[1]).toMatchObject({ typeUrl: TYPE_URLS.listener, resource: "0.0.0.0_80" });
  });

  test("an Any of a type the registry does not know is refused, as Envoy refuses unknown typed_config", () => {
    const inspector = anyPack(HttpInspectorSchema, create(HttpInspectorSchema));
    const l = listenerWithHcm({
      ...GOOD_HCM,
      httpFilters: [
        { name: "envoy.filters.http.inspector", configType: { case: "typedConfig", value: inspector } },
        ...GOOD_HCM.httpFilters!,
      ],
    });
    const vs = checkFieldRules(ListenerSchema, l, { typeUrl: TYPE_URLS.listener, resource: l.name });
    expect(short(vs)).toEqual([
      "envoy.any.unknown_type @ filter_chains[0].filters[0].typed_config.http_filters[0].typed_config",
    ]);
    expect(vs[0]!.message).toContain("envoy.extensions.filters.listener.http_inspector.v3.HttpInspector");
    const registry = createRegistry(HttpConnectionManagerSchema, RouterSchema, HttpInspectorSchema);
    expect(checkFieldRules(ListenerSchema, l, { typeUrl: TYPE_URLS.listener, resource: l.name, registry }))
      .toEqual([]);
  });

  test("map values: an Any in typed_per_filter_config is checked, with the key in the path", () => {
    const inspector = anyPack(HttpInspectorSchema, create(HttpInspectorSchema));
    const vs = routes({
      name: "a",
      domains: ["*"],
      typedPerFilterConfig: { "envoy.filters.http.x": inspector },
    });
    expect(short(vs)).toEqual([
      'envoy.any.unknown_type @ virtual_hosts[0].typed_per_filter_config["envoy.filters.http.x"]',
    ]);
  });

  test("rules of an unset oneof member do not apply; the set member's do", () => {
    // RouteMatch.path_separated_prefix has a pattern; with `prefix` set it is not looked at.
    expect(routes({ name: "a", domains: ["*"], routes: [GOOD_ROUTE] })).toEqual([]);
    // RouteAction.cluster (min_len 1) is checked when it is the cluster_specifier set, not otherwise.
    const action = (clusterSpecifier: unknown) =>
      routes({
        name: "a",
        domains: ["*"],
        routes: [{
          ...GOOD_ROUTE,
          action: { case: "route", value: { clusterSpecifier: clusterSpecifier as never } },
        }],
      });
    expect(short(action({ case: "cluster", value: "" }))).toEqual([
      "pgv.string.min_len @ virtual_hosts[0].routes[0].route.cluster",
    ]);
    expect(action({ case: "clusterHeader", value: "x-cluster" })).toEqual([]);
  });
});

/** Runs `rules` (a validate.FieldRules init) over `value` and lists the rule ids broken. */
function broken(rules: MessageInitShape<typeof FieldRulesSchema>, value: unknown, nowMs?: number): string[] {
  const check = compileValueRules(create(FieldRulesSchema, rules));
  const out: string[] = [];
  check?.(value, { report: (rule) => out.push(rule), nowMs });
  return out;
}

const dur = (seconds: bigint, nanos = 0) => create(DurationSchema, { seconds, nanos });

describe("compileValueRules() for each rule kind", () => {
  test("string lengths count characters, byte rules count UTF-8 bytes", () => {
    const s = (value: MessageInitShape<typeof FieldRulesSchema>["type"]) => ({ type: value });
    expect(broken(s({ case: "string", value: { minLen: 2n } }), "é")).toEqual(["pgv.string.min_len"]);
    expect(broken(s({ case: "string", value: { maxLen: 1n } }), "é")).toEqual([]);
    expect(broken(s({ case: "string", value: { maxBytes: 1n } }), "é")).toEqual(["pgv.string.max_bytes"]);
    expect(broken(s({ case: "string", value: { minBytes: 3n } }), "é")).toEqual(["pgv.string.min_bytes"]);
    expect(broken(s({ case: "string", value: { len: 2n } }), "😀x")).toEqual([]);
    expect(broken(s({ case: "string", value: { lenBytes: 5n } }), "😀x")).toEqual([]);
    expect(broken(s({ case: "string", value: { maxLen: 0n } }), "a")).toEqual(["pgv.string.max_len"]);
  });

  test("string const, prefix, suffix, contains, not_contains, in, not_in, ignore_empty", () => {
    const s = (value: Record<string, unknown>) => ({ type: { case: "string" as const, value } });
    expect(broken(s({ const: "a" }), "b")).toEqual(["pgv.string.const"]);
    expect(broken(s({ prefix: "spiffe://" }), "http://x")).toEqual(["pgv.string.prefix"]);
    expect(broken(s({ suffix: ".local" }), "a.local")).toEqual([]);
    expect(broken(s({ contains: "|" }), "abc")).toEqual(["pgv.string.contains"]);
    expect(broken(s({ notContains: "|" }), "a|b")).toEqual(["pgv.string.not_contains"]);
    expect(broken(s({ in: ["x", "y"] }), "z")).toEqual(["pgv.string.in"]);
    expect(broken(s({ notIn: ["x"] }), "x")).toEqual(["pgv.string.not_in"]);
    expect(broken(s({ minLen: 1n }), "")).toEqual(["pgv.string.min_len"]);
    expect(broken(s({ minLen: 1n, ignoreEmpty: true }), "")).toEqual([]);
  });

  test("string pattern uses RE2 and searches (unanchored) as protoc-gen-validate does", () => {
    const s = { type: { case: "string" as const, value: { pattern: "b+" } } };
    expect(broken(s, "abbbc")).toEqual([]);
    expect(broken(s, "ac")).toEqual(["pgv.string.pattern"]);
  });

  test("string well-known formats", () => {
    const wk = (c: string, value: unknown = true) => ({
      type: { case: "string" as const, value: { wellKnown: { case: c, value } as never } },
    });
    expect(broken(wk("hostname"), "a-b.example.com.")).toEqual([]);
    expect(broken(wk("hostname"), "-a.example")).toEqual(["pgv.string.hostname"]);
    expect(broken(wk("ip"), "10.0.0.1")).toEqual([]);
    expect(broken(wk("ip"), "10.0.0.256")).toEqual(["pgv.string.ip"]);
    expect(broken(wk("ipv4"), "::1")).toEqual(["pgv.string.ipv4"]);
    expect(broken(wk("ipv6"), "fe80::1")).toEqual([]);
    expect(broken(wk("ipv6"), "10.0.0.1")).toEqual(["pgv.string.ipv6"]);
    expect(broken(wk("address"), "db.example")).toEqual([]);
    expect(broken(wk("address"), "db_1.example")).toEqual(["pgv.string.address"]);
    expect(broken(wk("uri"), "https://x/y")).toEqual([]);
    expect(broken(wk("uri"), "/relative")).toEqual(["pgv.string.uri"]);
    expect(broken(wk("uriRef"), "/relative")).toEqual([]);
    expect(broken(wk("uriRef"), "/a b")).toEqual(["pgv.string.uri_ref"]);
    expect(broken(wk("uuid"), "123e4567-e89b-12d3-a456-426614174000")).toEqual([]);
    expect(broken(wk("uuid"), "123e4567")).toEqual(["pgv.string.uuid"]);
    expect(broken(wk("email"), "ops@example.com")).toEqual([]);
    expect(broken(wk("email"), "ops")).toEqual(["pgv.string.email"]);
  });

  test("HTTP header name and value regexes, strict and not", () => {
    const rx = (kind: number, strict: boolean) => ({
      type: {
        case: "string" as const,
        value: { wellKnown: { case: "wellKnownRegex" as const, value: kind }, strict },
      },
    });
    expect(broken(rx(1, true), ":authority")).toEqual([]);
    expect(broken(rx(1, true), "x y")).toEqual(["pgv.string.well_known_regex"]);
    expect(broken(rx(1, false), "x y")).toEqual([]);
    expect(broken(rx(2, true), "a\tb")).toEqual([]);
    expect(broken(rx(2, true), "a\x01b")).toEqual(["pgv.string.well_known_regex"]);
    expect(broken(rx(2, false), "a\x01b")).toEqual([]);
    expect(broken(rx(2, false), "a\nb")).toEqual(["pgv.string.well_known_regex"]);
  });

  test("numbers: const, lt, lte, gt, gte, ranges inside and outside, in, not_in, 64-bit values", () => {
    const u32 = (value: Record<string, unknown>) => ({ type: { case: "uint32" as const, value } });
    expect(broken(u32({ const: 3 }), 4)).toEqual(["pgv.uint32.const"]);
    expect(broken(u32({ lt: 3 }), 3)).toEqual(["pgv.uint32.lt"]);
    expect(broken(u32({ lte: 3 }), 3)).toEqual([]);
    expect(broken(u32({ gt: 0 }), 0)).toEqual(["pgv.uint32.gt"]);
    expect(broken(u32({ gte: 0 }), 0)).toEqual([]);
    expect(broken(u32({ gte: 1, lte: 100 }), 101)).toEqual(["pgv.uint32.gte_lte"]);
    expect(broken(u32({ gte: 1, lte: 100 }), 100)).toEqual([]);
    // lower bound above the upper one: the value must lie outside [10, 20).
    expect(broken(u32({ gte: 20, lt: 10 }), 15)).toEqual(["pgv.uint32.gte_lt"]);
    expect(broken(u32({ gte: 20, lt: 10 }), 25)).toEqual([]);
    expect(broken(u32({ in: [1, 2] }), 3)).toEqual(["pgv.uint32.in"]);
    expect(broken(u32({ notIn: [3] }), 3)).toEqual(["pgv.uint32.not_in"]);
    expect(broken({ type: { case: "int64", value: { gt: 0n } } }, -5n)).toEqual(["pgv.int64.gt"]);
    expect(broken({ type: { case: "double", value: { gte: 0, lte: 1 } } }, 1.5)).toEqual([
      "pgv.double.gte_lte",
    ]);
  });

  test("bool const; enum const, in, not_in", () => {
    expect(broken({ type: { case: "bool", value: { const: true } } }, false)).toEqual(["pgv.bool.const"]);
    expect(broken({ type: { case: "enum", value: { const: 1 } } }, 2)).toEqual(["pgv.enum.const"]);
    expect(broken({ type: { case: "enum", value: { in: [1, 2] } } }, 3)).toEqual(["pgv.enum.in"]);
    expect(broken({ type: { case: "enum", value: { notIn: [0] } } }, 0)).toEqual(["pgv.enum.not_in"]);
  });

  test("bytes: lengths, prefix, suffix, contains, in, ip", () => {
    const b = (value: Record<string, unknown>) => ({ type: { case: "bytes" as const, value } });
    const v = new Uint8Array([1, 2, 3]);
    expect(broken(b({ minLen: 4n }), v)).toEqual(["pgv.bytes.min_len"]);
    expect(broken(b({ prefix: new Uint8Array([1, 2]) }), v)).toEqual([]);
    expect(broken(b({ suffix: new Uint8Array([2]) }), v)).toEqual(["pgv.bytes.suffix"]);
    expect(broken(b({ contains: new Uint8Array([2, 3]) }), v)).toEqual([]);
    expect(broken(b({ in: [new Uint8Array([9])] }), v)).toEqual(["pgv.bytes.in"]);
    expect(broken(b({ wellKnown: { case: "ipv4", value: true } }), v)).toEqual(["pgv.bytes.ipv4"]);
  });

  test("Duration and Timestamp bounds; Any in and not_in", () => {
    const d = (value: Record<string, unknown>) => ({ type: { case: "duration" as const, value } });
    expect(broken(d({ gte: dur(0n, 1_000_000) }), dur(0n, 999_999))).toEqual(["pgv.duration.gte"]);
    expect(broken(d({ lt: dur(1n) }), dur(0n, 999_999_999))).toEqual([]);
    expect(broken(d({ const: dur(5n) }), dur(5n))).toEqual([]);
    expect(broken(d({ in: [dur(1n), dur(2n)] }), dur(3n))).toEqual(["pgv.duration.in"]);
    const ts = (seconds: bigint) => create(TimestampSchema, { seconds });
    expect(broken({ type: { case: "timestamp", value: { gt: ts(10n) } } }, ts(5n))).toEqual([
      "pgv.timestamp.gt",
    ]);
    expect(broken({ type: { case: "timestamp", value: { ltNow: true } } }, ts(5n), 1000)).toEqual([
      "pgv.timestamp.lt_now",
    ]);
    expect(broken({ type: { case: "timestamp", value: { ltNow: true } } }, ts(5n))).toEqual([]);
    const any = { typeUrl: "type.googleapis.com/x.Y", value: new Uint8Array() };
    expect(broken({ type: { case: "any", value: { in: ["type.googleapis.com/x.Z"] } } }, any)).toEqual([
      "pgv.any.in",
    ]);
    expect(broken({ type: { case: "any", value: { notIn: ["type.googleapis.com/x.Y"] } } }, any)).toEqual([
      "pgv.any.not_in",
    ]);
  });
});

describe("well-known format predicates", () => {
  test("hostnames, addresses, e-mail and URIs", () => {
    expect(hostnameProblem("a".repeat(64) + ".example")).toContain("63");
    expect(hostnameProblem("a..b")).toBeDefined();
    expect(isIpv4("01.2.3.4")).toBe(false);
    expect(isIpv6("1:2:3:4:5:6:7:8")).toBe(true);
    expect(isIpv6("1:2:3:4:5:6:7:8:9")).toBe(false);
    expect(isIpv6("::ffff:10.0.0.1")).toBe(true);
    expect(isIpv6("1::2::3")).toBe(false);
    expect(emailProblem("a@-bad")).toBeDefined();
    expect(uriProblem("spiffe://cluster.local/ns/a/sa/b")).toBeUndefined();
  });
});
