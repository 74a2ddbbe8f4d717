/**
 * The Kubernetes manifests under config/kubernetes/, checked with Debian's kubectl:
 * `kubectl create --dry-run=client -o yaml -f config/kubernetes/` decodes every object and maps it
 * to an API resource. kubectl needs the API server's discovery documents for that mapping even in
 * a client-side dry run, so the test serves them (the legacy `/api` and `/apis` documents of
 * Kubernetes' discovery API, for the resources of Kubernetes 1.32 the manifests may use) on
 * 127.0.0.1; nothing is created anywhere. Then structural checks: probes the kubelet can reach
 * without the admin port, no admin port exposed, the read-only metrics port exposed to scrapers
 * (and the Dockerfile doing the same), RBAC read-only except status and leases.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { parseAllDocuments } from "yaml";

const ROOT = resolve(import.meta.dir, "..");
const kubectl = Bun.which("kubectl");

/** The API resources the discovery documents list: group/version → [plural, kind, namespaced]. */
const RESOURCES: Record<string, Array<[string, string, boolean]>> = {
  "v1": [
    ["namespaces", "Namespace", false],
    ["serviceaccounts", "ServiceAccount", true],
    ["services", "Service", true],
    ["configmaps", "ConfigMap", true],
    ["secrets", "Secret", true],
    ["pods", "Pod", true],
    ["nodes", "Node", false],
  ],
  "apps/v1": [["deployments", "Deployment", true]],
  "rbac.authorization.k8s.io/v1": [
    ["clusterroles", "ClusterRole", false],
    ["clusterrolebindings", "ClusterRoleBinding", false],
    ["roles", "Role", true],
    ["rolebindings", "RoleBinding", true],
  ],
  "coordination.k8s.io/v1": [["leases", "Lease", true]],
  "discovery.k8s.io/v1": [["endpointslices", "EndpointSlice", true]],
  "apiextensions.k8s.io/v1": [["customresourcedefinitions", "CustomResourceDefinition", false]],
};

/** Kubernetes' discovery documents (APIVersions, APIGroupList, APIResourceList) for RESOURCES. */
function discovery(path: string): unknown {
  const list = (gv: string) => ({
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: gv,
    resources: RESOURCES[gv]!.map(([name, kind, namespaced]) => ({
      name,
      singularName: kind.toLowerCase(),
      namespaced,
      kind,
      verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
    })),
  });
  if (path === "/api") return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] };
  if (path === "/api/v1") return list("v1");
  if (path === "/apis") {
    return {
      kind: "APIGroupList",
      apiVersion: "v1",
      groups: Object.keys(RESOURCES).filter((gv) => gv.includes("/")).map((gv) => {
        const [group, version] = gv.split("/") as [string, string];
        const v = { groupVersion: gv, version };
        return { name: group, versions: [v], preferredVersion: v };
      }),
    };
  }
  const gv = path.replace(/^\/apis\//, "");
  return path.startsWith("/apis/") && RESOURCES[gv] ? list(gv) : undefined;
}

interface K8sObject {
  kind: string;
  apiVersion: string;
  metadata: { name: string; namespace?: string };
  // deno-lint-ignore no-explicit-any
  [k: string]: any;
}

let server: Server | undefined;
let objects: K8sObject[] = [];
let kubectlError = "";

beforeAll(async () => {
  if (!kubectl) return;
  server = createServer((req, res) => {
    const body = discovery(new URL(req.url ?? "/", "http://x").pathname);
    res.writeHead(body === undefined ? 404 : 200, { "content-type": "application/json" });
    res.end(JSON.stringify(body ?? { kind: "Status", status: "Failure", reason: "NotFound", code: 404 }));
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const proc = Bun.spawn([
    kubectl,
    "create",
    "--dry-run=client",
    "--validate=false",
    "-o",
    "yaml",
    `--server=http://127.0.0.1:${port}`,
    "--kubeconfig=/dev/null",
    "-f",
    "config/kubernetes/",
  ], { cwd: ROOT, stdout: "pipe", stderr: "pipe", stdin: "ignore", env: { ...process.env, HOME: "/tmp" } });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) {
    kubectlError = `kubectl exited ${code}: ${err}`;
    return;
  }
  objects = parseAllDocuments(out).map((d) => d.toJS() as K8sObject).filter((o) => o !== null);
});

afterAll(() => {
  server?.close();
});

const one = (kind: string, name?: string): K8sObject => {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`want one ${kind}${name ? ` ${name}` : ""}, found ${found.length}`);
  return found[0]!;
};

