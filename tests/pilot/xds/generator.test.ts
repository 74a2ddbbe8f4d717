/**
 * Pilot's provider across pushes: a request whose change set names only VirtualServices keeps
 * clusters, endpoints and sidecar listeners from the previous push (the same maps, so the xDS
 * server skips them), and what it serves is always exactly what a fresh translation of the new
 * push gives, also for change sets merged from a burst and for registry changes.
 */
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { createConfigStore } from "../../../mod/galley/store.ts";
import { createPushContext, type PushContext } from "../../../mod/pilot/model/push_context.ts";
import type { RegistryState } from "../../../mod/pilot/model/registry.ts";
import {
  createPilotProvider,
  LAST_GOOD_PUSHES,
  PILOT_TYPES,
  type PilotProvider,
} from "../../../mod/pilot/xds/generator.ts";
import {
  configPushRequest,
  fullPushRequest,
  isEndpointsOnly,
  isRoutingOnly,
  mergePushRequests,
  narrowRegistryRequest,
  type PushRequest,
} from "../../../mod/pilot/xds/push_request.ts";
import { endpointChanges } from "../../../mod/pilot/registry/mod.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import type { Proxy } from "../../../mod/pilot/model/proxy.ts";
import {
  checkEnvoySet,
  configuredSecretNames,
  type EnvoyResourceSet,
  proxyKindOf,
} from "../../../mod/pilot/check/mod.ts";
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

/**
 * One store, the samples in it, and a way to replace files' content. `push()` delivers the files
 * and returns the new PushContext with the request made of the change sets the store published
 * since the previous `push()` (merged, as the debouncer merges a burst).
 */
function mesh(registries: () => readonly RegistryState[] = () => []) {
  const store = createConfigStore({ logger: quiet });
  const files = new Map<string, string>();
  for (const f of readdirSync(SAMPLES)) if (f.endsWith(".yaml")) files.set(f, sample(f));
  let pending: PushRequest[] = [];
  store.subscribe((change) => pending.push(configPushRequest(change)));
  /** Delivers the files to the store without building a push (one step of a burst). */
  const deliver = () => {
    store.sink("test").replace([...files].map(([origin, content]) => ({ origin, content })));
    const bad = store.status().resources.filter((r) => r.state === "rejected").flatMap((r) => r.errors);
    if (bad.length > 0) throw new Error(bad.join("\n"));
  };
  const push = (): { ctx: PushContext; request: PushRequest } => {
    deliver();
    const request = mergePushRequests(pending);
    pending = [];
    return { ctx: createPushContext({ config: store.snapshot(), registries: registries() }), request };
  };
  return { files, deliver, push };
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
  test("a routing-only change reuses clusters, endpoints and unchanged sidecar listeners, and serves what a fresh translation gives", () => {
    const m = mesh();
    const first = m.push().ctx;
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
    for (const edit of edits) {
      edit(m.files);
      const { ctx: next, request } = m.push();
      expect(request.configs.size).toBeGreaterThan(0);
      expect(new Set(request.configs.values())).toEqual(new Set(["networking.istio.io/VirtualService"]));
      expect(isRoutingOnly(request)).toBe(true);
      p.update(next, request);
      expect(served(p)).toEqual(served(createPilotProvider({ initial: next, logger: quiet })));
      clients.forEach((c, i) => {
        expect(p.resources(c, PILOT_TYPES.cluster, "*")).toBe(beforeClusters[i]!);
        expect(p.resources(c, PILOT_TYPES.endpoint, "*")).toBe(beforeEndpoints[i]!);
        if (c.connectionId !== "gateway") {
          expect(p.resources(c, PILOT_TYPES.listener, "*")).toBe(beforeListeners[i]!);
        }
      });
    }
  });

  test("a routing-only change of a TCP route reaches sidecars' listeners (TCP routes are filter chains)", () => {
    const m = mesh();
    const entry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: tcp-db, namespace: bookinfo }
spec:
  hosts: [db.bookinfo.svc.cluster.local]
  addresses: [10.99.0.10]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 5432, name: tcp-db, protocol: TCP }]
  endpoints:
  - { address: 10.99.1.1, labels: { version: v1 } }
  - { address: 10.99.1.2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: tcp-db, namespace: bookinfo }
