/**
 * The Kubernetes registry against the test API server over real HTTP: Services, EndpointSlices,
 * Pods and Nodes mapped to services and endpoints, a not-ready endpoint leaving EDS, and a
 * failing, expiring or restarting API server leaving the last good view in place.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createConfigStore } from "../../mod/galley/store.ts";
import { createPushContext } from "../../mod/pilot/model/push_context.ts";
import {
  createKubernetesRegistry,
  localityOf,
  parseKubernetesUrl,
  portProtocol,
} from "../../mod/pilot/registry/kubernetes.ts";
import type { PlatformRegistry } from "../../mod/pilot/registry/platform.ts";
import { buildEndpoints } from "../../mod/pilot/translate/mod.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { sidecar } from "../pilot/_push.ts";
import { type KubeObject, type KubeServer, startKubeServer, writeKubeconfig } from "./_kube_server.ts";

const quiet = createLogger({ write: () => {} });
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(): Promise<KubeServer> {
  const s = await startKubeServer({ bookmarkIntervalMs: 0 });
  cleanups.push(() => s.close());
  return s;
}

function registry(s: KubeServer, query = ""): PlatformRegistry {
  const r = createKubernetesRegistry({
    url: new URL(`kubernetes://?kubeconfig=${writeKubeconfig(s)}${query}`),
    clock: systemClock,
    logger: quiet,
    backoff: { initialMs: 20, maxMs: 100 },
  });
  cleanups.push(() => r.stop());
  return r;
}

/** Waits (polling) until `pred` holds; fails naming `what` after 20 s (a loaded machine is slow, never wrong). */
async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

const HOST = "example.default.svc.cluster.local";
const SERVICES = "/api/v1/namespaces/default/services";
const SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
const PODS = "/api/v1/namespaces/default/pods";

// The Service of the "Service" concept page (my-service: port 80 to targetPort 9376), named
// `example` to match the EndpointSlice page's example, with a named port and the cluster IP the
// API server would have assigned.
const service = (): KubeObject => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "example" },
  spec: {
    selector: { "app.kubernetes.io/name": "MyApp" },
    type: "ClusterIP",
    clusterIP: "10.96.0.11",
    clusterIPs: ["10.96.0.11"],
    ports: [
      { name: "http", protocol: "TCP", port: 80, targetPort: 9376 },
      { name: "metrics", protocol: "TCP", port: 9090, targetPort: 9090, appProtocol: "http" },
    ],
  },
});

// The EndpointSlice of the "EndpointSlices" concept page (example-abc for service `example`),
// with a second endpoint that is not ready and targetRefs to the pods behind them.
const slice = (ready2 = false): KubeObject => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name: "example-abc", labels: { "kubernetes.io/service-name": "example" } },
  addressType: "IPv4",
  ports: [{ name: "http", protocol: "TCP", port: 9376 }, { name: "metrics", protocol: "TCP", port: 9090 }],
  endpoints: [
    {
      addresses: ["10.1.2.3"],
      conditions: { ready: true },
      hostname: "pod-1",
      nodeName: "node-1",
      zone: "us-west2-a",
      targetRef: { kind: "Pod", name: "pod-1", namespace: "default" },
    },
    {
      addresses: ["10.1.2.4"],
      conditions: { ready: ready2 },
      hostname: "pod-2",
      nodeName: "node-1",
      zone: "us-west2-a",
      targetRef: { kind: "Pod", name: "pod-2", namespace: "default" },
    },
  ],
});

const pod = (name: string, ip: string, labels: Record<string, string>): KubeObject => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, labels, annotations: {} },
  spec: { serviceAccountName: "example-sa", nodeName: "node-1", containers: [{ name: "app", image: "app" }] },
  status: { phase: "Running", podIP: ip, conditions: [{ type: "Ready", status: "True" }] },
});

// A node with the region and zone labels of the "Well-Known Labels, Annotations and Taints" page.
const node = (): KubeObject => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: {
    name: "node-1",
    labels: { "topology.kubernetes.io/region": "us-west2", "topology.kubernetes.io/zone": "us-west2-a" },
  },
});

async function cluster(): Promise<KubeServer> {
  const s = await server();
  s.put("/api/v1/nodes", node());
  s.put(
    PODS,
    pod("pod-1", "10.1.2.3", { "app.kubernetes.io/name": "MyApp", "security.istio.io/tlsMode": "istio" }),
  );
  s.put(PODS, pod("pod-2", "10.1.2.4", { "app.kubernetes.io/name": "MyApp" }));
  s.put(SERVICES, service());
  s.put(SLICES, slice());
  return s;
}

