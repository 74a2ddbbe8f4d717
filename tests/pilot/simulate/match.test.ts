import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { FilterChainSchema } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { HeaderMatcherSchema, VirtualHostSchema } from "#gen/envoy/config/route/v3/route_components_pb.ts";
import {
  headerMatches,
  inCidr,
  queryParameters,
  re2FullMatch,
  routeMatches,
  selectFilterChain,
  selectVirtualHost,
} from "../../../mod/pilot/simulate/match.ts";
import { translateRouteMatch } from "../../../mod/pilot/translate/route_match.ts";

const req = (headers: Record<string, string>) => ({ headers });

describe("Envoy matching", () => {
  test("selectVirtualHost() prefers exact, then longest suffix wildcard, then prefix wildcard, then *", () => {
    const vh = (name: string, domains: string[]) => create(VirtualHostSchema, { name, domains });
    const hosts = [
      vh("any", ["*"]),
      vh("prefix", ["api.*"]),
      vh("short", ["*.com"]),
      vh("long", ["*.example.com"]),
      vh("exact", ["api.example.com"]),
    ];
    expect(selectVirtualHost(hosts, "API.example.com")?.name).toBe("exact");
    expect(selectVirtualHost(hosts, "www.example.com")?.name).toBe("long");
    expect(selectVirtualHost(hosts, "www.other.com")?.name).toBe("short");
    expect(selectVirtualHost(hosts, "api.internal")?.name).toBe("prefix");
    expect(selectVirtualHost(hosts, "x.internal")?.name).toBe("any");
    expect(selectVirtualHost(hosts.slice(1), "x.internal")).toBeUndefined();
  });

  test("routeMatches() matches prefixes against the whole path and exact paths without the query", () => {
    expect(routeMatches(translateRouteMatch({ uri: { prefix: "/a" } }), req({ ":path": "/abc?x" }))).toBe(
      true,
    );
    expect(routeMatches(translateRouteMatch({ uri: { exact: "/a" } }), req({ ":path": "/a?x=1" }))).toBe(
      true,
    );
    expect(routeMatches(translateRouteMatch({ uri: { exact: "/a" } }), req({ ":path": "/ab" }))).toBe(false);
    expect(
      routeMatches(
        translateRouteMatch({ uri: { exact: "/A" }, ignoreUriCase: true }),
        req({ ":path": "/a" }),
      ),
    ).toBe(true);
    expect(routeMatches(translateRouteMatch({ uri: { regex: "/a/[0-9]+" } }), req({ ":path": "/a/12?q" })))
      .toBe(true);
    expect(routeMatches(translateRouteMatch({ uri: { regex: "/a/[0-9]+" } }), req({ ":path": "/a/12/b" })))
      .toBe(false);
  });

  test("headerMatches() follows Envoy's rules for absent headers and inversion", () => {
    const m = (spec: Parameters<typeof create<typeof HeaderMatcherSchema>>[1]) =>
      create(HeaderMatcherSchema, spec);
    const exact = {
      case: "stringMatch" as const,
      value: { matchPattern: { case: "exact" as const, value: "x" } },
    };
    expect(headerMatches(m({ name: "h", headerMatchSpecifier: exact }), req({ h: "x" }))).toBe(true);
    expect(headerMatches(m({ name: "h", headerMatchSpecifier: exact, invertMatch: true }), req({}))).toBe(
      false,
    );
    expect(
      headerMatches(
        m({ name: "h", headerMatchSpecifier: exact, invertMatch: true, treatMissingHeaderAsEmpty: true }),
        req({}),
      ),
    )
      .toBe(true);
    const present = { case: "presentMatch" as const, value: true };
    expect(headerMatches(m({ name: "h", headerMatchSpecifier: present }), req({}))).toBe(false);
    expect(headerMatches(m({ name: "h", headerMatchSpecifier: present, invertMatch: true }), req({}))).toBe(
      true,
    );
  });

  test("re2FullMatch() anchors the whole value and uses RE2 syntax", () => {
    expect(re2FullMatch("a+", "aaa")).toBe(true);
    expect(re2FullMatch("a+", "aab")).toBe(false);
    expect(re2FullMatch("(?i)abc", "ABC")).toBe(true);
    expect(() => re2FullMatch("(?<=a)b", "ab")).toThrow("invalid RE2 regex");
  });

  test("queryParameters() decodes names and values and keeps the first occurrence", () => {
    expect([...queryParameters("/p?a=1&b&a=2&c=%20x")]).toEqual([["a", "1"], ["b", ""], ["c", " x"]]);
  });

  test("selectFilterChain() narrows by port, longest prefix, then server name", () => {
    const chain = (name: string, match: Parameters<typeof create<typeof FilterChainSchema>>[1]) =>
      create(FilterChainSchema, { name, ...match });
    const chains = [
      chain("default", {}),
      chain("wide", { filterChainMatch: { prefixRanges: [{ addressPrefix: "10.0.0.0", prefixLen: 8 }] } }),
      chain("narrow", { filterChainMatch: { prefixRanges: [{ addressPrefix: "10.1.0.0", prefixLen: 16 }] } }),
      chain("port", { filterChainMatch: { destinationPort: 15001 } }),
      chain("sni", { filterChainMatch: { serverNames: ["*.example.com"] } }),
    ];
    expect(selectFilterChain(chains, { destinationPort: 80, destinationIp: "10.1.2.3" })?.name).toBe(
      "narrow",
    );
    expect(selectFilterChain(chains, { destinationPort: 80, destinationIp: "10.2.2.3" })?.name).toBe("wide");
    expect(selectFilterChain(chains, { destinationPort: 80, destinationIp: "192.0.2.1" })?.name).toBe(
      "default",
    );
    expect(selectFilterChain(chains, { destinationPort: 15001, destinationIp: "10.1.2.3" })?.name).toBe(
      "port",
    );
    expect(selectFilterChain(chains, { destinationPort: 80, serverName: "a.example.com" })?.name).toBe("sni");
    expect(inCidr("10.1.255.255", "10.1.0.0", 16)).toBe(true);
    expect(inCidr("10.2.0.0", "10.1.0.0", 16)).toBe(false);
  });
});