spec:
  host: db.bookinfo.svc.cluster.local
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
`;
    const route = (v1: number, v2: number) =>
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: tcp-db, namespace: bookinfo }
spec:
  hosts: [db.bookinfo.svc.cluster.local]
  tcp:
  - route:
    - { destination: { host: db.bookinfo.svc.cluster.local, subset: v1 }, weight: ${v1} }
    - { destination: { host: db.bookinfo.svc.cluster.local, subset: v2 }, weight: ${v2} }
`;
    m.files.set("tcp_db.yaml", entry + "---\n" + route(100, 0));
    const p = createPilotProvider({ initial: m.push().ctx, logger: quiet });
    const sidecar = clients.find((c) => c.connectionId !== "gateway")!;
    const before = p.resources(sidecar, PILOT_TYPES.listener, "*");
    m.files.set("tcp_db.yaml", entry + "---\n" + route(0, 100));
    const { ctx: next, request } = m.push();
    expect(isRoutingOnly(request)).toBe(true);
    p.update(next, request);
    expect(served(p)).toEqual(served(createPilotProvider({ initial: next, logger: quiet })));
    expect(p.resources(sidecar, PILOT_TYPES.listener, "*")).not.toBe(before);
  });

  test("any other change translates everything again, and equal results stay the same maps", () => {
    const m = mesh();
    const first = m.push().ctx;
    const p = createPilotProvider({ initial: first, logger: quiet });
    const c = clients[0]!;
    const clusters = p.resources(c, PILOT_TYPES.cluster, "*");
    const routes = p.resources(c, PILOT_TYPES.route, "*");

    // A DestinationRule change: clusters change, routes do not (the same map is served).
    m.files.set(
      "destination_rules.yaml",
      m.files.get("destination_rules.yaml")!.replace(/consecutive5xxErrors: \d+/, "consecutive5xxErrors: 17"),
    );
    const { ctx: next, request } = m.push();
    expect([...request.configs.values()]).toEqual(["networking.istio.io/DestinationRule"]);
    expect(isRoutingOnly(request)).toBe(false);
    p.update(next, request);
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
    const { ctx: third, request: request3 } = m.push();
    expect(isRoutingOnly(request3)).toBe(false);
    p.update(third, request3);
    expect(served(p)).toEqual(served1);
    expect(p.resources(c, PILOT_TYPES.cluster, "*")).toBe(clusters1);
  });

  test("a burst that changes a DestinationRule, then a VirtualService, is one full translation: the merged set names both", () => {
    const m = mesh();
    const p = createPilotProvider({ initial: m.push().ctx, logger: quiet });
    const c = clients[0]!;
    const clusters = p.resources(c, PILOT_TYPES.cluster, "*");

    m.files.set(
      "destination_rules.yaml",
      m.files.get("destination_rules.yaml")!.replace(/consecutive5xxErrors: \d+/, "consecutive5xxErrors: 17"),
    );
    m.deliver();
    m.files.set("extra.yaml", EXTRA_VS);
    const { ctx: next, request } = m.push();
    expect(new Set(request.configs.values())).toEqual(
      new Set(["networking.istio.io/DestinationRule", "networking.istio.io/VirtualService"]),
    );
    expect(isRoutingOnly(request)).toBe(false);
    p.update(next, request);
    expect(served(p)).toEqual(served(createPilotProvider({ initial: next, logger: quiet })));
    expect(p.resources(c, PILOT_TYPES.cluster, "*")).not.toBe(clusters);
  });

  test("a burst that ends where it began names what it touched and serves what was served before", () => {
    const m = mesh();
    const p = createPilotProvider({ initial: m.push().ctx, logger: quiet });
    const before = served(p);
    const maps = clients.map((c) => Object.values(PILOT_TYPES).map((t) => p.resources(c, t, "*")));
    const routing = m.files.get("routing.yaml")!;
    const rules = m.files.get("destination_rules.yaml")!;

    // A VirtualService A -> B -> A: routing-only; routes are translated again and equal.
    m.files.set(
      "routing.yaml",
      routing.replace("weight: 90", "weight: 80").replace("weight: 10\n", "weight: 20\n"),
    );
    m.deliver();
    m.files.set("routing.yaml", routing);
    const vs = m.push();
    expect(vs.request.configs.size).toBe(1);
    expect(isRoutingOnly(vs.request)).toBe(true);
    p.update(vs.ctx, vs.request);
    expect(served(p)).toEqual(before);

    // A DestinationRule A -> B -> A: everything is translated again and equal.
    m.files.set(
      "destination_rules.yaml",
      rules.replace(/consecutive5xxErrors: \d+/, "consecutive5xxErrors: 17"),
    );
    m.deliver();
    m.files.set("destination_rules.yaml", rules);
    const dr = m.push();
    expect([...dr.request.configs.values()]).toEqual(["networking.istio.io/DestinationRule"]);
    p.update(dr.ctx, dr.request);
    expect(served(p)).toEqual(before);
    // Equal results are served as the same maps, so the xDS server sends nothing.
    clients.forEach((c, i) =>
      Object.values(PILOT_TYPES).forEach((t, j) => expect(p.resources(c, t, "*")).toBe(maps[i]![j]!))
    );
  });

  test("a registry change makes the push full, even merged with a VirtualService change", () => {
    let workloads: RegistryState["workloads"] = [];
    const m = mesh(() => [{ services: [], endpoints: [], workloads }]);
    const p = createPilotProvider({ initial: m.push().ctx, logger: quiet });
    const c = clients[0]!;
    const endpoints = p.resources(c, PILOT_TYPES.endpoint, "*");

    // A VM registers as a second ratings workload while a VirtualService is added.
    workloads = [{
      key: "networking.istio.io/WorkloadEntry/bookinfo/ratings-vm",
      namespace: "bookinfo",
      spec: { address: "192.0.2.99", labels: { app: "ratings", version: "v1" }, ports: { http: 9080 } },
      healthy: true,
    }];
    m.files.set("extra.yaml", EXTRA_VS);
    const { ctx: next, request: config } = m.push();
    const request = mergePushRequests([config, fullPushRequest("registry:test")]);
    expect(request.full).toBe(true);
    expect(request.reasons).toEqual(["config", "registry:test"]);
    expect(isRoutingOnly(request)).toBe(false);
    p.update(next, request);
    expect(served(p)).toEqual(served(createPilotProvider({ initial: next, logger: quiet })));
    expect(p.resources(c, PILOT_TYPES.endpoint, "*")).not.toBe(endpoints);
    const ratings = [...p.resources(c, PILOT_TYPES.endpoint, "*").keys()].filter((n) =>
      n.includes("ratings")
    );
    expect(ratings.length).toBeGreaterThan(0);
  });
});

