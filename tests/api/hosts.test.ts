/**
 * Table tests for Istio's host-name rules in mod/api. Where galley and pilot had their own
 * copies, the rows name what each copy answered before the rule was written once.
 */
import { describe, expect, test } from "bun:test";
import {
  hostCovers,
  hostsOverlap,
  namespaceAdmits,
  resolveHost,
  splitNamespacedHost,
} from "../../mod/api/mod.ts";

describe("resolveHost", () => {
  const rows: [host: string, namespace: string, suffix: string | undefined, want: string][] = [
    ["reviews", "bookinfo", undefined, "reviews.bookinfo.svc.cluster.local"],
    ["db", "ns", "corp.local", "db.ns.svc.corp.local"],
    ["reviews.bookinfo", "x", undefined, "reviews.bookinfo"],
    ["api.example.com", "ns", undefined, "api.example.com"],
    ["*", "ns", undefined, "*"],
    ["*.example.com", "ns", undefined, "*.example.com"],
    ["reviews.default.svc.cluster.local.", "ns", undefined, "reviews.default.svc.cluster.local."],
    ["::1", "ns", undefined, "::1"],
    ["fe80::1", "ns", undefined, "fe80::1"],
    ["", "ns", undefined, ""],
    // Galley lower-cased, pilot kept the case: "Reviews" named no service in pilot.
    ["Reviews", "bookinfo", undefined, "reviews.bookinfo.svc.cluster.local"],
    ["API.Example.COM", "ns", undefined, "api.example.com"],
    ["*.Example.com", "ns", undefined, "*.example.com"],
  ];
  for (const [host, ns, suffix, want] of rows) {
    test(`${JSON.stringify(host)} in ${ns} -> ${JSON.stringify(want)}`, () => {
      expect(resolveHost(host, ns, suffix)).toBe(want);
    });
  }
});

describe("hostCovers", () => {
  const rows: [pattern: string, host: string, want: boolean][] = [
    ["a.example.com", "a.example.com", true],
    ["a.example.com", "b.example.com", false],
    ["*", "anything.at.all", true],
    ["*", "*.example.com", true],
    ["*", "*", true],
    ["*.example.com", "a.example.com", true],
    ["*.example.com", "a.b.example.com", true],
    ["*.example.com", "*.api.example.com", true],
    ["*.example.com", "*.example.com", true],
    ["*.example.com", "example.com", false],
    ["*.example.com", "*", false],
    ["*.example.com", "a.example.org", false],
    ["*.api.example.com", "*.example.com", false],
    ["a.example.com", "*.example.com", false],
    ["example.com", "*", false],
    // Pilot's copy compared case-sensitively; galley's only worked on names it had lower-cased.
    ["*.Example.COM", "api.example.com", true],
    ["API.example.com", "api.EXAMPLE.com", true],
  ];
  for (const [pattern, host, want] of rows) {
    test(`${pattern} covers ${host}: ${want}`, () => {
      expect(hostCovers(pattern, host)).toBe(want);
    });
  }
});

describe("hostsOverlap", () => {
  const rows: [a: string, b: string, want: boolean][] = [
    ["*.example.com", "a.example.com", true],
    ["a.example.com", "*.example.com", true],
    ["*.example.com", "*.api.example.com", true],
    ["*.example.org", "*.example.com", false],
    ["a.example.com", "b.example.com", false],
    ["*", "a.example.com", true],
    ["A.example.com", "a.EXAMPLE.com", true],
  ];
  for (const [a, b, want] of rows) {
    test(`${a} and ${b}: ${want}`, () => {
      expect(hostsOverlap(a, b)).toBe(want);
      expect(hostsOverlap(b, a)).toBe(want);
    });
  }
});

describe("namespace/host references", () => {
  test("splitNamespacedHost() splits at the first slash; a bare host has namespace *", () => {
    expect(splitNamespacedHost("prod/api.example.com")).toEqual({
      namespace: "prod",
      host: "api.example.com",
    });
    expect(splitNamespacedHost("./reviews.default.svc.cluster.local")).toEqual({
      namespace: ".",
      host: "reviews.default.svc.cluster.local",
    });
    expect(splitNamespacedHost("*/*")).toEqual({ namespace: "*", host: "*" });
    expect(splitNamespacedHost("api.example.com")).toEqual({ namespace: "*", host: "api.example.com" });
  });

  const rows: [part: string, own: string, namespace: string, want: boolean][] = [
    ["*", "gw", "anything", true],
    [".", "gw", "gw", true],
    [".", "gw", "other", false],
    ["~", "gw", "gw", false],
    ["~", "gw", "~", false],
    ["prod", "gw", "prod", true],
    ["prod", "gw", "dev", false],
  ];
  for (const [part, own, ns, want] of rows) {
    test(`namespace part ${JSON.stringify(part)} written in ${own} admits ${ns}: ${want}`, () => {
      expect(namespaceAdmits(part, own, ns)).toBe(want);
    });
  }
});
