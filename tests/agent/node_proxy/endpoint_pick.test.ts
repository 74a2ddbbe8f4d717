/**
 * Endpoint choice: weights (smooth round robin spreads exactly by weight, random by weight),
 * locality priority (the lowest level with a healthy endpoint first), outlier ejection after
 * consecutive connect failures for the base ejection time, retry on another endpoint, panic
 * when every endpoint is ejected, and fewest connections for LEAST_REQUEST.
 */
import { describe, expect, test } from "bun:test";
import { createManualClock } from "../../../mod/shared/clock.ts";
import { createEndpointPicker, endpointKey } from "../../../mod/agent/node_proxy/endpoint_pick.ts";
import type { Endpoint, UpstreamCluster } from "../../../mod/agent/node_proxy/view.ts";

function ep(address: string, o: Partial<Endpoint> = {}): Endpoint {
  return {
    address,
    port: 8080,
    weight: 1,
    locality: { region: "r", zone: "z", subZone: "" },
    priority: 0,
    transport: "hbone",
    identities: [],
    healthy: true,
    ...o,
  };
}

function cluster(endpoints: Endpoint[], o: Partial<UpstreamCluster> = {}): UpstreamCluster {
  return {
    name: "outbound|8080||svc.ns.svc.cluster.local",
    connectTimeoutMs: 1000,
    lbPolicy: "ROUND_ROBIN",
    endpoints,
    ...o,
  };
}

function tally(pick: () => Endpoint | undefined, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const e = pick()!;
    out[e.address] = (out[e.address] ?? 0) + 1;
  }
  return out;
}

describe("createEndpointPicker()", () => {
  test("round robin follows the weights exactly", () => {
    const p = createEndpointPicker({ clock: createManualClock(0) });
    const c = cluster([ep("198.18.0.2", { weight: 3 }), ep("198.18.0.3", { weight: 1 })]);
    expect(tally(() => p.pick(c), 400)).toEqual({ "198.18.0.2": 300, "198.18.0.3": 100 });
  });

  test("random follows the weights", () => {
    let i = 0;
    const p = createEndpointPicker({ clock: createManualClock(0), random: () => (i++ % 100) / 100 });
    const c = cluster([ep("198.18.0.2", { weight: 1 }), ep("198.18.0.3", { weight: 4 })], {
      lbPolicy: "RANDOM",
    });
    expect(tally(() => p.pick(c), 100)).toEqual({ "198.18.0.2": 20, "198.18.0.3": 80 });
  });

  test("the lowest priority with a healthy endpoint wins; unhealthy ones are skipped", () => {
    const p = createEndpointPicker({ clock: createManualClock(0) });
    const near = ep("198.18.0.2", { priority: 0, healthy: false });
    const mid = ep("198.18.0.3", { priority: 1 });
    const far = ep("198.18.0.4", { priority: 2 });
    const c = cluster([far, near, mid]);
    expect(tally(() => p.pick(c), 10)).toEqual({ "198.18.0.3": 10 });
    expect(p.pick(c, new Set([endpointKey(mid)]))).toBe(far);
    expect(p.pick(c, new Set([endpointKey(mid), endpointKey(far)]))).toBeUndefined();
  });

  test("consecutive failures eject for the base ejection time, then the endpoint returns", () => {
    const clock = createManualClock(0);
    const p = createEndpointPicker({ clock });
    const a = ep("198.18.0.2");
    const b = ep("198.18.0.3");
    const c = cluster([a, b], { outlier: { consecutiveErrors: 2, baseEjectionMs: 30_000 } });
    p.report(c, a, false);
    p.report(c, a, true);
    p.report(c, a, false);
    expect(p.ejected(c, a)).toBe(false);
    p.report(c, a, false);
    expect(p.ejected(c, a)).toBe(true);
    expect(tally(() => p.pick(c), 6)).toEqual({ "198.18.0.3": 6 });
    clock.advance(30_001);
    expect(p.ejected(c, a)).toBe(false);
    expect(tally(() => p.pick(c), 6)).toEqual({ "198.18.0.2": 3, "198.18.0.3": 3 });
  });

  test("without outlier detection failures never eject; when all are ejected they are used anyway", () => {
    const clock = createManualClock(0);
    const p = createEndpointPicker({ clock });
    const a = ep("198.18.0.2");
    const plain = cluster([a]);
    for (let i = 0; i < 10; i++) p.report(plain, a, false);
    expect(p.ejected(plain, a)).toBe(false);
    const od = cluster([a], { name: "od", outlier: { consecutiveErrors: 1, baseEjectionMs: 1000 } });
    p.report(od, a, false);
    expect(p.ejected(od, a)).toBe(true);
    expect(p.pick(od)).toBe(a);
  });

  test("least request prefers the endpoint with fewer open connections per weight", () => {
    const p = createEndpointPicker({ clock: createManualClock(0), random: () => 0 });
    const a = ep("198.18.0.2");
    const b = ep("198.18.0.3");
    const c = cluster([a, b], { lbPolicy: "LEAST_REQUEST" });
    p.track(c, a, 1);
    expect(p.pick(c)).toBe(b);
    p.track(c, b, 1);
    p.track(c, b, 1);
    expect(p.pick(c)).toBe(a);
  });
});