const addrs = (r: PlatformRegistry, port = 80) =>
  r.state().endpoints.filter((e) => e.hostname === HOST && e.servicePort.number === port)
    .map((e) => `${e.address}:${e.port}`).sort();

describe("Kubernetes mapping", () => {
  test("portProtocol() reads appProtocol, then the port name's prefix, then UDP", () => {
    expect(portProtocol({ name: "web", appProtocol: "http" })).toBe("HTTP");
    expect(portProtocol({ name: "x", appProtocol: "kubernetes.io/h2c" })).toBe("HTTP2");
    expect(portProtocol({ name: "grpc-api" })).toBe("GRPC");
    expect(portProtocol({ name: "grpc-web" })).toBe("GRPC-WEB");
    expect(portProtocol({ name: "http" })).toBe("HTTP");
    expect(portProtocol({ name: "tcp-db" })).toBe("TCP");
    expect(portProtocol({ name: "dns", protocol: "UDP" })).toBe("UDP");
    expect(portProtocol({ name: "web" })).toBe("UNSUPPORTED");
    expect(portProtocol({})).toBe("UNSUPPORTED");
  });

  test("localityOf() prefers the pod's istio-locality label, then the node's region and zone", () => {
    const n = { metadata: { name: "n", labels: { "topology.kubernetes.io/region": "r1" } } };
    expect(localityOf(undefined, n, "z1")).toBe("r1/z1");
    expect(localityOf({ metadata: { name: "p", labels: { "istio-locality": "a.b.c" } } }, n, "z1")).toBe(
      "a/b/c",
    );
    expect(localityOf(undefined, undefined, undefined)).toBeUndefined();
  });

  test("parseKubernetesUrl() names a parameter it does not know", () => {
    expect(parseKubernetesUrl(new URL("kubernetes://")).domain).toBe("cluster.local");
    expect(() => parseKubernetesUrl(new URL("kubernetes://?kubeconfig=/k&dc=1"))).toThrow(
      'unknown parameter "dc"',
    );
    expect(() => parseKubernetesUrl(new URL("kubernetes://?context=c"))).toThrow(
      "context= needs kubeconfig=FILE",
    );
  });

  test("in-cluster without a pod's environment fails saying so", () => {
    expect(() =>
      createKubernetesRegistry({
        url: new URL("kubernetes://"),
        clock: systemClock,
        logger: quiet,
        inCluster: { env: {}, dir: "/nonexistent" },
      })
    ).toThrow("not running in a pod");
  });
});

