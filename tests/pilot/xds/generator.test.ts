/**
 * Pilot's provider across pushes: a routing-only change keeps clusters, endpoints and sidecar
 * listeners from the previous push (the same maps, so the xDS server skips them), and what it
 * serves is always exactly what a fresh translation of the new push gives.
 */
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { createConfigStore } from "../../../mod/galley/store.ts";
import { createPushContext, type PushContext } from "../../../mod/pilot/model/push_context.ts";
import {
  createPilotProvider,
  onlyRoutingChanged,
  PILOT_TYPES,
  type PilotProvider,
} from "../../../mod/pilot/xds/generator.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import type { XdsClient } from "../../../mod/xds/provider.ts";

const quiet = createLogger({ write: () => {} });
const SAMPLES = resolve(import.meta.dir, "../../../config/samples");
const sample = (name: string) => readFileSync(join(SAMPLES, name), "utf8");

const clients: XdsClient[] = [
  {
    connectionId: "productpage",
    node: create(NodeSchema, {
      id: "sidecar~192.0.2.10~productpage-v1.bookinfo~bookinfo.svc.cluster.local",
      metadata: { NAMESPACE: "bookinfo", LABELS: { app: "productpage", version: "v1" } },
    }),
  },
  {
    connectionId: "reviews",
    node: create(NodeSchema, {
      id: "sidecar~192.0.2.11~reviews-v2.bookinfo~bookinfo.svc.cluster.local",
      metadata: { NAMESPACE: "bookinfo", LABELS: { app: "reviews", version: "v2" } },
    }),
  },
  {
    connectionId: "gateway",
    node: create(NodeSchema, {
      id: "router~192.0.2.20~ingressgateway-1.istio-system~istio-system.svc.cluster.local",
      metadata: {
        NAMESPACE: "istio-system",
        LABELS: { app: "istio-ingressgateway", istio: "ingressgateway" },
      },
    }),
  },
];

/** One store, the samples in it, and a way to replace one file's content. */
function mesh() {
  const store = createConfigStore({ logger: quiet });
  const files = new Map<string, string>();
  for (const f of readdirSync(SAMPLES)) if (f.endsWith(".yaml")) files.set(f, sample(f));
  const push = (): PushContext => {
    store.sink("test").replace([...files].map(([origin, content]) => ({ origin, content })));
    const bad = store.status().resources.filter((r) => r.state === "rejected").flatMap((r) => r.errors);
    if (bad.length > 0) throw new Error(bad.join("\n"));
    return createPushContext({ config: store.snapshot() });
  };
  return { files, push };
}

/** Every type's resources for every client, as name -> version. */
function served(p: PilotProvider) {
  return Object.fromEntries(clients.map((c) => [
    c.connectionId,
    Object.fromEntries(
      Object.values(PILOT_TYPES).map((t) => [
        t,
        Object.fromEntries([...p.resources(c, t, "*")].map(([n, r]) => [n, r.version])),
      ]),
    ),
  ]));
}

const EXTRA_VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings-extra, namespace: bookinfo }
spec:
  hosts: [ratings]
  http:
  - match: [{ headers: { end-user: { exact: jason } } }]
    fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }
    route: [{ destination: { host: ratings, subset: v1 } }]
  - route: [{ destination: { host: ratings, subset: v1 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: gateway-extra, namespace: bookinfo }
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-gateway]
  http:
  - match: [{ uri: { prefix: /extra } }]
    route: [{ destination: { host: details, port: { number: 9080 } } }]
`;

describe("createPilotProvider() across pushes", () => {
  test("a routing-only change reuses clusters, endpoints and sidecar listeners, and serves what a fresh translation gives", () => {
    const m = mesh();
    const first = m.push();
    const p = createPilotProvider({ initial: first, logger: quiet });
    const beforeClusters = clients.map((c) => p.resources(c, PILOT_TYPES.cluster, "*"));
    const beforeListeners = clients.map((c) => p.resources(c, PILOT_TYPES.listener, "*"));
    const beforeEndpoints = clients.map((c) => p.resources(c, PILOT_TYPES.endpoint, "*"));

    const edits: Array<(files: Map<string, string>) => void> = [
      (f) =>
        f.set(
          "routing.yaml",
          f.get("routing.yaml")!.replace("weight: 90", "weight: 80").replace("weight: 10\n", "weight: 20\n"),
        ),
      (f) => f.set("extra.yaml", EXTRA_VS),
      (f) =>
        f.set(
          "extra.yaml",
          EXTRA_VS.replace("/extra", "/more").replace("httpStatus: 503", "httpStatus: 500"),
        ),
      (f) => f.delete("extra.yaml"),
    ];
    let previous = first;
    for (const edit of edits) {
      edit(m.files);
      const next = m.push();
      expect(onlyRoutingChanged(previous, next)).toBe(true);
      p.update(next);
      expect(served(p)).toEqual(served(createPilotProvider({ initial: next, logger: quiet })));
      clients.forEach((c, i) => {
        expect(p.resources(c, PILOT_TYPES.cluster, "*")).toBe(beforeClusters[i]!);
        expect(p.resources(c, PILOT_TYPES.endpoint, "*")).toBe(beforeEndpoints[i]!);
        if (c.connectionId !== "gateway") {
          expect(p.resources(c, PILOT_TYPES.listener, "*")).toBe(beforeListeners[i]!);
        }
      });
      previous = next;
    }
  });

  test("any other change translates everything again, and equal results stay the same maps", () => {
    const m = mesh();
    const first = m.push();
    const p = createPilotProvider({ initial: first, logger: quiet });
    const c = clients[0]!;
    const clusters = p.resources(c, PILOT_TYPES.cluster, "*");
    const routes = p.resources(c, PILOT_TYPES.route, "*");

    // A DestinationRule change: clusters change, routes do not (the same map is served).
    m.files.set(
      "destination_rules.yaml",
      m.files.get("destination_rules.yaml")!.replace(/consecutive5xxErrors: \d+/, "consecutive5xxErrors: 17"),
    );
    const next = m.push();
    expect(onlyRoutingChanged(first, next)).toBe(false);
    p.update(next);
    expect(served(p)).toEqual(served(createPilotProvider({ initial: next, logger: quiet })));
    expect(p.resources(c, PILOT_TYPES.cluster, "*")).not.toBe(clusters);
    expect(p.resources(c, PILOT_TYPES.route, "*")).toBe(routes);

    // A metadata-only edit of a DestinationRule is not a routing change either, but nothing
    // served changes, so every map stays the same.
    const served1 = served(p);
    const clusters1 = p.resources(c, PILOT_TYPES.cluster, "*");
    m.files.set(
      "destination_rules.yaml",
      m.files.get("destination_rules.yaml")!.replace(
        "name: reviews\n",
        'name: reviews\n  labels: { touched: "yes" }\n',
      ),
    );
    const third = m.push();
    expect(onlyRoutingChanged(next, third)).toBe(false);
    p.update(third);
    expect(served(p)).toEqual(served1);
    expect(p.resources(c, PILOT_TYPES.cluster, "*")).toBe(clusters1);
  });
});
