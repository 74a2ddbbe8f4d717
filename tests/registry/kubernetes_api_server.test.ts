/**
 * The test Kubernetes API server's own contract, over real HTTP: the writes other tests build
 * on (create, update with resourceVersion conflicts, merge and JSON patches, the status
 * subresource, Leases), label selectors on lists and watches, and bearer-token auth.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { type KubeObject, type KubeServer, parseLabelSelector, startKubeServer } from "./_kube_server.ts";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(): Promise<KubeServer> {
  const s = await startKubeServer({ bookmarkIntervalMs: 0 });
  cleanups.push(() => s.close());
  return s;
}

async function call(
  s: KubeServer,
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json",
): Promise<{ status: number; body: KubeObject & Record<string, unknown> }> {
  const res = await fetch(`${s.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${s.token}`, "content-type": contentType },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: await res.json() as KubeObject & Record<string, unknown> };
}

// A Lease as the coordination.k8s.io/v1 reference page describes one (holder, duration, renew time).
const LEASES = "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases";
const lease = (holder: string) => ({
  apiVersion: "coordination.k8s.io/v1",
  kind: "Lease",
  metadata: { name: "meshd-leader" },
  spec: { holderIdentity: holder, leaseDurationSeconds: 15, renewTime: "2024-01-01T00:00:00.000000Z" },
});

describe("test Kubernetes API server", () => {
  test("a request without the bearer token is 401 Unauthorized", async () => {
    const s = await server();
    const res = await fetch(`${s.url}/api/v1/pods`);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ kind: "Status", reason: "Unauthorized", code: 401 });
  });

  test("Leases: create, 409 AlreadyExists, update with the current resourceVersion, 409 Conflict with an old one", async () => {
    const s = await server();
    const created = await call(s, "POST", LEASES, lease("a"));
    expect(created.status).toBe(201);
    expect(created.body.metadata).toMatchObject({ namespace: "istio-system", resourceVersion: "2" });
    expect((await call(s, "POST", LEASES, lease("b"))).body.reason).toBe("AlreadyExists");
    const taken = { ...lease("b"), metadata: { ...created.body.metadata } };
    const updated = await call(s, "PUT", `${LEASES}/meshd-leader`, taken);
    expect(updated.status).toBe(200);
    expect((updated.body.spec as { holderIdentity: string }).holderIdentity).toBe("b");
    const stale = await call(s, "PUT", `${LEASES}/meshd-leader`, {
      ...lease("c"),
      metadata: created.body.metadata,
    });
    expect([stale.status, stale.body.reason]).toEqual([409, "Conflict"]);
  });

  test("the status subresource: /status writes only status, the object's own writes leave it", async () => {
    const s = await server();
    const path = "/apis/networking.istio.io/v1/namespaces/default/virtualservices";
    await call(s, "POST", path, { metadata: { name: "r" }, spec: { hosts: ["a"] } });
    const st = await call(s, "PATCH", `${path}/r/status`, {
      status: { validationMessages: [{ level: "ERROR" }] },
      spec: { hosts: ["ignored"] },
    }, "application/merge-patch+json");
    expect(st.status).toBe(200);
    expect(st.body.spec).toEqual({ hosts: ["a"] });
    expect(st.body.status).toEqual({ validationMessages: [{ level: "ERROR" }] });
    const main = await call(s, "PATCH", `${path}/r`, [{ op: "replace", path: "/spec/hosts/0", value: "b" }, {
      op: "remove",
      path: "/status",
    }], "application/json-patch+json");
    expect(main.body.spec).toEqual({ hosts: ["b"] });
    expect(main.body.status).toEqual({ validationMessages: [{ level: "ERROR" }] });
    expect(main.body.metadata.generation).toBe(2);
    expect(st.body.kind).toBe("VirtualService");
  });

  test("label selectors filter lists, and a watch sees an object leave its selector as DELETED", async () => {
    const s = await server();
    const pods = "/api/v1/namespaces/default/pods";
    s.put(pods, { metadata: { name: "a", labels: { app: "x", tier: "web" } } });
    s.put(pods, { metadata: { name: "b", labels: { app: "y" } } });
    const listed = await call(
      s,
      "GET",
      `/api/v1/pods?labelSelector=${encodeURIComponent("app in (x,z),tier")}`,
    );
    expect((listed.body.items as KubeObject[]).map((o) => o.metadata.name)).toEqual(["a"]);
    const rv = (listed.body.metadata as { resourceVersion: string }).resourceVersion;
    const res = await fetch(`${s.url}/api/v1/pods?watch=1&labelSelector=app%3Dx&resourceVersion=${rv}`, {
      headers: { authorization: `Bearer ${s.token}` },
    });
    s.patch(`${pods}/a`, { metadata: { labels: { app: "y" } } });
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    const ev = JSON.parse(new TextDecoder().decode(value).trim().split("\n")[0]!);
    expect([ev.type, ev.object.metadata.name]).toEqual(["DELETED", "a"]);
    await reader.cancel();
  });

  test("parseLabelSelector() reads =, ==, !=, exists, !exists, in and notin", () => {
    const sel = parseLabelSelector("a=1,b==2,c!=3,d,!e,f in (x, y),g notin (z)");
    expect(sel({ a: "1", b: "2", c: "4", d: "", f: "y", g: "w" })).toBe(true);
    expect(sel({ a: "1", b: "2", c: "4", d: "", e: "", f: "y" })).toBe(false);
    expect(() => parseLabelSelector("a=(")).toThrow("labelSelector");
  });
});
