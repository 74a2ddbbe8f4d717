/**
 * The path a pod takes to its cluster, over real TLS: `inClusterConfig()` (service environment
 * and service account directory) against the test API server serving HTTPS with a certificate
 * from a CA the test makes. The Kubernetes registry and galley's Kubernetes config source sync
 * through it; a server certificate the service account's CA did not sign is refused with an
 * error naming the CA file and the server; a rotated token file is used by the next requests; a
 * refused (expired) token shows in the registry's status while the last good view stays, and
 * the registry recovers once the file holds a good token again. A kubeconfig with
 * `certificate-authority-data` and a client certificate authenticates by certificate alone. End
 * to end, `meshd serve --registry kubernetes://?kubeconfig=F` syncs over HTTPS.
 */
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKubeConfig, type KubeConfig } from "../../mod/galley/kube_config.ts";
import { createConfigStore } from "../../mod/galley/store.ts";
import {
  createKubeClient,
  inClusterConfig,
  type KubeConnection,
  loadKubeconfig,
} from "../../mod/kube/mod.ts";
import { createKubernetesRegistry } from "../../mod/pilot/registry/kubernetes.ts";
import type { PlatformRegistry } from "../../mod/pilot/registry/platform.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createTestCa, type Pem, type TestCa } from "../kube/_pki.ts";
import { type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";
import { quiet } from "../galley/_harness.ts";
import { type KubeObject, type KubeServer, startKubeServer, writeKubeconfig } from "./_kube_server.ts";

setDefaultTimeout(30_000);

const SERVICES = "/api/v1/namespaces/kube/services";
const SLICES = "/apis/discovery.k8s.io/v1/namespaces/kube/endpointslices";
const PODS = "/api/v1/namespaces/kube/pods";
const VS = "/apis/networking.istio.io/v1/namespaces/bookinfo/virtualservices";

/** Waits (polling) until `pred` holds; fails naming `what` after 20 s. */
async function until(pred: () => boolean, what: string, detail: () => unknown = () => ""): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(detail())}`);
    await Bun.sleep(10);
  }
}

const service = (name: string): KubeObject => ({
  metadata: { name },
  spec: { type: "ClusterIP", clusterIP: "10.96.0.30", ports: [{ name: "http", port: 80, targetPort: 8080 }] },
});

let ca: TestCa;
let otherCa: TestCa;
let clientCert: Pem;
let server: KubeServer;
let root: string;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([createTestCa(), createTestCa("not-the-cluster-ca")]);
  const serving = await ca.server();
  clientCert = await ca.client("meshd", "system:masters");
  server = await startKubeServer({
    bookmarkIntervalMs: 200,
    tls: { cert: serving.cert, key: serving.key, clientCa: ca.cert },
  });
  server.put(SERVICES, service("echo"));
  server.put(SLICES, {
    metadata: { name: "echo-1", labels: { "kubernetes.io/service-name": "echo" } },
    addressType: "IPv4",
    ports: [{ name: "http", protocol: "TCP", port: 8080 }],
    endpoints: [{
      addresses: ["10.1.0.5"],
      conditions: { ready: true },
      targetRef: { kind: "Pod", name: "a" },
    }],
  });
  server.put(PODS, {
    metadata: { name: "a", labels: { app: "echo" } },
    spec: { serviceAccountName: "echo" },
    status: { phase: "Running", podIP: "10.1.0.5", conditions: [{ type: "Ready", status: "True" }] },
  });
  server.put(VS, {
    apiVersion: "networking.istio.io/v1",
    kind: "VirtualService",
    metadata: { name: "reviews", namespace: "bookinfo" },
    spec: { hosts: ["reviews"], http: [{ route: [{ destination: { host: "reviews" } }] }] },
  });
  root = mkdtempSync(join(tmpdir(), "meshd-in-cluster-"));
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  server.setToken("initial-token");
  for (const name of ["echo-2", "echo-3"]) server.remove(`${SERVICES}/${name}`);
});

afterAll(async () => {
  await server?.close();
  rmSync(root, { recursive: true, force: true });
});

/** The service environment a pod of this cluster sees. */
const podEnv = () => ({ KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(server.port) });

/** A service account directory (token, ca.crt, namespace) trusting `trust` (default the cluster's CA). */
function serviceAccount(token: string, trust: string | null = ca.cert): string {
  const dir = mkdtempSync(join(root, "sa-"));
  writeFileSync(join(dir, "token"), token);
  if (trust !== null) writeFileSync(join(dir, "ca.crt"), trust);
  writeFileSync(join(dir, "namespace"), "meshd");
  return dir;
}

/** Replaces the token as the kubelet does: written beside it, then renamed over it. */
function rotate(dir: string, token: string): void {
  writeFileSync(join(dir, "token.next"), token);
  renameSync(join(dir, "token.next"), join(dir, "token"));
}

function registry(url: string, dir?: string): PlatformRegistry {
  const r = createKubernetesRegistry({
    url: new URL(url),
    clock: systemClock,
    logger: quiet,
    backoff: { initialMs: 20, maxMs: 200 },
    ...(dir === undefined ? {} : { inCluster: { env: podEnv(), dir } }),
  });
  cleanups.push(() => r.stop());
  return r;
}

const services = (r: PlatformRegistry) => r.state().services.map((s) => s.hostname).sort();

describe("in-cluster over HTTPS", () => {
  test("the registry and the config source sync through inClusterConfig() with the service account's CA and token", async () => {
    server.setToken("sa-token-1");
    const dir = serviceAccount("sa-token-1\n");
    const conn = inClusterConfig({ env: podEnv(), dir });
    expect(conn).toMatchObject({
      server: `https://127.0.0.1:${server.port}`,
      caSource: join(dir, "ca.crt"),
      namespace: "meshd",
    });
    const from = server.requests.length;
    const r = registry("kubernetes://", dir);
    await until(
      () => r.status().synced && services(r).length === 1,
      "the registry's first sync",
      () => r.status(),
    );
    expect(services(r)).toEqual(["echo.kube.svc.cluster.local"]);
    expect(r.state().endpoints.map((e) => `${e.address}:${e.port}`)).toEqual(["10.1.0.5:8080"]);
    expect(r.status()).toMatchObject({ address: server.url, synced: true, stale: false });
    expect(server.url.startsWith("https://")).toBe(true);

    const store = createConfigStore({ logger: quiet });
    const source: KubeConfig = createKubeConfig({
      url: "kubernetes",
      store,
      logger: quiet,
      clock: systemClock,
      connection: conn,
      lease: { durationMs: 1_500, renewDeadlineMs: 1_000, retryPeriodMs: 100 },
      status: { debounceMs: 20, resyncMs: 150 },
    });
    cleanups.push(() => source.stop());
    await source.start(store.sink(source.name));
    await until(() => source.synced(), "the config source's first sync", () => source.status());
    expect([...store.snapshot().resources.values()].map((x) => `${x.kind}/${x.metadata.name}`)).toEqual([
      "VirtualService/reviews",
    ]);
    // The Lease is in the service account's namespace, held by this replica, over the same TLS path.
    await until(() => source.election.leading(), "the status Lease", () => source.election.status());
    const lease = server.get("/apis/coordination.k8s.io/v1/namespaces/meshd/leases/meshd-galley-status");
    expect((lease?.spec as { holderIdentity?: string }).holderIdentity).toBe(source.election.status().self);
    const mine = server.requests.slice(from);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.filter((q) => q.auth !== "token" || q.status === 401)).toEqual([]);
  });

  test("a server certificate the service account's CA did not sign is refused, naming the CA file and the server", async () => {
    server.setToken("sa-token-2");
    const dir = serviceAccount("sa-token-2", otherCa.cert);
    const from = server.requests.length;
    const r = registry("kubernetes://", dir);
    await until(() => r.status().lastError !== undefined, "the TLS failure", () => r.status());
    const status = r.status();
    expect(status.synced).toBe(false);
    expect(status.lastError).toContain(join(dir, "ca.crt"));
    expect(status.lastError).toContain(`the certificate of https://127.0.0.1:${server.port} is not trusted`);
    // Nothing got through: the client gave up before sending a request.
    expect(server.requests.length).toBe(from);

    // Without ca.crt the system's trust store is used, and says so.
    const bare = createKubeClient(
      inClusterConfig({ env: podEnv(), dir: serviceAccount("sa-token-2", null) }),
      {
        clock: systemClock,
      },
    );
    const err = await bare.request("GET", SERVICES).catch((e: Error) => e);
    expect(String(err)).toContain("is not trusted by the system's trust store");
  });

  test("a rotated token file is read for the next requests, which the server accepts", async () => {
    server.setToken("sa-token-3");
    const dir = serviceAccount("sa-token-3");
    const r = registry("kubernetes://", dir);
    await until(() => r.status().synced && services(r).length === 1, "the first sync", () => r.status());
    rotate(dir, "sa-token-3-rotated");
    server.setToken("sa-token-3-rotated");
    const from = server.requests.length;
    server.closeWatches();
    server.put(SERVICES, service("echo-2"));
    await until(() => services(r).length === 2, "the change after the rotation", () => r.status());
    const after = server.requests.slice(from);
    expect(after.length).toBeGreaterThan(0);
    // Every request after the rotation carried the new token: none was refused.
    expect(after.filter((q) => q.status === 401)).toEqual([]);
    expect(r.status()).toMatchObject({ synced: true, stale: false });
  });

  test("a refused (expired) token is reported, the last good view kept, and the registry recovers once the file is right", async () => {
    server.setToken("sa-token-4");
    const dir = serviceAccount("sa-token-4");
    const r = registry("kubernetes://", dir);
    await until(() => r.status().synced && services(r).length === 1, "the first sync", () => r.status());
    // The server stops accepting the token the file still holds.
    server.setToken("sa-token-4-renewed");
    server.closeWatches();
    await until(() => r.status().stale, "the 401 in the status", () => r.status());
    const failing = r.status();
    expect(failing.lastError).toContain("401");
    expect(failing.lastError).toContain(`refused the bearer token in ${join(dir, "token")}`);
    expect(services(r)).toEqual(["echo.kube.svc.cluster.local"]);
    server.put(SERVICES, service("echo-3"));
    await Bun.sleep(300);
    expect(services(r)).toEqual(["echo.kube.svc.cluster.local"]);

    rotate(dir, "sa-token-4-renewed");
    await until(() => services(r).length === 2, "recovery with the good token", () => r.status());
    await until(() => !r.status().stale, "the status clearing", () => r.status());
    expect(r.status().lastError).toBeUndefined();
  });

  test("a kubeconfig with certificate-authority-data and a client certificate authenticates by certificate", async () => {
    server.setToken("no-one-has-this");
    const path = writeKubeconfig(server, {
      dir: mkdtempSync(join(root, "kc-")),
      ca: ca.cert,
      clientCert,
      noToken: true,
    });
    const conn = loadKubeconfig(path);
    expect(conn).toMatchObject({ ca: ca.cert, caSource: `certificate-authority-data of kubeconfig ${path}` });
    expect(conn.cert).toBe(clientCert.cert);
    const from = server.requests.length;
    const r = registry(`kubernetes://?kubeconfig=${path}`);
    await until(() => r.status().synced && services(r).length === 1, "the first sync", () => r.status());
    const mine = server.requests.slice(from);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((q) => q.auth === "certificate")).toBe(true);

    // A certificate from another CA is no credential: 401, naming what was presented.
    const stranger = await otherCa.client("stranger");
    const wrong: KubeConnection = { ...conn, cert: stranger.cert, key: stranger.key };
    const err = await createKubeClient(wrong, { clock: systemClock }).request("GET", SERVICES).catch((
      e: Error,
    ) => e);
    expect(String(err)).toContain("401");
    expect(String(err)).toContain(`refused the client certificate of kubeconfig ${path}`);

    // The kubeconfig's CA data trusting another CA names the kubeconfig.
    const untrusting = loadKubeconfig(
      writeKubeconfig(server, {
        dir: mkdtempSync(join(root, "kc-")),
        ca: otherCa.cert,
        clientCert,
        noToken: true,
      }),
    );
    const refused = await createKubeClient(untrusting, { clock: systemClock }).request("GET", SERVICES).catch(
      (
        e: Error,
      ) => e,
    );
    expect(String(refused)).toContain(`certificate-authority-data of kubeconfig`);
    expect(String(refused)).toContain(server.url);
  });
});

describe("meshd serve --registry kubernetes:// over HTTPS", () => {
  let meshd: MeshdProcess | undefined;
  afterAll(async () => {
    await meshd?.stop();
  });

  test("syncs with the kubeconfig's CA data and token file, and shows it in /debug/registryz", async () => {
    server.setToken("daemon-token");
    const dir = mkdtempSync(join(root, "e2e-"));
    mkdirSync(join(dir, "config"));
    const path = writeKubeconfig(server, { dir, ca: ca.cert, tokenFile: true });
    meshd = await startMeshd({
      args: [
        "--modules=pilot",
        `--config-dir=${join(dir, "config")}`,
        `--registry=kubernetes://?kubeconfig=${path}`,
      ],
    });
    const registryz = async () =>
      ((await (await fetch(`http://${meshd!.adminAddr}/debug/registryz`)).json()) as Array<
        Record<string, unknown>
      >)[0];
    let status: Record<string, unknown> | undefined;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      status = await registryz();
      if (status?.synced === true) break;
      await Bun.sleep(100);
    }
    expect(status).toMatchObject({
      kind: "kubernetes",
      address: server.url,
      synced: true,
      stale: false,
      services: 1,
    });
  });
});
