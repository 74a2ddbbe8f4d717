/**
 * The Kubernetes API client against the test API server over real HTTP: kubeconfig and
 * in-cluster configuration, bearer tokens, and the list-then-watch informer (bookmarks moving
 * the resourceVersion, 410 Gone answered by a relist that loses nothing, pages, a failing, slow
 * or restarting server leaving the last good cache in place).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createKubeClient,
  inClusterConfig,
  type Informer,
  type InformerEvent,
  KubeApiError,
  type KubeObject,
  listWatch,
  loadKubeconfig,
  parseKubeconfig,
} from "../../mod/kube/client.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { type KubeServer, type KubeServerOptions, startKubeServer, writeKubeconfig } from "./_kube_server.ts";

const quiet = createLogger({ write: () => {} });
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(opts: KubeServerOptions = {}): Promise<KubeServer> {
  const s = await startKubeServer({ bookmarkIntervalMs: 0, ...opts });
  cleanups.push(() => s.close());
  return s;
}

/** Waits (polling) until `pred` holds; fails naming `what` after 20 s (a loaded machine is slow, never wrong). */
async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

const PODS = "/api/v1/namespaces/default/pods";
const pod = (name: string, labels: Record<string, string> = {}) => ({ metadata: { name, labels }, spec: {} });

function informer(
  s: KubeServer,
  path = "/api/v1/pods",
  extra: { pageSize?: number; requestTimeoutMs?: number; events?: InformerEvent[] } = {},
): Informer {
  const client = createKubeClient(loadKubeconfig(writeKubeconfig(s)), {
    clock: systemClock,
    requestTimeoutMs: extra.requestTimeoutMs ?? 2000,
  });
  const inf = listWatch(client, path, {
    clock: systemClock,
    logger: quiet,
    backoff: { initialMs: 20, maxMs: 100 },
    ...(extra.pageSize ? { pageSize: extra.pageSize } : {}),
    ...(extra.events ? { onEvent: (e) => extra.events!.push(e) } : {}),
  });
  cleanups.push(() => inf.stop());
  return inf;
}

/** The KubeApiError `p` rejects with. */
async function rejection(p: Promise<unknown>): Promise<KubeApiError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  if (!(e instanceof KubeApiError)) throw new Error(`want a KubeApiError, got ${String(e)}`);
  return e;
}

const names = (inf: Informer) => [...inf.items().keys()].sort();
const watches = (s: KubeServer) => s.requests.filter((r) => r.query.watch === "1");

