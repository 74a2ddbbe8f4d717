/**
 * Istio 1.x QuotaSpec and QuotaSpecBinding: a request to a bound service charges the quotas its
 * QuotaSpecs ask for, by their charge, through mixer's rate-limit service; a request to a service
 * no binding names charges every matching quota once, as before.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RateLimitResponse_Code, RateLimitService } from "#gen/envoy/service/ratelimit/v3/rls_pb.ts";
import { eventually, type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";
import { coreHarness } from "./_harness.ts";

const { OK, OVER_LIMIT } = RateLimitResponse_Code;

/** Mixer config as Istio 1.x wrote it: memquota and quota kinds, a QuotaSpec and its binding. */
const config = (spec: string, binding: string) => `
apiVersion: config.istio.io/v1alpha2
kind: memquota
metadata: { name: handler, namespace: istio-system }
spec:
  quotas:
  - name: requestcount.quota.istio-system
    max_amount: 5
    valid_duration: 1h
---
apiVersion: config.istio.io/v1alpha2
kind: quota
metadata: { name: requestcount, namespace: istio-system }
spec:
  dimensions:
    destination: destination.service.name | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: { name: quota, namespace: istio-system }
spec:
  actions:
  - handler: handler.memquota
    instances: [requestcount.quota]
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpec
metadata: { name: request-count, namespace: istio-system }
spec:
${spec}
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpecBinding
metadata: { name: request-count, namespace: istio-system }
spec:
${binding}
`;

/** Two units for every request under /api; nothing for the others. */
const API_SPEC = `  rules:
  - match:
    - clause:
        request.path: { prefix: /api }
    quotas:
    - quota: requestcount
      charge: 2`;

const WEB_BINDING = `  quota_specs:
  - name: request-count
  services:
  - name: web
    namespace: app`;

type Entries = Record<string, string>;

const descriptor = (entries: Entries) => ({
  entries: Object.entries(entries).map(([key, value]) => ({ key, value })),
});

const request = (service: string, path: string): Entries => ({
  "destination.service.host": `${service}.app.svc.cluster.local`,
  "destination.service.name": service,
  "destination.service.namespace": "app",
  "request.path": path,
});

describe("QuotaSpec charges through ShouldRateLimit on a running meshd", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-quota-spec-"));
  let meshd: MeshdProcess;

  beforeAll(async () => {
    writeFileSync(join(dir, "quota.yaml"), config(API_SPEC, WEB_BINDING));
    meshd = await startMeshd({ args: ["--modules=mixer", `--config-dir=${dir}`] });
    expect(
      await eventually(async () => (await fetch(`http://${meshd.adminAddr}/healthz/ready`)).status === 200),
    ).toBe(true);
  });
  afterAll(async () => {
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a bound service is charged the QuotaSpec's charge; others once per request", async () => {
    const rls = createClient(RateLimitService, createGrpcTransport({ baseUrl: `http://${meshd.grpcAddr}` }));
    const call = async (entries: Entries) =>
      await rls.shouldRateLimit({ domain: "meshd", descriptors: [descriptor(entries)] }, { timeoutMs: 5000 });
    const codes = async (entries: Entries, n: number) => {
      const out: RateLimitResponse_Code[] = [];
      for (let i = 0; i < n; i++) out.push((await call(entries)).overallCode);
      return out;
    };

    // web is bound: 2 of 5 units per /api request, so the third finds 1 left and is over.
    expect(await codes(request("web", "/api/items"), 2)).toEqual([OK, OK]);
    const over = await call(request("web", "/api/items"));
    expect(over.overallCode).toBe(OVER_LIMIT);
    expect(over.statuses[0]).toMatchObject({ code: OVER_LIMIT, currentLimit: { requestsPerUnit: 5 } });
    // A request the QuotaSpec's rule does not match asks for no quota on a bound service.
    expect(await codes(request("web", "/static/app.js"), 8)).toEqual(Array(8).fill(OK));
    // shop is not bound: every matching quota is charged one unit per request.
    expect(await codes(request("shop", "/api/items"), 6)).toEqual([...Array(5).fill(OK), OVER_LIMIT]);
  }, 30_000);
});

