import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { analyze } from "../../mod/galley/analyze.ts";
import type { VirtualServiceSpec, WorkloadEntrySpec } from "../../mod/api/kinds/networking.ts";
import { parseConfig } from "../../mod/galley/parse.ts";
import { type Diagnostic, formatDiagnostic, type Resource } from "../../mod/api/resource.ts";
import { validateResource } from "../../mod/galley/validate.ts";

const DIR = join(import.meta.dir, "../../config/samples");

/** Parses and validates every sample file (or the given replacements), collecting all diagnostics. */
function loadSamples(
  replace: Readonly<Record<string, string>> = {},
): { resources: Resource[]; diagnostics: Diagnostic[] } {
  const resources: Resource[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const name of readdirSync(DIR).filter((f) => /\.(ya?ml|json)$/.test(f)).sort()) {
    const text = replace[name] ?? readFileSync(join(DIR, name), "utf8");
    const parsed = parseConfig(text, `config/samples/${name}`);
    diagnostics.push(...parsed.diagnostics);
    for (const r of parsed.resources) {
      const ds = validateResource(r);
      diagnostics.push(...ds);
      if (!ds.some((d) => d.severity === "error")) resources.push(r);
    }
  }
  return { resources, diagnostics };
}

function serious(ds: readonly Diagnostic[]): string[] {
  return ds.filter((d) => d.severity !== "info").map(formatDiagnostic);
}

describe("config/samples", () => {
  const { resources, diagnostics } = loadSamples();

  test("has the files the README describes", () => {
    for (
      const f of [
        "README.md",
        "mesh.yaml",
        "services.yaml",
        "workloads.yaml",
        "routing.yaml",
        "destination_rules.yaml",
        "security.yaml",
        "policy.yaml",
      ]
    ) {
      expect({ file: f, exists: existsSync(join(DIR, f)) }).toEqual({ file: f, exists: true });
    }
  });

  test("parses and validates without errors or warnings", () => {
    expect(serious(diagnostics)).toEqual([]);
  });

  test("passes every analyzer without errors or warnings", () => {
    expect(serious(analyze(resources))).toEqual([]);
  });

  test("holds the expected kinds and counts", () => {
    const counts: Record<string, number> = {};
    for (const r of resources) counts[r.kind] = (counts[r.kind] ?? 0) + 1;
    expect(counts).toEqual({
      MeshConfig: 1,
      ServiceEntry: 5,
      WorkloadEntry: 7,
      WorkloadGroup: 1,
      Gateway: 1,
      VirtualService: 5,
      DestinationRule: 4,
      PeerAuthentication: 1,
      AuthorizationPolicy: 4,
      handler: 2,
      instance: 2,
      rule: 2,
    });
  });

  test("runs bookinfo's workloads on documentation or loopback addresses with per-app service accounts", () => {
    const entries = resources.filter((r): r is Resource<WorkloadEntrySpec> => r.kind === "WorkloadEntry");
    for (const we of entries) {
      expect(we.spec.address).toMatch(/^(192\.0\.2\.\d+|127\.\d+\.\d+\.\d+)$/);
      if (we.metadata.namespace === "bookinfo") {
        expect(we.spec.serviceAccount).toBe(`bookinfo-${we.spec.labels?.["app"]}`);
      }
    }
    const versions = entries.filter((e) => e.spec.labels?.["app"] === "reviews").map((e) =>
      e.spec.labels?.["version"]
    );
    expect(versions.sort()).toEqual(["v1", "v2", "v3"]);
  });

  test("routes jason to reviews v2 and splits everyone else 90/10 between v1 and v3", () => {
    const reviews = resources.find((r) =>
      r.kind === "VirtualService" && r.metadata.name === "reviews"
    ) as Resource<VirtualServiceSpec>;
    const [jason, rest] = reviews.spec.http!;
    expect(jason!.match).toEqual([{ headers: { "end-user": { exact: "jason" } } }]);
    expect(jason!.route!.map((d) => d.destination.subset)).toEqual(["v2"]);
    expect(rest!.route!.map((d) => [d.destination.subset, d.weight])).toEqual([["v1", 90], ["v3", 10]]);
  });

  test("a broken sample is caught: plain text towards reviews contradicts the mesh-wide STRICT policy", () => {
    const original = readFileSync(join(DIR, "destination_rules.yaml"), "utf8");
    const broken = original.replace(/(name: reviews\n[\s\S]*?tls:\n\s+mode: )ISTIO_MUTUAL/, "$1DISABLE");
    expect(broken).not.toBe(original);
    const { resources: mutated } = loadSamples({ "destination_rules.yaml": broken });
    expect(analyze(mutated).map((d) => `${d.code} ${d.resource} ${d.field}`)).toEqual([
      "MSH0113 DestinationRule bookinfo/reviews spec.trafficPolicy.tls.mode",
    ]);
  });
});
