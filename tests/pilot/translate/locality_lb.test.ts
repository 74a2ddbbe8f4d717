import { describe, expect, test } from "bun:test";
import type { Endpoint } from "../../../mod/pilot/model/service.ts";
import { loadAssignment } from "../../../mod/pilot/translate/endpoint.ts";
import { applyLocalityLoadBalancing, localityMatches } from "../../../mod/pilot/translate/locality_lb.ts";

const ep = (address: string, locality: string, weight = 1): Endpoint => ({
  hostname: "svc",
  namespace: "ns",
  servicePort: { name: "http", number: 80, protocol: "HTTP" },
  address,
  port: 80,
  labels: {},
  locality,
  weight,
  healthy: true,
  tlsMode: "istio",
  source: "test",
});

const endpoints = [
  ep("10.0.0.1", "us-east/a/1"),
  ep("10.0.0.2", "us-east/b/1"),
  ep("10.0.0.3", "eu-west/c/1"),
  ep("10.0.0.4", "ap-south/d/1"),
];

const summary = (cla: ReturnType<typeof loadAssignment>) =>
  cla.endpoints.map((g) => ({
    region: g.locality?.region,
    zone: g.locality?.zone,
    priority: g.priority,
    weight: g.loadBalancingWeight,
  }));

describe("applyLocalityLoadBalancing()", () => {
  test("localityMatches() compares parts and stops at a wildcard", () => {
    const l = { region: "us-east", zone: "a", subZone: "1" };
    expect(localityMatches(l, "us-east")).toBe(true);
    expect(localityMatches(l, "us-east/*")).toBe(true);
    expect(localityMatches(l, "us-east/a/1")).toBe(true);
    expect(localityMatches(l, "us-east/b")).toBe(false);
    expect(localityMatches(l, "*")).toBe(true);
  });

  test("applyLocalityLoadBalancing() orders failover priorities by zone, region, failover target", () => {
    const cla = loadAssignment("c", endpoints);
    applyLocalityLoadBalancing(cla, "us-east/a/1", { failover: [{ from: "us-east", to: "eu-west" }] }, true);
    const byRegion = Object.fromEntries(summary(cla).map((s) => [`${s.region}/${s.zone}`, s.priority]));
    expect(byRegion).toEqual({ "us-east/a": 0, "us-east/b": 1, "eu-west/c": 2, "ap-south/d": 3 });
  });

  test("applyLocalityLoadBalancing() needs outlier detection, a locality and enabled settings for failover", () => {
    for (
      const [locality, enabled, outlier] of [["us-east/a/1", false, true], ["", true, true], [
        "us-east/a/1",
        true,
        false,
      ]] as const
    ) {
      const cla = loadAssignment("c", endpoints);
      applyLocalityLoadBalancing(cla, locality || undefined, { enabled, failover: [] }, outlier);
      expect(summary(cla).every((s) => s.priority === 0)).toBe(true);
    }
  });

  test("applyLocalityLoadBalancing() distributes weights and drops localities not named", () => {
    const cla = loadAssignment("c", [...endpoints, ep("10.0.0.5", "us-east/a/2", 3)]);
    applyLocalityLoadBalancing(cla, "us-east/a/1", {
      distribute: [{ from: "us-east/a/*", to: { "us-east/a/*": 80, "eu-west/*": 20 } }],
    }, false);
    expect(summary(cla).map((s) => [`${s.region}/${s.zone}`, s.weight])).toEqual([
      ["eu-west/c", 20],
      ["us-east/a", 20],
      ["us-east/a", 60],
    ]);
  });

  test("applyLocalityLoadBalancing() leaves weights alone when no distribute rule is for the proxy", () => {
    const cla = loadAssignment("c", endpoints);
    applyLocalityLoadBalancing(cla, "eu-west/c/1", {
      distribute: [{ from: "us-east/*", to: { "us-east/*": 100 } }],
    }, false);
    expect(cla.endpoints).toHaveLength(4);
  });
});