describe("kubeconfig", () => {
  const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  // Shaped as the "Configure Access to Multiple Clusters" page of the Kubernetes docs writes one.
  const text = (dir: string) => `
apiVersion: v1
kind: Config
preferences: {}
clusters:
- cluster:
    certificate-authority: fake-ca-file
    server: https://1.2.3.4
  name: development
- cluster:
    certificate-authority-data: ${Buffer.from(CA).toString("base64")}
    server: https://5.6.7.8:6443/
  name: test
contexts:
- context:
    cluster: development
    namespace: frontend
    user: developer
  name: dev-frontend
- context:
    cluster: test
    namespace: storage
    user: experimenter
  name: exp-test
current-context: exp-test
users:
- name: developer
  user:
    tokenFile: ${join(dir, "dev-token")}
- name: experimenter
  user:
    token: some-token
    client-certificate: certs/client.crt
    client-key-data: ${Buffer.from("KEY").toString("base64")}
- name: plugin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: get-token
`;

  test("parseKubeconfig() reads the current context's cluster, CA data, token and relative files", () => {
    const dir = mkdtempSync(join(tmpdir(), "kc-"));
    const read = (p: string) => `read:${p}`;
    const c = parseKubeconfig(text(dir), { path: join(dir, "config"), readFile: read });
    expect(c.server).toBe("https://5.6.7.8:6443");
    expect(c.ca).toBe(CA);
    expect(c.token).toBe("some-token");
    expect(c.cert).toBe(`read:${join(dir, "certs/client.crt")}`);
    expect(c.key).toBe("KEY");
    expect(c.namespace).toBe("storage");
    expect(c.origin).toContain("context exp-test");
  });

  test("parseKubeconfig() takes a named context, its CA file and its token file", () => {
    const dir = mkdtempSync(join(tmpdir(), "kc-"));
    const c = parseKubeconfig(text(dir), {
      path: join(dir, "config"),
      context: "dev-frontend",
      readFile: (p) => `ca at ${p}`,
    });
    expect(c.server).toBe("https://1.2.3.4");
    expect(c.ca).toBe(`ca at ${join(dir, "fake-ca-file")}`);
    expect(c.tokenFile).toBe(join(dir, "dev-token"));
    expect(c.token).toBeUndefined();
  });

  test("parseKubeconfig() names the file and what is wrong", () => {
    const cfg = text("/x");
    expect(() => parseKubeconfig(cfg, { path: "/k/config", context: "nope" })).toThrow(
      '/k/config: context "nope" is not defined',
    );
    const plugin = cfg.replace("current-context: exp-test", "current-context: p") +
      "contexts2: []\n";
    const withPluginContext = plugin.replace(
      "contexts:\n",
      "contexts:\n- context:\n    cluster: test\n    user: plugin\n  name: p\n",
    );
    expect(() => parseKubeconfig(withPluginContext, { path: "/k/config", readFile: () => "" })).toThrow(
      '/k/config: user "plugin": exec is not supported',
    );
    expect(() => parseKubeconfig("kind: Config\n", { path: "/k/config" })).toThrow(
      "/k/config: current-context is not set",
    );
  });

  test("inClusterConfig() reads the service account directory and the service environment", () => {
    const dir = mkdtempSync(join(tmpdir(), "sa-"));
    writeFileSync(join(dir, "token"), "sa-token\n");
    writeFileSync(join(dir, "ca.crt"), CA);
    writeFileSync(join(dir, "namespace"), "istio-system");
    const c = inClusterConfig({
      dir,
      env: { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" },
    });
    expect(c).toEqual({
      server: "https://10.96.0.1:443",
      tokenFile: join(dir, "token"),
      ca: CA,
      caSource: join(dir, "ca.crt"),
      namespace: "istio-system",
      origin: "in-cluster",
    });
    const v6 = inClusterConfig({
      dir,
      env: { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" },
    });
    expect(v6.server).toBe("https://[fd00::1]:443");
    expect(() => inClusterConfig({ dir, env: {} })).toThrow("not running in a pod");
    expect(() =>
      inClusterConfig({
        dir: join(dir, "none"),
        env: { KUBERNETES_SERVICE_HOST: "h", KUBERNETES_SERVICE_PORT: "1" },
      })
    ).toThrow("service account token");
  });
});

describe("KubeClient", () => {
  test("request() sends the kubeconfig's bearer token, from a token file too", async () => {
    const s = await server();
    s.put(PODS, pod("a"));
    for (const tokenFile of [false, true]) {
      const client = createKubeClient(loadKubeconfig(writeKubeconfig(s, { tokenFile })), {
        clock: systemClock,
      });
      const got = await client.request<KubeObject>("GET", `${PODS}/a`);
      expect(got.metadata.name).toBe("a");
    }
  });

  test("request() throws a KubeApiError with the Status code and reason", async () => {
    const s = await server();
    const wrong = createKubeClient({ server: s.url, token: "wrong", origin: "test" }, { clock: systemClock });
    const e1 = await rejection(wrong.request("GET", PODS));
    expect(e1).toBeInstanceOf(KubeApiError);
    expect([e1.code, e1.reason]).toEqual([401, "Unauthorized"]);
    const right = createKubeClient({ server: s.url, token: s.token, origin: "test" }, { clock: systemClock });
    const e2 = await rejection(right.request("GET", `${PODS}/missing`));
    expect([e2.code, e2.reason]).toEqual([404, "NotFound"]);
    const created = await right.request<KubeObject>("POST", PODS, { body: pod("b") });
    const e3 = await rejection(right.request("PUT", `${PODS}/b`, {
      body: { ...created, metadata: { ...created.metadata, resourceVersion: "1" } },
    }));
    expect([e3.code, e3.reason]).toEqual([409, "Conflict"]);
  });

  test("request() gives up on a server that does not answer in time", async () => {
    const s = await server();
    s.slow(3000);
    const client = createKubeClient({ server: s.url, token: s.token, origin: "test" }, {
      clock: systemClock,
      requestTimeoutMs: 100,
    });
    const e = await rejection(client.request("GET", PODS));
    expect(e).toBeInstanceOf(KubeApiError);
    expect(e.message).toContain("no answer");
  });
});

describe("listWatch()", () => {
  test("lists, then watches from the list's resourceVersion with bookmarks allowed", async () => {
    const s = await server();
    s.put(PODS, pod("a"));
    const events: InformerEvent[] = [];
    const inf = informer(s, "/api/v1/pods", { events });
    await until(() => inf.status().synced && s.openWatches === 1, "sync and watch");
    const listRv = inf.status().resourceVersion;
    expect(watches(s)[0]!.query).toMatchObject({ resourceVersion: listRv, allowWatchBookmarks: "true" });
    s.put("/api/v1/namespaces/other/pods", pod("b"));
    s.patch(`${PODS}/a`, { metadata: { labels: { v: "2" } } });
    s.remove(`${PODS}/a`);
    await until(() => events.length === 4, "four events");
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual([
      "ADDED a",
      "ADDED b",
      "MODIFIED a",
      "DELETED a",
    ]);
    expect(names(inf)).toEqual(["other/b"]);
    expect(inf.status().resourceVersion).toBe(String(s.resourceVersion));
    expect(inf.status().lists).toBe(1);
  });

  test("a bookmark moves the resourceVersion the next watch starts from", async () => {
    const s = await server();
    s.put(PODS, pod("a"));
    const inf = informer(s, PODS);
    await until(() => s.openWatches === 1, "watch");
    // Writes to another collection move the server's version without an event on this watch.
    for (let i = 0; i < 3; i++) s.put("/api/v1/namespaces/default/services", pod(`s${i}`));
    const target = String(s.resourceVersion);
    expect(inf.status().resourceVersion).not.toBe(target);
    s.bookmark();
    await until(() => inf.status().resourceVersion === target, "bookmark");
    s.closeWatches();
    await until(() => watches(s).length === 2, "second watch");
    expect(watches(s)[1]!.query.resourceVersion).toBe(target);
    expect(inf.status().lists).toBe(1);
  });

  for (const expiredWatch of ["event", "status"] as const) {
    test(`410 Gone (as ${expiredWatch === "event" ? "an ERROR event" : "a 410 answer"}) relists and loses nothing`, async () => {
      const s = await server({ expiredWatch });
      s.put(PODS, pod("a"));
      s.put(PODS, pod("b"));
      const events: InformerEvent[] = [];
      const inf = informer(s, PODS, { events });
      await until(() => s.openWatches === 1, "watch");
      // While the server is away its store moves on and compacts the versions the watch knew.
      await s.down();
      s.remove(`${PODS}/a`);
      s.patch(`${PODS}/b`, { metadata: { labels: { v: "2" } } });
      s.put(PODS, pod("c"));
      s.compact();
      await s.up();
      await until(() => inf.status().lists === 2 && names(inf).length === 2, "relist");
      expect(names(inf)).toEqual(["default/b", "default/c"]);
      expect(inf.items().get("default/b")!.metadata.labels).toEqual({ v: "2" });
      expect(events.slice(2).map((e) => `${e.type} ${e.object.metadata.name}`).sort()).toEqual([
        "ADDED c",
        "DELETED a",
        "MODIFIED b",
      ]);
      await until(() => !inf.status().stale, "fresh again");
    });
  }

  test("an ERROR 410 on an open watch relists", async () => {
    const s = await server();
    s.put(PODS, pod("a"));
    const inf = informer(s, PODS);
    await until(() => s.openWatches === 1, "watch");
    s.expireWatches();
    await until(() => inf.status().lists === 2 && s.openWatches === 1, "relist and rewatch");
    expect(names(inf)).toEqual(["default/a"]);
  });

  test("lists in pages", async () => {
    const s = await server();
    for (let i = 0; i < 7; i++) s.put(PODS, pod(`p${i}`));
    const inf = informer(s, PODS, { pageSize: 3 });
    await until(() => inf.status().synced, "sync");
    expect(names(inf).length).toBe(7);
    expect(s.requests.filter((r) => r.query.watch === undefined && r.path === PODS).length).toBe(3);
  });

  test("a 500 keeps the last good cache, marked stale, until the server answers again", async () => {
    const s = await server();
    s.put(PODS, pod("a"));
    const inf = informer(s, PODS);
    await until(() => s.openWatches === 1, "watch");
    const before = inf.items();
    s.fail(Infinity, 500);
    s.closeWatches();
    await until(() => inf.status().stale, "stale");
    expect(inf.status().lastError).toContain("500");
    expect(inf.items()).toBe(before);
    s.put(PODS, pod("b"));
    s.fail(0);
    await until(() => !inf.status().stale && names(inf).length === 2, "recovery");
    expect(inf.status().lastError).toBeUndefined();
  });

  test("a restarted server keeps the cache and the watch resumes from its resourceVersion", async () => {
    const s = await server();
    s.put(PODS, pod("a"));
    const inf = informer(s, PODS);
    await until(() => s.openWatches === 1, "watch");
    await s.down();
    await until(() => inf.status().stale, "stale while down");
    expect(names(inf)).toEqual(["default/a"]);
    s.put(PODS, pod("b"));
    await s.up();
    await until(() => names(inf).length === 2 && !inf.status().stale, "resumed");
    expect(inf.status().lists).toBe(1);
  });

  test("a server too slow to answer a watch leaves the cache stale", async () => {
    const s = await server();
    s.put(PODS, pod("a"));
    const inf = informer(s, PODS, { requestTimeoutMs: 150 });
    await until(() => s.openWatches === 1, "watch");
    s.slow(2000);
    s.closeWatches();
    await until(() => inf.status().stale, "stale");
    expect(inf.status().lastError).toContain("no answer");
    expect(names(inf)).toEqual(["default/a"]);
    s.slow(0);
    await until(() => !inf.status().stale, "fresh again");
  });
});
