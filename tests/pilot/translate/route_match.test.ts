import { describe, expect, test } from "bun:test";
import {
  headerMatcher,
  isCatchAll,
  matchApplies,
  matchesOnClaims,
  translateRouteMatch,
} from "../../../mod/pilot/translate/route_match.ts";
import { sidecar } from "../_push.ts";

describe("translateRouteMatch()", () => {
  test("translateRouteMatch() matches everything without a condition", () => {
    const m = translateRouteMatch(undefined);
    expect(m.pathSpecifier).toEqual({ case: "prefix", value: "/" });
    expect(isCatchAll(m)).toBe(true);
  });

  test("translateRouteMatch() maps uri exact, prefix and regex and ignoreUriCase", () => {
    expect(translateRouteMatch({ uri: { exact: "/a" } }).pathSpecifier).toEqual({
      case: "path",
      value: "/a",
    });
    expect(translateRouteMatch({ uri: { prefix: "/b" } }).pathSpecifier).toEqual({
      case: "prefix",
      value: "/b",
    });
    const re = translateRouteMatch({ uri: { regex: "/c/[0-9]+" }, ignoreUriCase: true });
    expect(re.pathSpecifier.case === "safeRegex" && re.pathSpecifier.value.regex).toBe("/c/[0-9]+");
    expect(re.caseSensitive).toBe(false);
  });

  test("translateRouteMatch() sorts headers, inverts withoutHeaders and appends :method and :authority", () => {
    const m = translateRouteMatch({
      headers: { zeta: { exact: "1" }, alpha: { prefix: "x" } },
      withoutHeaders: { beta: { exact: "no" } },
      method: { exact: "POST" },
      authority: { regex: ".*\\.example\\.com" },
    });
    expect(m.headers.map((h) => [h.name, h.invertMatch])).toEqual([
      ["alpha", false],
      ["beta", true],
      ["zeta", false],
      [":method", false],
      [":authority", false],
    ]);
    expect(m.headers[1]!.treatMissingHeaderAsEmpty).toBe(true);
    expect(isCatchAll(m)).toBe(false);
  });

  test("translateRouteMatch() turns query parameters into string or presence matchers", () => {
    const m = translateRouteMatch({ queryParams: { b: { exact: "1" }, a: { regex: "*" } } });
    expect(m.queryParameters.map((q) => [q.name, q.queryParameterMatchSpecifier.case])).toEqual([
      ["a", "presentMatch"],
      ["b", "stringMatch"],
    ]);
  });

  test("headerMatcher() uses presence for an empty match or regex '*'", () => {
    expect(headerMatcher("x", {}).headerMatchSpecifier).toEqual({ case: "presentMatch", value: true });
    expect(headerMatcher("x", { regex: "*" }).headerMatchSpecifier).toEqual({
      case: "presentMatch",
      value: true,
    });
  });

  test("matchesOnClaims() spots JWT claim conditions", () => {
    expect(matchesOnClaims({ headers: { "@request.auth.claims.group": { exact: "admin" } } })).toBe(true);
    expect(matchesOnClaims({ headers: { "x-group": { exact: "admin" } } })).toBe(false);
  });
});

describe("matchApplies()", () => {
  const proxy = sidecar("10.0.0.1", "shop", { app: "web", track: "beta" });
  const scope = { proxy, port: 8080, gateways: ["mesh"] };

  test("matchApplies() checks the listener port", () => {
    expect(matchApplies({ port: 8080 }, "shop", scope)).toBe(true);
    expect(matchApplies({ port: 9090 }, "shop", scope)).toBe(false);
  });

  test("matchApplies() checks source labels and source namespace", () => {
    expect(matchApplies({ sourceLabels: { track: "beta" } }, "shop", scope)).toBe(true);
    expect(matchApplies({ sourceLabels: { track: "stable" } }, "shop", scope)).toBe(false);
    expect(matchApplies({ sourceNamespace: "other" }, "shop", scope)).toBe(false);
  });

  test("matchApplies() checks gateways, qualified with the VirtualService's namespace", () => {
    const gw = { proxy, port: 80, gateways: ["shop/public"] };
    expect(matchApplies({ gateways: ["public"] }, "shop", gw)).toBe(true);
    expect(matchApplies({ gateways: ["mesh"] }, "shop", gw)).toBe(false);
    expect(matchApplies({ gateways: ["mesh"] }, "shop", scope)).toBe(true);
  });
});
