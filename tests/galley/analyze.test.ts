import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { analyze, type Analyzer, ANALYZERS, createAnalysisContext } from "../../mod/galley/analyze.ts";
import { hostCovers, resolveHost, visibilitiesOverlap, visibilityOf } from "../../mod/api/mod.ts";
import { parseGatewayRef } from "../../mod/galley/analyzers/_routes.ts";
import { formatDiagnostic } from "../../mod/api/resource.ts";
import { BASE, load } from "./_analyze_fixture.ts";

describe("ANALYZERS", () => {
  test("has at least 14 analyzers with unique MSH0xxx codes and unique names", () => {
    expect(ANALYZERS.length).toBeGreaterThanOrEqual(14);
    for (const a of ANALYZERS) {
      expect(a.code).toMatch(/^MSH0\d{3}$/);
      expect(a.name).toMatch(/^[A-Z][A-Za-z0-9]+$/);
      expect(a.description.length).toBeGreaterThan(20);
    }
    expect(new Set(ANALYZERS.map((a) => a.code)).size).toBe(ANALYZERS.length);
    expect(new Set(ANALYZERS.map((a) => a.name)).size).toBe(ANALYZERS.length);
  });

  test("is in code order and every analyzer has a row in docs/analysis-codes.md", () => {
    const codes = ANALYZERS.map((a) => a.code);
    expect(codes).toEqual([...codes].sort());
    const doc = readFileSync(new URL("../../docs/analysis-codes.md", import.meta.url), "utf8");
    for (const a of ANALYZERS) {
      expect(doc).toContain(`| ${a.code} | ${a.name} | ${a.severity} | ${a.istioCode ?? "—"} |`);
    }
  });
});

describe("analyze()", () => {
  const broken = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http:
    - route:
        - destination: { host: reviewz }
`;

  test("formats findings the way the CLI prints them", () => {
    const ds = analyze(load({ "samples/vs.yaml": broken }));
    expect(ds.map(formatDiagnostic)).toEqual([
      "samples/vs.yaml:8:26: Error [MSH0101]: VirtualService default/reviews: spec.http[0].route[0].destination.host: " +
      'referenced host "reviewz" (reviewz.default.svc.cluster.local) not found: no ServiceEntry declares it',
    ]);
  });

  test("sorts findings by file, then line, whatever order analyzers and files come in", () => {
    const twoRoutes = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: first, namespace: default }
spec:
  hosts: [first.example.com]
  http:
    - route: [{ destination: { host: reviews } }]
    - route: [{ destination: { host: reviews } }]
`;
    const files = {
      "base.yaml": BASE,
      "b.yaml": broken.replace("name: reviews,", "name: late,").replace("hosts: [reviews]", "hosts: [late]"),
      "a.yaml": `${twoRoutes}---\n${broken.replace("name: reviews,", "name: second,")}`,
    };
    const ds = analyze(load(files));
    expect(ds.map((d) => `${d.pos?.file}:${d.pos?.line} ${d.code} ${d.resource}`)).toEqual([
      "a.yaml:8 MSH0130 VirtualService default/first",
      "a.yaml:17 MSH0101 VirtualService default/second",
      "b.yaml:8 MSH0101 VirtualService default/late",
    ]);
  });

  test("runs only the analyzers it is given", () => {
    const only = ANALYZERS.filter((a) => a.code === "MSH0102");
    expect(analyze(load({ "vs.yaml": broken }), { analyzers: only })).toEqual([]);
  });

  test("reports an analyzer that throws as MSH0001 and still runs the others", () => {
    const faulty: Analyzer = {
      code: "MSH0999",
      name: "Faulty",
      severity: "warning",
      description: "throws, to test that analyze() contains failures",
      analyze: () => {
        throw new Error("boom");
      },
    };
    const ds = analyze(load({ "vs.yaml": broken }), { analyzers: [faulty, ...ANALYZERS] });
    expect(ds.map((d) => d.code)).toEqual(["MSH0101", "MSH0001"]);
    expect(ds[1]).toEqual({
      severity: "error",
      code: "MSH0001",
      istio: "IST0001",
      message: "analyzer Faulty (MSH0999) failed: boom",
    });
  });
});

