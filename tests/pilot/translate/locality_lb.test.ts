import { describe, expect, test } from "bun:test";
import type { Endpoint } from "../../../mod/pilot/model/service.ts";
import { loadAssignment } from "../../../mod/pilot/translate/endpoint.ts";
import {
  applyLocalityLoadBalancing,
  failoverPriorityOf,
  localityMatches,
  topologyLabels,
} from "../../../mod/pilot/translate/locality_lb.ts";

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

describe("failoverPriority", () => {
  const labelled = (address: string, locality: string, labels: Record<string, string>): Endpoint => ({
    ...ep(address, locality),
    labels,
  });
  const eps = [
    labelled("10.0.0.1", "us-east/a/1", { tier: "gold", "topology.istio.io/network": "n1" }),
    labelled("10.0.0.2", "us-east/a/1", { tier: "silver", "topology.istio.io/network": "n1" }),
    labelled("10.0.0.3", "eu-west/c/1", { tier: "gold", "topology.istio.io/network": "n2" }),
  ];
  const labelsOf = (cla: ReturnType<typeof loadAssignment>) => ({
    proxy: { tier: "gold", "topology.istio.io/network": "n1" },
    endpoints: cla.endpoints.map((g) =>
      g.lbEndpoints.map((lb) => {
        const a = lb.hostIdentifier.case === "endpoint"
          ? lb.hostIdentifier.value.address?.address
          : undefined;
        const ip = a?.case === "socketAddress" ? a.value.address : "";
        return eps.find((e) => e.address === ip)!.labels;
      })
    ),
  });
  const byAddress = (cla: ReturnType<typeof loadAssignment>) =>
    Object.fromEntries(
      cla.endpoints.flatMap((g) =>
        g.lbEndpoints.map((lb) => {
          const a = lb.hostIdentifier.case === "endpoint"
            ? lb.hostIdentifier.value.address?.address
            : undefined;
          return [a?.case === "socketAddress" ? a.value.address : "", g.priority];
        })
      ),
    );

  test("failoverPriorityOf() counts shared labels in order; a leading network label only sorts other networks last", () => {
    const proxy = { a: "1", b: "2", "topology.istio.io/network": "n1" };
    expect(failoverPriorityOf(proxy, { a: "1", b: "2" }, ["a", "b"])).toBe(0);
    expect(failoverPriorityOf(proxy, { a: "1", b: "3" }, ["a", "b"])).toBe(1);
    expect(failoverPriorityOf(proxy, { a: "0", b: "2" }, ["a", "b"])).toBe(2);
    expect(failoverPriorityOf(proxy, { a: "9" }, ["a=9"])).toBe(0);
    const net = ["topology.istio.io/network", "a"];
    expect(failoverPriorityOf(proxy, { "topology.istio.io/network": "n2", a: "1" }, net)).toBe(2);
    expect(failoverPriorityOf(proxy, { "topology.istio.io/network": "n2", a: "0" }, net)).toBe(3);
    expect(failoverPriorityOf(proxy, { "topology.istio.io/network": "n1", a: "0" }, net)).toBe(1);
  });

  test("applyLocalityLoadBalancing() splits a locality by failoverPriority labels, priorities without gaps", () => {
    const cla = loadAssignment("c", eps);
    applyLocalityLoadBalancing(cla, "us-east/a/1", { failoverPriority: ["tier"] }, true, labelsOf(cla));
    expect(byAddress(cla)).toEqual({ "10.0.0.1": 0, "10.0.0.2": 1, "10.0.0.3": 0 });
    expect(cla.endpoints.map((g) => g.loadBalancingWeight)).toEqual([1, 1, 1]);
  });

  test("applyLocalityLoadBalancing() with failover as well orders localities within each label priority", () => {
    const cla = loadAssignment("c", eps);
    applyLocalityLoadBalancing(
      cla,
      "us-east/a/1",
      { failoverPriority: ["tier"], failover: [{ from: "us-east", to: "eu-west" }] },
      true,
      labelsOf(cla),
    );
    expect(byAddress(cla)).toEqual({ "10.0.0.1": 0, "10.0.0.3": 1, "10.0.0.2": 2 });
  });

  test("applyLocalityLoadBalancing() applies failoverPriority only with outlier detection and proxy labels", () => {
    for (const [outlier, proxy] of [[false, { tier: "gold" }], [true, {}]] as const) {
      const cla = loadAssignment("c", eps);
      applyLocalityLoadBalancing(cla, "us-east/a/1", { failoverPriority: ["tier"] }, outlier, {
        ...labelsOf(cla),
        proxy,
      });
      expect(Object.values(byAddress(cla))).toEqual([0, 0, 0]);
    }
  });

  test("topologyLabels() names the known parts of a locality and the network", () => {
    expect(topologyLabels("r/z", "n")).toEqual({
      "topology.kubernetes.io/region": "r",
      "topology.kubernetes.io/zone": "z",
      "topology.istio.io/network": "n",
    });
    expect(topologyLabels(undefined, undefined)).toEqual({});
  });
});