describe("QuotaSpec and QuotaSpecBinding in mixer's table", () => {
  /** Units charged per quota for one request, from the core. */
  async function charged(spec: string, binding: string, entries: Entries, hits = 1) {
    const h = coreHarness();
    try {
      h.load(config(spec, binding));
      const out = await h.core.quotaAll(entries, { amount: hits, bestEffort: false });
      return { amounts: out.map((o) => o.amount), problems: h.core.table().problems.map((p) => p.message) };
    } finally {
      await h.close();
    }
  }

  test("services: '*' binds every service, service binds one host, domain builds the host", async () => {
    const any = `  quotaSpecs: [{ name: request-count }]\n  services: [{ service: "*" }]`;
    expect((await charged(API_SPEC, any, request("shop", "/api"))).amounts).toEqual([2]);
    const host =
      `  quotaSpecs: [{ name: request-count }]\n  services: [{ service: web.app.svc.cluster.local }]`;
    expect((await charged(API_SPEC, host, request("web", "/api"))).amounts).toEqual([2]);
    expect((await charged(API_SPEC, host, request("shop", "/api"))).amounts).toEqual([1]);
    const domain =
      `  quotaSpecs: [{ name: request-count }]\n  services: [{ name: web, namespace: app, domain: cluster.local }]`;
    expect((await charged(API_SPEC, domain, request("web", "/api"))).amounts).toEqual([2]);
    const otherNs = `  quotaSpecs: [{ name: request-count }]\n  services: [{ name: web, namespace: shop }]`;
    expect((await charged(API_SPEC, otherNs, request("web", "/api"))).amounts).toEqual([1]);
  });

  test("match clauses: any clause, every attribute in it; regex over the whole value", async () => {
    const spec = `  rules:
  - match:
    - clause:
        request.path: { regex: "/v[0-9]+/.*" }
        request.method: { exact: POST }
    - clause:
        request.path: { exact: /admin }
    quotas: [{ quota: requestcount.istio-system, charge: 4 }]`;
    const post = { ...request("web", "/v2/orders"), "request.method": "POST" };
    expect((await charged(spec, WEB_BINDING, post)).amounts).toEqual([4]);
    expect((await charged(spec, WEB_BINDING, { ...post, "request.method": "GET" })).amounts).toEqual([]);
    expect((await charged(spec, WEB_BINDING, { ...post, "request.path": "/x/v2/orders" })).amounts).toEqual(
      [],
    );
    expect((await charged(spec, WEB_BINDING, request("web", "/admin"))).amounts).toEqual([4]);
    // Envoy's hits_addend multiplies the charge.
    expect((await charged(spec, WEB_BINDING, request("web", "/admin"), 3)).amounts).toEqual([12]);
  });

  test("a rule without match always applies; a later rule's charge for the same quota wins", async () => {
    const spec = `  rules:
  - quotas: [{ quota: requestcount, charge: 1 }]
  - match: [{ clause: { request.path: { prefix: /api } } }]
    quotas: [{ quota: requestcount, charge: 3 }]`;
    expect((await charged(spec, WEB_BINDING, request("web", "/api/x"))).amounts).toEqual([3]);
    expect((await charged(spec, WEB_BINDING, request("web", "/home"))).amounts).toEqual([1]);
  });

  test("a binding naming a missing QuotaSpec is a table problem and binds nothing", async () => {
    const missing = `  quotaSpecs: [{ name: nope }]\n  services: [{ name: web, namespace: app }]`;
    const r = await charged(API_SPEC, missing, request("web", "/api"));
    expect(r.problems).toEqual(["QuotaSpec istio-system/nope not found"]);
    expect(r.amounts).toEqual([1]);
  });
});
