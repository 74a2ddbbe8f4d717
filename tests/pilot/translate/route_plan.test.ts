import { describe, expect, test } from "bun:test";
import {
  decideFault,
  decideRetry,
  DEFAULT_RETRY_ON_TEXT,
  headerConditions,
  isCatchAllMatch,
  serviceRoutePlans,
} from "../../../mod/pilot/translate/route_plan.ts";
import { pushFrom, sidecar, WEB_SERVICE } from "../_push.ts";

describe("route plans", () => {
  test("decideRetry() is Istio's default when unset, none for attempts 0, else the rule's", () => {
    expect(decideRetry(undefined)).toEqual({ attempts: 2, retryOn: DEFAULT_RETRY_ON_TEXT });
    expect(decideRetry({ attempts: 0 })).toBeUndefined();
    expect(decideRetry({ attempts: 3, perTryTimeout: "1s" })).toEqual({
      attempts: 3,
      retryOn: DEFAULT_RETRY_ON_TEXT,
      perTryTimeout: "1s",
    });
  });

  test("decideFault() keeps unset percentages unset and turns gRPC status names into codes", () => {
    expect(decideFault({ abort: { grpcStatus: "UNAVAILABLE" } })).toEqual({ abort: { grpcStatus: 14 } });
    expect(decideFault({ delay: { fixedDelay: "1s", percentage: { value: 5 } } })).toEqual({
      delay: { fixedDelay: "1s", percent: 5 },
    });
    expect(decideFault({ delay: { exponentialDelay: "1s" } })).toBeUndefined();
  });

  test("headerConditions() sorts headers and withoutHeaders by name, then :method, :authority, :scheme", () => {
    expect(headerConditions({
      method: { exact: "GET" },
      withoutHeaders: { b: { exact: "x" } },
      headers: { c: { regex: "*" }, a: { prefix: "p" } },
    })).toEqual([
      { name: "a", match: { prefix: "p" }, invert: false },
      { name: "b", match: { exact: "x" }, invert: true },
      { name: "c", invert: false },
      { name: ":method", match: { exact: "GET" }, invert: false },
    ]);
  });

  test("isCatchAllMatch() holds for no condition, prefix / and regex .* only", () => {
    expect(isCatchAllMatch(undefined)).toBe(true);
    expect(isCatchAllMatch({ uri: { prefix: "/" } })).toBe(true);
    expect(isCatchAllMatch({ uri: { regex: ".*" } })).toBe(true);
    expect(isCatchAllMatch({ uri: { prefix: "/a" } })).toBe(false);
    expect(isCatchAllMatch({ headers: { x: {} } })).toBe(false);
  });

  test("serviceRoutePlans() falls back to the default route when no rule applies", () => {
    const push = pushFrom(
      WEB_SERVICE,
      `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web, namespace: app }
spec:
  hosts: [web.app.svc.cluster.local]
  http:
  - match: [{ sourceLabels: { app: nobody } }]
    route: [{ destination: { host: web.app.svc.cluster.local } }]
`,
    );
    const plans = serviceRoutePlans(push, sidecar("10.9.0.1", "app"), "web.app.svc.cluster.local", 80);
    expect(plans.vs).toBeUndefined();
    expect(plans.routes.map((r) => [r.name, r.destinations.map((d) => d.cluster)])).toEqual([
      ["default", ["outbound|80||web.app.svc.cluster.local"]],
    ]);
  });
});