describe.skipIf(!kubectl)("config/kubernetes/ (kubectl create --dry-run=client)", () => {
  test("kubectl accepts every manifest and returns the expected objects", () => {
    expect(kubectlError).toBe("");
    expect(objects.map((o) => `${o.apiVersion} ${o.kind}`).sort()).toEqual([
      "apps/v1 Deployment",
      "rbac.authorization.k8s.io/v1 ClusterRole",
      "rbac.authorization.k8s.io/v1 ClusterRoleBinding",
      "rbac.authorization.k8s.io/v1 Role",
      "rbac.authorization.k8s.io/v1 RoleBinding",
      "v1 ConfigMap",
      "v1 Namespace",
      "v1 Service",
      "v1 ServiceAccount",
    ]);
    for (const o of objects.filter((x) => x.kind !== "Namespace" && !x.kind.startsWith("Cluster"))) {
      expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBe("meshd-system");
    }
  });

  test("the Deployment runs the Dockerfile's image as non-root on a read-only root, reading Kubernetes", () => {
    const pod = one("Deployment").spec.template.spec;
    expect(pod.serviceAccountName).toBe(one("ServiceAccount").metadata.name);
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    // The Dockerfile's final image runs as 65532 (distroless nonroot).
    const dockerfile = readFileSync(resolve(ROOT, "Dockerfile"), "utf8");
    expect(dockerfile).toContain(`USER ${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`);
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0];
    expect(c.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    expect(c.args[0]).toBe("serve");
    expect(c.args).toContain("--registry=kubernetes");
    expect(c.envFrom[0].configMapRef.name).toBe(one("ConfigMap").metadata.name);
    // Everything meshd writes goes to mounted volumes.
    const data = one("ConfigMap").data;
    expect(c.volumeMounts.map((m: { mountPath: string }) => m.mountPath)).toContain(data.MESHD_DATA_DIR);
  });

  test("probes reach the gRPC port on the pod address; the admin server stays on loopback", () => {
    const c = one("Deployment").spec.template.spec.containers[0];
    const data = one("ConfigMap").data;
    expect(data.MESHD_GRPC_ADDR).toBe("0.0.0.0:15010");
    expect(data.MESHD_ADMIN_ADDR).toMatch(/^127\.0\.0\.1:/);
    // grpc.health.v1 on 15010 reports readiness (mod/grpc/health.ts); liveness only connects.
    expect(c.readinessProbe.grpc.port).toBe(15010);
    expect(c.livenessProbe.tcpSocket.port).toBe(15010);
    for (const probe of [c.readinessProbe, c.livenessProbe]) expect(probe.httpGet).toBeUndefined();
    const containerPorts = c.ports.map((p: { containerPort: number }) => p.containerPort).sort();
    expect(containerPorts).toEqual([15010, 15012, 15017, 15020]);
  });

  test("Prometheus scrapes the read-only metrics listener on the pod address, never the admin port", () => {
    const template = one("Deployment").spec.template;
    const c = template.spec.containers[0];
    const data = one("ConfigMap").data;
    const admin = Number(data.MESHD_ADMIN_ADDR.split(":").pop());
    expect(data.MESHD_METRICS_ADDR).toMatch(/^0\.0\.0\.0:\d+$/);
    const metricsPort = Number(data.MESHD_METRICS_ADDR.split(":").pop());
    expect(metricsPort).not.toBe(admin);
    // Neither the args nor env move the listeners elsewhere.
    expect(c.args.some((a: string) => /^--(admin|metrics)-addr/.test(a))).toBe(false);
    expect((c.env ?? []).map((e: { name: string }) => e.name)).not.toContain("MESHD_ADMIN_ADDR");
    expect((c.env ?? []).map((e: { name: string }) => e.name)).not.toContain("MESHD_METRICS_ADDR");
    const ports = c.ports.map((p: { containerPort: number }) => p.containerPort);
    expect(ports).toContain(metricsPort);
    expect(ports).not.toContain(admin);
    expect(template.metadata.annotations).toEqual({
      "prometheus.io/scrape": "true",
      "prometheus.io/port": String(metricsPort),
      "prometheus.io/path": "/metrics",
    });
  });

  test("the Dockerfile keeps the admin server on loopback and exposes the metrics listener", () => {
    const dockerfile = readFileSync(resolve(ROOT, "Dockerfile"), "utf8");
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
    expect(cmd).toContain("--admin-addr=127.0.0.1:15014");
    const metrics = cmd.find((a) => a.startsWith("--metrics-addr="));
    expect(metrics).toBe(`--metrics-addr=${one("ConfigMap").data.MESHD_METRICS_ADDR}`);
    const exposed = /^EXPOSE (.+)$/m.exec(dockerfile)![1]!.trim().split(/\s+/).map(Number);
    expect(exposed).toContain(Number(metrics!.split(":").pop()));
    expect(exposed).not.toContain(15014);
  });

  test("the Service exposes 15010, 15012 and the webhook, never the admin port", () => {
    const svc = one("Service");
    const c = one("Deployment").spec.template.spec.containers[0];
    const named = new Map(
      c.ports.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]),
    );
    const targets = svc.spec.ports.map((p: { targetPort: string | number }) =>
      typeof p.targetPort === "string" ? named.get(p.targetPort) : p.targetPort
    ).sort();
    expect(targets).toEqual([15010, 15012, 15017]);
    expect(svc.spec.ports.map((p: { port: number }) => p.port)).not.toContain(15014);
    expect(svc.spec.ports.map((p: { port: number }) => p.port)).not.toContain(15020);
    expect(svc.spec.selector).toEqual(one("Deployment").spec.selector.matchLabels);
  });

  test("RBAC: reads only, except Istio resources' status and Leases in meshd's namespace", () => {
    const writes = ["create", "update", "patch", "delete", "deletecollection", "*"];
    const role = one("ClusterRole");
    for (const rule of role.rules as Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>) {
      const writing = rule.verbs.filter((v) => writes.includes(v));
      if (writing.length === 0) continue;
      expect(rule.resources.every((r) => r.endsWith("/status")), JSON.stringify(rule)).toBe(true);
      expect(rule.apiGroups.every((g) => g.endsWith(".istio.io")), JSON.stringify(rule)).toBe(true);
      expect(writing).not.toContain("delete");
      expect(writing).not.toContain("create");
    }
    const reads = (group: string, resource: string) =>
      role.rules.some((r: { apiGroups: string[]; resources: string[]; verbs: string[] }) =>
        r.apiGroups.includes(group) && r.resources.includes(resource) &&
        ["get", "list", "watch"].every((v) => r.verbs.includes(v))
      );
    expect(reads("", "services")).toBe(true);
    expect(reads("", "pods")).toBe(true);
    expect(reads("", "nodes")).toBe(true);
    expect(reads("discovery.k8s.io", "endpointslices")).toBe(true);
    for (const g of ["networking.istio.io", "security.istio.io", "telemetry.istio.io", "config.istio.io"]) {
      expect(reads(g, "*"), g).toBe(true);
    }
    const leases = one("Role");
    expect(leases.metadata.namespace).toBe("meshd-system");
    expect(leases.rules).toEqual([{
      apiGroups: ["coordination.k8s.io"],
      resources: ["leases"],
      verbs: ["get", "list", "watch", "create", "update", "patch"],
    }]);
    const sa = one("ServiceAccount").metadata;
    for (const b of [one("ClusterRoleBinding"), one("RoleBinding")]) {
      expect(b.subjects).toEqual([{ kind: "ServiceAccount", name: sa.name, namespace: sa.namespace }]);
    }
    expect(one("ClusterRoleBinding").roleRef.name).toBe(role.metadata.name);
    expect(one("RoleBinding").roleRef.name).toBe(leases.metadata.name);
  });
});

test.skipIf(kubectl !== null)("config/kubernetes/ is not checked: kubectl is not on PATH", () => {
  console.warn("skipping tests/kubernetes_manifests.test.ts: kubectl is not on PATH (apt install kubectl)");
});