describe("createPilotProvider() and last good sets", () => {
  test("a proxy set nobody asks for any more loses its last good set after LAST_GOOD_PUSHES pushes", () => {
    const m = mesh();
    const first = m.push();
    const p = createPilotProvider({ initial: first.ctx, logger: quiet });
    served(p);
    expect(p.lastGoodCount()).toBe(3);
    for (let i = 1; i <= LAST_GOOD_PUSHES + 1; i++) {
      p.update(first.ctx, fullPushRequest("registry:test"));
      p.resources(clients[0]!, PILOT_TYPES.cluster, "*");
      // Within the margin every set is kept, for proxies a busy push queue has not asked yet.
      if (i <= LAST_GOOD_PUSHES) expect(p.lastGoodCount()).toBe(3);
    }
    expect(p.lastGoodCount()).toBe(1);
    served(p);
    expect(p.lastGoodCount()).toBe(3);
  });
});

describe("createPilotProvider() and what proxyless gRPC cannot express", () => {
  const grpcClient: XdsClient = {
    connectionId: "grpc-productpage",
    node: create(NodeSchema, {
      id: "proxyless~192.0.2.30~productpage-v1.bookinfo~bookinfo.svc.cluster.local",
      metadata: { GENERATOR: "grpc", NAMESPACE: "bookinfo", LABELS: { app: "productpage", version: "v1" } },
    }),
  };
  const WARMUP_DR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: details-warmup, namespace: bookinfo }
spec:
  host: details
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN, warmup: { duration: 30s } }
`;

  test("lists the gaps per proxy, logs them once per change, and has none for Envoy", () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) });
    const m = mesh();
    m.files.set("warmup.yaml", WARMUP_DR);
    const p = createPilotProvider({ initial: m.push().ctx, logger });
    const proxy = p.proxyOf(grpcClient);
    const gaps = p.unsupportedOf(proxy);
    expect(gaps.some((g) => g.field === "loadBalancer.warmup" && g.resource.includes("details"))).toBe(true);
    expect(p.unsupportedOf(p.proxyOf(clients[0]!))).toEqual([]);

    const warnings = () => lines.filter((l) => String(l.msg).startsWith("proxyless gRPC cannot express"));
    for (const t of Object.values(PILOT_TYPES)) p.resources(grpcClient, t, "*");
    for (const t of Object.values(PILOT_TYPES)) p.resources(grpcClient, t, "*");
    expect(warnings().length).toBe(1);
    expect(warnings()[0]).toMatchObject({ proxy: proxy.id, count: gaps.length });

    // The same gaps after an unrelated push: not logged again; without the warmup: none listed.
    m.files.set(
      "routing.yaml",
      m.files.get("routing.yaml")!.replace("weight: 90", "weight: 80").replace(
        "weight: 10\n",
        "weight: 20\n",
      ),
    );
    const second = m.push();
    p.update(second.ctx, second.request);
    for (const t of Object.values(PILOT_TYPES)) p.resources(grpcClient, t, "*");
    expect(warnings().length).toBe(1);
    m.files.delete("warmup.yaml");
    const third = m.push();
    p.update(third.ctx, third.request);
    expect(p.unsupportedOf(proxy).some((g) => g.field === "loadBalancer.warmup")).toBe(false);
  });
});

describe("createPilotProvider() and endpoints-only registry changes", () => {
  const port = { name: "http", number: 8080, protocol: "HTTP" as const };
  const state = (
    byHost: Record<string, readonly string[]>,
    resolution: "STATIC" | "NONE",
  ): RegistryState => ({
    services: Object.keys(byHost).map((hostname) => ({
      hostname,
      namespace: "default",
      ports: [port],
      addresses: [],
      resolution,
      location: "MESH_INTERNAL" as const,
      exportTo: ["*"],
      subjectAltNames: [],
      source: "test",
    })),
    endpoints: Object.entries(byHost).flatMap(([hostname, addresses]) =>
      addresses.map((address) => ({
        hostname,
        namespace: "default",
        servicePort: port,
        address,
        port: 8080,
        labels: {},
        weight: 1,
        healthy: true,
        tlsMode: "disabled" as const,
        source: "test",
      }))
    ),
    workloads: [],
  });

  for (const resolution of ["STATIC", "NONE"] as const) {
    test(`serves what a fresh translation gives, ${resolution} services losing and gaining endpoints`, () => {
      const store = createConfigStore({ logger: quiet });
      store.sink("test").replace(
        readdirSync(SAMPLES).filter((f) => f.endsWith(".yaml")).map((f) => ({
          origin: f,
          content: sample(f),
        })),
      );
      const config = store.snapshot();
      const steps = [
        { "orders.example": ["10.0.0.1"], "pay.example": ["10.0.1.1"] },
        { "orders.example": ["10.0.0.1", "10.0.0.2"], "pay.example": ["10.0.1.1"] },
        { "orders.example": [], "pay.example": ["10.0.1.1"] },
        { "orders.example": ["10.0.0.3"], "pay.example": ["10.0.1.2"] },
      ];
      let states = [state(steps[0]!, resolution)];
      const p = createPilotProvider({
        initial: createPushContext({ config, registries: states }),
        logger: quiet,
      });
      served(p);
      for (const step of steps.slice(1)) {
        const next = [state(step, resolution)];
        const request = narrowRegistryRequest(
          fullPushRequest("registry:test"),
          endpointChanges(states, next),
        );
        expect(isEndpointsOnly(request)).toBe(true);
        states = next;
        const ctx = createPushContext({ config, registries: states });
        p.update(ctx, request);
        expect(served(p)).toEqual(served(createPilotProvider({ initial: ctx, logger: quiet })));
      }
    });
  }

  /** Endpoints given with the fields a step changes; the rest as `state` makes them. */
  type Ep = {
    address: string;
    serviceAccount?: string;
    tlsMode?: "istio" | "disabled";
    labels?: Record<string, string>;
  };
  const richState = (
    byHost: Record<string, readonly Ep[]>,
    resolution: "STATIC" | "NONE" | "DNS" | "DNS_ROUND_ROBIN",
  ): RegistryState => {
    const base = state(Object.fromEntries(Object.keys(byHost).map((h) => [h, []])), "STATIC");
    return {
      ...base,
      services: base.services.map((s) => ({ ...s, resolution })),
      endpoints: Object.entries(byHost).flatMap(([hostname, eps]) =>
        eps.map((e) => ({
          hostname,
          namespace: "default",
          servicePort: port,
          address: e.address,
          port: 8080,
          labels: e.labels ?? {},
          weight: 1,
          healthy: true,
          tlsMode: e.tlsMode ?? ("disabled" as const),
          ...(e.serviceAccount ? { serviceAccount: e.serviceAccount } : {}),
          source: "test",
        }))
      ),
    };
  };
  /** Runs endpoints-only pushes through `steps` and checks each against a fresh translation. */
  const walk = (
    steps: readonly Record<string, readonly Ep[]>[],
    resolution: "STATIC" | "NONE" | "DNS" | "DNS_ROUND_ROBIN",
  ) => {
    const store = createConfigStore({ logger: quiet });
    store.sink("test").replace(
      readdirSync(SAMPLES).filter((f) => f.endsWith(".yaml")).map((f) => ({ origin: f, content: sample(f) })),
    );
    const config = store.snapshot();
    let states = [richState(steps[0]!, resolution)];
    const p = createPilotProvider({
      initial: createPushContext({ config, registries: states }),
      logger: quiet,
    });
    served(p);
    const kept: Record<string, boolean>[] = [];
    for (const step of steps.slice(1)) {
      const next = [richState(step, resolution)];
      const request = narrowRegistryRequest(fullPushRequest("registry:test"), endpointChanges(states, next));
      expect(isEndpointsOnly(request)).toBe(true);
      states = next;
      const before = Object.fromEntries(
        clients.map((c) => [c.connectionId, p.resources(c, PILOT_TYPES.cluster, "*")]),
      );
      const ctx = createPushContext({ config, registries: states });
      p.update(ctx, request);
      expect(served(p)).toEqual(served(createPilotProvider({ initial: ctx, logger: quiet })));
      kept.push(
        Object.fromEntries(
          clients.map((
            c,
          ) => [c.connectionId, p.resources(c, PILOT_TYPES.cluster, "*") === before[c.connectionId]]),
        ),
      );
    }
    return kept;
  };

  test("an endpoints-only change keeps every proxy's clusters, listeners and routes as they were", () => {
    const kept = walk([
      { "orders.example": [{ address: "10.0.0.1" }], "pay.example": [{ address: "10.0.1.1" }] },
      {
        "orders.example": [{ address: "10.0.0.1" }, { address: "10.0.0.2" }],
        "pay.example": [{ address: "10.0.1.1" }],
      },
      { "orders.example": [{ address: "10.0.0.2" }], "pay.example": [{ address: "10.0.1.1" }] },
    ], "STATIC");
    expect(kept.every((k) => Object.values(k).every(Boolean))).toBe(true);
  });

  for (const resolution of ["DNS", "DNS_ROUND_ROBIN"] as const) {
    test(`${resolution} services carry their endpoints in the cluster: a change there rebuilds it`, () => {
      const kept = walk([
        { "orders.example": [{ address: "a.orders.example" }] },
        { "orders.example": [{ address: "b.orders.example" }] },
        { "orders.example": [] },
        { "orders.example": [{ address: "c.orders.example" }, { address: "d.orders.example" }] },
      ], resolution);
      expect(kept.some((k) => Object.values(k).some((x) => !x))).toBe(true);
    });
  }

  test("a service without endpoints gaining some (NONE resolution) changes its cluster's discovery", () => {
    walk([
      { "orders.example": [], "pay.example": [{ address: "10.0.1.1" }] },
      { "orders.example": [{ address: "10.0.0.1" }], "pay.example": [{ address: "10.0.1.1" }] },
      { "orders.example": [], "pay.example": [{ address: "10.0.1.1" }] },
    ], "NONE");
  });

  test("endpoints' identities and mTLS capability reach clusters (SANs, auto-mTLS)", () => {
    const kept = walk([
      { "orders.example": [{ address: "10.0.0.1", tlsMode: "istio", serviceAccount: "orders" }] },
      { "orders.example": [{ address: "10.0.0.1", tlsMode: "istio", serviceAccount: "orders-v2" }] },
      {
        "orders.example": [
          { address: "10.0.0.1", tlsMode: "istio", serviceAccount: "orders-v2" },
          { address: "10.0.0.2", tlsMode: "disabled" },
        ],
      },
      { "orders.example": [{ address: "10.0.0.2", tlsMode: "istio", serviceAccount: "orders" }] },
    ], "STATIC");
    expect(kept.some((k) => Object.values(k).some((x) => !x))).toBe(true);
  });

  test("a change to a proxy's own instances translates its inbound side again", () => {
    // productpage's sidecar is at 192.0.2.10: its instance of orders.example changes labels
    // and identity while its set key (host, ports, locality) stays the same.
    walk([
      { "orders.example": [{ address: "192.0.2.10" }, { address: "10.0.0.1" }] },
      {
        "orders.example": [
          { address: "192.0.2.10", tlsMode: "istio", serviceAccount: "pp", labels: { app: "x" } },
          { address: "10.0.0.1" },
        ],
      },
      { "orders.example": [{ address: "192.0.2.10", labels: { app: "y" } }, { address: "10.0.0.2" }] },
    ], "STATIC");
  });

  test("registrations undone one registry at a time, under the self-check: every step is served, back to the start", () => {
    const store = createConfigStore({ logger: quiet });
    store.sink("test").replace(
      readdirSync(SAMPLES).filter((f) => f.endsWith(".yaml")).map((f) => ({ origin: f, content: sample(f) })),
    );
    const config = store.snapshot();
    const consul = (extra: boolean) =>
      state({ "svc-0.consul": ["10.0.0.1", ...(extra ? ["10.0.9.1"] : [])] }, "STATIC");
    const eureka = (extra: boolean) =>
      state({ "app-0.eureka": ["10.1.0.1", ...(extra ? ["10.1.9.1"] : [])] }, "STATIC");
    const steps = [
      [consul(true), eureka(false)],
      [consul(true), eureka(true)],
      [consul(false), eureka(true)],
      [consul(false), eureka(false)],
    ];
    let states = [consul(false), eureka(false)];
    const selfCheck = (proxy: Proxy, set: EnvoyResourceSet, partial: boolean) =>
      checkEnvoySet(set, {
        proxyKind: proxyKindOf(proxy),
        secretNames: configuredSecretNames(config),
        partial,
      });
    const p = createPilotProvider({
      initial: createPushContext({ config, registries: states }),
      logger: quiet,
      selfCheck,
    });
    served(p);
    for (const next of steps) {
      const request = narrowRegistryRequest(fullPushRequest("registry:test"), endpointChanges(states, next));
      expect(isEndpointsOnly(request)).toBe(true);
      const held = clients.map((c) => p.resources(c, PILOT_TYPES.endpoint, "*"));
      states = next;
      const ctx = createPushContext({ config, registries: states });
      p.update(ctx, request);
      expect(served(p)).toEqual(served(createPilotProvider({ initial: ctx, logger: quiet })));
      // A changed load assignment is a new map: the xDS server sends it.
      clients.forEach((c, i) => expect(p.resources(c, PILOT_TYPES.endpoint, "*")).not.toBe(held[i]));
      for (const c of clients) expect(p.violationsOf(p.proxyOf(c))).toEqual([]);
    }
  });

  test("a registry change of services or workloads stays full", () => {
    const a = state({ "orders.example": ["10.0.0.1"] }, "STATIC");
    const b = state({ "orders.example": ["10.0.0.1"], "pay.example": [] }, "STATIC");
    const c = state({ "orders.example": ["10.0.0.2"] }, "STATIC");
    expect(endpointChanges([a], [b])).toBeUndefined();
    expect([...endpointChanges([a], [c])!]).toEqual(["orders.example"]);
    const request = fullPushRequest("registry:test");
    expect(narrowRegistryRequest(request, undefined)).toBe(request);
    const mixed = mergePushRequests([request, fullPushRequest("config synced")]);
    expect(narrowRegistryRequest(mixed, new Set(["orders.example"]))).toBe(mixed);
  });
});
