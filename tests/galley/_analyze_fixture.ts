/**
 * Fixtures for the analyzer tests: a small mesh in namespace "default", and helpers that parse,
 * validate and analyze YAML so every test states its input as an operator would write it.
 */
import { expect } from "bun:test";
import { type AnalysisDiagnostic, analyze, type Analyzer } from "../../mod/galley/analyze.ts";
import { parseConfig } from "../../mod/galley/parse.ts";
import { type Diagnostic, formatDiagnostic, type Resource } from "../../mod/api/resource.ts";
import { validateResource } from "../../mod/galley/validate.ts";

/**
 * The mesh every test starts from (file "base.yaml"): services reviews (HTTP 9080) and ratings
 * (HTTP 9080 + GRPC 9090) backed by WorkloadEntries, two external services (httpbin.org, and
 * the wildcard *.googleapis.com), and a DestinationRule for reviews with subsets v1 and v2.
 */
export const BASE = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  workloadSelector: { labels: { app: reviews } }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - { number: 9080, name: http, protocol: HTTP }
    - { number: 9090, name: grpc, protocol: GRPC }
  workloadSelector: { labels: { app: ratings } }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: httpbin, namespace: default }
spec:
  hosts: [httpbin.org]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{ number: 443, name: tls, protocol: TLS }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: googleapis, namespace: default }
spec:
  hosts: ["*.googleapis.com"]
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{ number: 443, name: tls, protocol: TLS }]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: reviews-v1, namespace: default }
spec: { address: 192.0.2.1, labels: { app: reviews, version: v1 }, serviceAccount: reviews }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: reviews-v2, namespace: default }
spec: { address: 192.0.2.2, labels: { app: reviews, version: v2 }, serviceAccount: reviews }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ratings-v1, namespace: default }
spec: { address: 192.0.2.3, labels: { app: ratings, version: v1 }, serviceAccount: ratings }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
`;

/**
 * Parses and validates YAML files (name -> text). Fails the test on any parse or validation
 * error, so fixtures stay valid configuration and analyzers see only what the store accepts.
 */
export function load(files: Readonly<Record<string, string>>): Resource[] {
  const out: Resource[] = [];
  for (const [file, text] of Object.entries(files)) {
    const { resources, diagnostics } = parseConfig(text, file);
    expect(diagnostics.map(formatDiagnostic)).toEqual([]);
    for (const r of resources) {
      expect(validateResource(r).filter((d) => d.severity === "error").map(formatDiagnostic)).toEqual([]);
      out.push(r);
    }
  }
  return out;
}

/** Runs one analyzer over BASE (or `base`) plus `yaml` as "test.yaml". */
export function run(analyzer: Analyzer, yaml: string, base: string = BASE): AnalysisDiagnostic[] {
  return analyze(load({ "base.yaml": base, "test.yaml": yaml }), { analyzers: [analyzer] });
}

/** The parts of a diagnostic tests compare: code, resource, field, file and line. */
export interface Finding {
  readonly code?: string;
  readonly resource?: string;
  readonly field?: string;
  readonly file?: string;
  readonly line?: number;
}

/** Reduces diagnostics to the parts tests compare. */
export function findings(ds: readonly Diagnostic[]): Finding[] {
  return ds.map((d) => ({
    code: d.code,
    resource: d.resource,
    field: d.field,
    file: d.pos?.file,
    line: d.pos?.line,
  }));
}

/** The 1-based line of the `occurrence`th line of `text` that contains `needle`. */
export function lineOf(text: string, needle: string, occurrence = 1): number {
  let seen = 0;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.includes(needle) && ++seen === occurrence) return i + 1;
  }
  throw new Error(`fixture has no line ${occurrence} containing ${JSON.stringify(needle)}`);
}

/** A finding in "test.yaml" at the line holding `needle`. */
export function at(
  code: string,
  resource: string,
  field: string,
  yaml: string,
  needle: string,
  occurrence = 1,
): Finding {
  return { code, resource, field, file: "test.yaml", line: lineOf(yaml, needle, occurrence) };
}
