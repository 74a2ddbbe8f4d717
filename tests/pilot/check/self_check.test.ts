/**
 * The provider's self-check (`--xds-self-check`): a generated set that breaks one of Envoy's
 * rules is not served, the proxy keeps its last good set, the refusal is logged once per change
 * and the provider names the rule (what /debug/syncz and /debug/config_dump show).
 *
 * Today's translation breaks no rule for valid config, so the broken rule here is one of the
 * environment: a Gateway naming a credential the node agent does not have. The checker is the
 * real one, told which secrets the agent serves.
 */
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { checkEnvoySet, proxyKindOf } from "../../../mod/pilot/check/mod.ts";
import { selfCheckByDefault } from "../../../mod/pilot/module.ts";
import { createPilotProvider, PILOT_TYPES, type PilotProvider } from "../../../mod/pilot/xds/generator.ts";
import { fullPushRequest } from "../../../mod/pilot/xds/push_request.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import type { XdsClient } from "../../../mod/xds/provider.ts";
import { pushFrom } from "../_push.ts";

/** What the gateway's node agent serves: its mesh certificate and one credential. */
const AGENT_SECRETS = new Set(["default", "ROOTCA", "web-cert", "web-cert-cacert"]);

const gateway: XdsClient = {
  connectionId: "gw",
  node: create(NodeSchema, {
    id: "router~10.100.0.1~edge-1.edge~edge.svc.cluster.local",
    metadata: { NAMESPACE: "edge", LABELS: { istio: "edge" } },
  }),
};

function config(credential: string): string {
  return `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: web, namespace: edge }
spec:
  selector: { istio: edge }
  servers:
    - port: { number: 443, name: https, protocol: HTTPS }
      hosts: ["shop.example.com"]
      tls: { mode: SIMPLE, credentialName: ${credential} }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: edge }
spec:
  hosts: ["shop.example.com"]
  gateways: [web]
  http:
    - route: [{ destination: { host: shop.edge.svc.cluster.local, port: { number: 8080 } } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: shop, namespace: edge }
spec:
  hosts: [shop.edge.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 8080, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.100.1.1 }]
`;
}

function setup(first: string) {
  const logs: Array<Record<string, unknown>> = [];
  const refusals: string[][] = [];
  const provider: PilotProvider = createPilotProvider({
    initial: pushFrom(config(first)),
    logger: createLogger({ write: (line) => logs.push(JSON.parse(line)), format: "json" }),
    selfCheck: (proxy, set, partial) =>
      checkEnvoySet(set, { proxyKind: proxyKindOf(proxy), secretNames: AGENT_SECRETS, partial }),
    onViolations: (_proxy, violations) => refusals.push(violations.map((v) => v.rule)),
  });
  const push = (credential: string) => provider.update(pushFrom(config(credential)), fullPushRequest("test"));
  const listeners = () => [...provider.resources(gateway, PILOT_TYPES.listener, "*").values()];
  const violations = () => provider.violationsOf(provider.proxyOf(gateway));
  const refusedLogs = () =>
    logs.filter((l) => String(l.msg).startsWith("generated config breaks Envoy's rules"));
  return { provider, push, listeners, violations, refusals, refusedLogs };
}

describe("the provider's self-check", () => {
  test("a set that breaks a rule is not served; the proxy keeps its last good set and the rule is named", () => {
    const s = setup("web-cert");
    const good = s.listeners();
    expect(good.map((r) => r.name)).toEqual(["0.0.0.0_443"]);
    expect(s.violations()).toEqual([]);

    s.push("stolen-cert");
    expect(s.listeners()).toEqual(good);
    const v = s.violations();
    expect(v.map((x) => x.rule)).toEqual(["sds.secret_name"]);
    expect(v[0]).toMatchObject({
      typeUrl: PILOT_TYPES.listener,
      resource: "0.0.0.0_443",
      message: expect.stringContaining("stolen-cert"),
    });
    expect(s.refusals).toEqual([["sds.secret_name"]]);
  });

  test("the refusal is logged once per change, not once per push", () => {
    const s = setup("web-cert");
    s.listeners();
    s.push("stolen-cert");
    s.listeners();
    s.push("stolen-cert");
    s.listeners();
    expect(s.refusedLogs()).toHaveLength(1);
    expect(s.refusedLogs()[0]).toMatchObject({ proxy: gateway.node!.id, count: 1 });
    s.push("other-cert");
    s.listeners();
    expect(s.refusedLogs()).toHaveLength(2);
  });

  test("a good set after a refused one is served again and clears the violations", () => {
    const s = setup("web-cert");
    const good = s.listeners();
    s.push("stolen-cert");
    s.listeners();
    s.push("web-cert");
    expect(s.listeners().map((r) => r.version)).toEqual(good.map((r) => r.version));
    expect(s.violations()).toEqual([]);
  });

  test("a proxy whose first set breaks a rule is sent nothing", () => {
    const s = setup("stolen-cert");
    expect(s.listeners()).toEqual([]);
    expect([...s.provider.resources(gateway, PILOT_TYPES.cluster, "*").values()]).toEqual([]);
    expect(s.violations().map((x) => x.rule)).toEqual(["sds.secret_name"]);
  });

  test("without a self-check the same set is served", () => {
    const provider = createPilotProvider({
      initial: pushFrom(config("stolen-cert")),
      logger: createLogger({ write: () => {} }),
    });
    expect([...provider.resources(gateway, PILOT_TYPES.listener, "*").keys()]).toEqual(["0.0.0.0_443"]);
    expect(provider.violationsOf(provider.proxyOf(gateway))).toEqual([]);
  });

  test("--xds-self-check is on by default under test and with MESHD_DEBUG, else off", () => {
    expect(selfCheckByDefault({ NODE_ENV: "test" })).toBe(true);
    expect(selfCheckByDefault({ MESHD_DEBUG: "1" })).toBe(true);
    expect(selfCheckByDefault({ MESHD_DEBUG: "0" })).toBe(false);
    expect(selfCheckByDefault({ NODE_ENV: "production" })).toBe(false);
    expect(selfCheckByDefault({})).toBe(false);
  });
});