describe("Kubernetes registry", () => {
  test("a Service with ready EndpointSlice endpoints becomes a service with its pods' endpoints", async () => {
    const s = await cluster();
    const r = registry(s);
    await until(() => r.status().synced && r.state().services.length === 1, "first sync");
    const svc = r.state().services[0]!;
    expect(svc).toEqual({
      hostname: HOST,
      namespace: "default",
      ports: [
        { name: "http", number: 80, protocol: "HTTP", targetPort: 9376 },
        { name: "metrics", number: 9090, protocol: "HTTP" },
      ],
      addresses: ["10.96.0.11"],
      resolution: "STATIC",
      location: "MESH_INTERNAL",
      exportTo: ["*"],
      subjectAltNames: [],
      source: "kubernetes:default/example",
    });
    expect(addrs(r)).toEqual(["10.1.2.3:9376"]);
    expect(addrs(r, 9090)).toEqual(["10.1.2.3:9090"]);
    const ep = r.state().endpoints.find((e) => e.servicePort.number === 80)!;
    expect(ep).toMatchObject({
      labels: { "app.kubernetes.io/name": "MyApp", "security.istio.io/tlsMode": "istio" },
      serviceAccount: "example-sa",
      locality: "us-west2/us-west2-a",
      tlsMode: "istio",
      healthy: true,
      weight: 1,
      source: "kubernetes:default/example/pod-1",
    });
    expect(r.state().workloads.map((w) => [w.key, w.spec.address, w.healthy])).toEqual([
      ["kubernetes:default/pod-1", "10.1.2.3", true],
      ["kubernetes:default/pod-2", "10.1.2.4", true],
    ]);
    expect(r.status()).toMatchObject({
      name: r.name,
      kind: "kubernetes",
      address: s.url,
      synced: true,
      stale: false,
      services: 1,
      endpoints: 2,
    });
  });

  test("domain= and namespace= shape the hosts and what is read", async () => {
    const s = await cluster();
    s.put("/api/v1/namespaces/other/services", { ...service(), metadata: { name: "elsewhere" } });
    const r = registry(s, "&domain=corp.example&namespace=default");
    await until(() => r.state().services.length > 0, "sync");
    expect(r.state().services.map((x) => x.hostname)).toEqual(["example.default.svc.corp.example"]);
  });

  test("an endpoint turning not ready leaves, and comes back when ready; a deleted service goes", async () => {
    const s = await cluster();
    const r = registry(s);
    await until(() => addrs(r).length === 1, "first sync");
    let changes = 0;
    r.watch(() => changes++);
    s.put(SLICES, slice(true));
    await until(() => addrs(r).length === 2, "pod-2 ready");
    expect(addrs(r)).toEqual(["10.1.2.3:9376", "10.1.2.4:9376"]);
    // pod-2 has no tlsMode label nor sidecar annotation.
    expect(r.state().endpoints.find((e) => e.address === "10.1.2.4")!.tlsMode).toBe("disabled");
    s.put(SLICES, slice(false));
    await until(() => addrs(r).length === 1, "pod-2 not ready");
    expect(addrs(r)).toEqual(["10.1.2.3:9376"]);
    expect(changes).toBeGreaterThanOrEqual(2);
    s.remove(`${SERVICES}/example`);
    await until(() => r.state().services.length === 0, "service deleted");
    expect(r.state().endpoints).toEqual([]);
  });

  test("the API server going away keeps the last good view, reported stale, and recovers", async () => {
    const s = await cluster();
    const r = registry(s);
    await until(() => addrs(r).length === 1, "first sync");
    const view = r.state();
    await s.down();
    await until(() => r.status().stale, "stale");
    expect(r.status().lastError).toBeDefined();
    expect(r.state()).toBe(view);
    s.put(SLICES, slice(true));
    await s.up();
    await until(() => addrs(r).length === 2 && !r.status().stale, "recovery");
    expect(r.status().lastError).toBeUndefined();
  });

  test("500s keep the last good view; the watch expiring meanwhile relists without loss", async () => {
    const s = await cluster();
    const r = registry(s);
    await until(() => addrs(r).length === 1, "first sync");
    const view = r.state();
    s.fail(Infinity, 500);
    s.closeWatches();
    await until(() => r.status().stale, "stale");
    expect(r.status().lastError).toContain("500");
    expect(r.state()).toBe(view);
    s.put(SLICES, slice(true));
    s.put(PODS, pod("pod-2", "10.1.2.4", { "app.kubernetes.io/name": "MyApp", version: "v2" }));
    s.compact();
    s.fail(0);
    await until(() => addrs(r).length === 2 && !r.status().stale, "recovery");
    expect(r.state().endpoints.find((e) => e.address === "10.1.2.4")!.labels.version).toBe("v2");
    // The watches from compacted versions were refused with 410 and the collections listed again.
    expect(
      s.requests.some((q) =>
        q.query.watch === undefined && q.path === SLICES.replace("/namespaces/default", "")
      ),
    )
      .toBe(true);
  });

  test("pilot's EDS for a sidecar holds the ready pods and drops one that turns not ready", async () => {
    const s = await cluster();
    s.put(SLICES, slice(true));
    const r = registry(s);
    await until(() => addrs(r).length === 2, "first sync");
    const store = createConfigStore({ logger: quiet });
    const client = sidecar("10.9.9.9", "default");
    const eds = () =>
      buildEndpoints(createPushContext({ config: store.snapshot(), registries: [r.state()] }), client)
        .filter((c) => c.clusterName === `outbound|80||${HOST}`)
        .flatMap((c) => c.endpoints.flatMap((g) => g.lbEndpoints))
        .map((e) =>
          e.hostIdentifier.case === "endpoint" &&
            e.hostIdentifier.value.address?.address.case === "socketAddress"
            ? `${e.hostIdentifier.value.address.address.value.address}:${e.hostIdentifier.value.address.address.value.portSpecifier.value}`
            : "?"
        )
        .sort();
    expect(eds()).toEqual(["10.1.2.3:9376", "10.1.2.4:9376"]);
    s.put(SLICES, slice(false));
    await until(() => addrs(r).length === 1, "pod-2 not ready");
    expect(eds()).toEqual(["10.1.2.3:9376"]);
  });
});