describe("createAnalysisContext()", () => {
  const ctx = createAnalysisContext(load({ "base.yaml": BASE }));

  test("resolves short hosts in the given namespace and finds services by exact and wildcard host", () => {
    expect(ctx.resolveHost("reviews", "default")).toBe("reviews.default.svc.cluster.local");
    expect(ctx.resolveHost("Reviews.Default", "x")).toBe("reviews.default");
    expect(ctx.servicesFor("reviews", "default").map((s) => s.entry.metadata.name)).toEqual(["reviews"]);
    expect(ctx.servicesFor("reviews", "shop")).toEqual([]);
    expect(ctx.servicesFor("storage.googleapis.com", "shop").map((s) => s.host)).toEqual([
      "*.googleapis.com",
    ]);
  });

  test("indexes workloads and what each service selects", () => {
    expect(ctx.workloads.map((w) => w.label)).toEqual([
      "WorkloadEntry default/reviews-v1",
      "WorkloadEntry default/reviews-v2",
      "WorkloadEntry default/ratings-v1",
    ]);
    const reviews = ctx.servicesFor("reviews", "default")[0]!;
    expect(reviews.workloads?.map((w) => w.resource.metadata.name)).toEqual(["reviews-v1", "reviews-v2"]);
    expect(ctx.servicesFor("httpbin.org", "default")[0]!.workloads).toBeUndefined();
    expect(ctx.workloadsSelected({ version: "v1" }).map((w) => w.resource.metadata.name)).toEqual([
      "reviews-v1",
      "ratings-v1",
    ]);
    expect(ctx.workloadsSelected({ version: "v1" }, "other")).toEqual([]);
  });

  test("uses meshd's defaults when no MeshConfig exists", () => {
    expect(ctx.meshConfig).toBeUndefined();
    expect([ctx.mesh.rootNamespace, ctx.mesh.trustDomain, ctx.mesh.defaultMtlsMode]).toEqual([
      "istio-system",
      "cluster.local",
      "PERMISSIVE",
    ]);
    expect(ctx.get("ServiceEntry", "default", "ratings")?.metadata.name).toBe("ratings");
    expect(ctx.get("ServiceEntry", "default", "nope")).toBeUndefined();
    expect(ctx.namespaces).toEqual(new Set(["default"]));
  });
});

describe("host and gateway helpers", () => {
  test("resolveHost() leaves dotted names and wildcards alone", () => {
    expect(resolveHost("*", "ns")).toBe("*");
    expect(resolveHost("api.example.com", "ns")).toBe("api.example.com");
    expect(resolveHost("db", "ns", "corp.local")).toBe("db.ns.svc.corp.local");
  });

  test("hostCovers() covers names under a wildcard, but not the wildcard's own suffix", () => {
    expect(hostCovers("*.example.com", "a.b.example.com")).toBe(true);
    expect(hostCovers("*.example.com", "*.api.example.com")).toBe(true);
    expect(hostCovers("*.example.com", "example.com")).toBe(false);
    expect(hostCovers("a.example.com", "*.example.com")).toBe(false);
    expect(hostCovers("*", "anything")).toBe(true);
  });

  test("visibilityOf() reads exportTo as Istio does", () => {
    expect(visibilityOf(undefined, "a").all).toBe(true);
    expect(visibilityOf(["."], "a")).toEqual({ all: false, namespaces: new Set(["a"]) });
    expect(visibilityOf(["~"], "a")).toEqual({ all: false, namespaces: new Set() });
    expect(visibilitiesOverlap(visibilityOf(["."], "a"), visibilityOf(["."], "b"))).toBe(false);
    expect(visibilitiesOverlap(visibilityOf(["b"], "a"), visibilityOf(["."], "b"))).toBe(true);
  });

  test("parseGatewayRef() understands ns/name, the legacy name.ns form and bare names", () => {
    expect(parseGatewayRef("istio-system/ingress", "default")).toEqual({
      namespace: "istio-system",
      name: "ingress",
    });
    expect(parseGatewayRef("ingress.istio-system.svc.cluster.local", "default")).toEqual({
      namespace: "istio-system",
      name: "ingress",
    });
    expect(parseGatewayRef("ingress", "default")).toEqual({ namespace: "default", name: "ingress" });
  });
});
