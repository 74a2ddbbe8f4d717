import { describe, expect, test } from "bun:test";
import { createAnalysisContext } from "../../mod/galley/analyze.ts";
import {
  authorizationNamespaceNotFound,
  authorizationPrincipal,
  patternMatches,
  principalFormProblem,
} from "../../mod/galley/analyzers/authorization_policies.ts";
import { effectiveMtls, mtlsPolicyConflict } from "../../mod/galley/analyzers/mtls_conflicts.ts";
import { noMatchingWorkloads } from "../../mod/galley/analyzers/selector_workloads.ts";
import {
  conflictingSidecarSelectors,
  multipleSidecarsWithoutSelector,
} from "../../mod/galley/analyzers/sidecars.ts";
import { at, BASE, findings, load, run } from "./_analyze_fixture.ts";

function peerAuthentication(name: string, namespace: string, mode: string, selector = ""): string {
  return `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${selector ? `  selector: { matchLabels: ${selector} }\n` : ""}  mtls: { mode: ${mode} }
---
`;
}

function destinationRule(name: string, host: string, tlsMode: string): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name}, namespace: default }
spec:
  host: ${host}
  trafficPolicy:
    tls: { mode: ${tlsMode} }
`;
}

describe("MSH0113 MtlsPolicyConflict", () => {
  test("reports DISABLE towards workloads a mesh-wide STRICT PeerAuthentication covers", () => {
    const yaml = peerAuthentication("default", "istio-system", "STRICT") +
      destinationRule("reviews-plain", "reviews", "DISABLE");
    const ds = run(mtlsPolicyConflict, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0113",
        "DestinationRule default/reviews-plain",
        "spec.trafficPolicy.tls.mode",
        yaml,
        "mode: DISABLE",
      ),
    ]);
    expect(ds[0]!.message).toBe(
      "tls.mode DISABLE sends plain text to reviews.default.svc.cluster.local, but PeerAuthentication istio-system/default " +
        "requires mutual TLS (STRICT) on WorkloadEntry default/reviews-v1 (and 1 more workload); these calls will be refused",
    );
  });

  test("reports ISTIO_MUTUAL towards a namespace whose PeerAuthentication disables mTLS", () => {
    const yaml = peerAuthentication("plain", "default", "DISABLE") +
      destinationRule("reviews-mtls", "reviews", "ISTIO_MUTUAL");
    const ds = run(mtlsPolicyConflict, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0113",
        "DestinationRule default/reviews-mtls",
        "spec.trafficPolicy.tls.mode",
        yaml,
        "mode: ISTIO_MUTUAL",
      ),
    ]);
    expect(ds[0]!.message).toContain("PeerAuthentication default/plain disables mTLS");
  });

  test("takes the MeshConfig default when no PeerAuthentication applies, and checks subset-level TLS", () => {
    const yaml = `apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec: { defaultMtlsMode: STRICT }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-v2-plain, namespace: other }
spec:
  host: reviews.default.svc.cluster.local
  subsets:
    - name: v2
      labels: { version: v2 }
      trafficPolicy: { tls: { mode: DISABLE } }
`;
    const ds = run(mtlsPolicyConflict, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0113",
        "DestinationRule other/reviews-v2-plain",
        "spec.subsets[0].trafficPolicy.tls.mode",
        yaml,
        "mode: DISABLE",
      ),
    ]);
    expect(ds[0]!.message).toContain(
      "MeshConfig istio-system/mesh (defaultMtlsMode) requires mutual TLS (STRICT) on WorkloadEntry default/reviews-v2;",
    );
  });

  test("accepts ISTIO_MUTUAL under STRICT, DISABLE where a workload-level policy is PERMISSIVE, and external hosts", () => {
    const yaml = peerAuthentication("default", "istio-system", "STRICT") +
      peerAuthentication("reviews-legacy", "default", "PERMISSIVE", "{ app: reviews }") +
      destinationRule("reviews-plain", "reviews", "DISABLE") + "---\n" +
      destinationRule("ratings", "ratings", "ISTIO_MUTUAL") + "---\n" +
      destinationRule("httpbin", "httpbin.org", "DISABLE");
    expect(run(mtlsPolicyConflict, yaml)).toEqual([]);
  });

  test("effectiveMtls() walks workload, namespace and mesh levels, skipping UNSET", () => {
    const yaml = peerAuthentication("mesh", "istio-system", "STRICT") +
      peerAuthentication("ns", "default", "UNSET") +
      peerAuthentication("ratings", "default", "DISABLE", "{ app: ratings }");
    const ctx = createAnalysisContext(load({ "base.yaml": BASE, "test.yaml": yaml }));
    expect(effectiveMtls(ctx, "default", { app: "ratings" })).toEqual({
      mode: "DISABLE",
      source: "PeerAuthentication default/ratings",
    });
    expect(effectiveMtls(ctx, "default", { app: "reviews" })).toEqual({
      mode: "STRICT",
      source: "PeerAuthentication istio-system/mesh",
    });
    expect(effectiveMtls(ctx, "shop", undefined)).toEqual({
      mode: "STRICT",
      source: "PeerAuthentication istio-system/mesh",
    });
    const bare = createAnalysisContext(load({ "base.yaml": BASE }));
    expect(effectiveMtls(bare, "default", undefined)).toEqual({
      mode: "PERMISSIVE",
      source: "meshd's default mTLS mode",
    });
  });
});

describe("MSH0127 NoMatchingWorkloads", () => {
  test("reports Sidecar and policy selectors that select nothing in their namespace", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: reviews, namespace: default }
spec:
  workloadSelector: { labels: { app: reveiws } }
  outboundTrafficPolicy: { mode: REGISTRY_ONLY }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ratings-viewer, namespace: default }
spec:
  selector: { matchLabels: { app: ratings, version: v2 } }
  rules: [{ from: [{ source: { namespaces: [default] } }] }]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: reviews, namespace: istio-system }
spec:
  selector: { matchLabels: { app: reviews } }
  mtls: { mode: STRICT }
`;
    const ds = run(noMatchingWorkloads, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0127", "Sidecar default/reviews", "spec.workloadSelector.labels", yaml, "workloadSelector:"),
      at(
        "MSH0127",
        "AuthorizationPolicy default/ratings-viewer",
        "spec.selector.matchLabels",
        yaml,
        "matchLabels: { app: ratings",
      ),
      at(
        "MSH0127",
        "PeerAuthentication istio-system/reviews",
        "spec.selector.matchLabels",
        yaml,
        "matchLabels: { app: reviews",
      ),
    ]);
    expect(ds[1]!.message).toBe(
      "selector {app=ratings,version=v2} matches no workload in namespace default; this AuthorizationPolicy has no effect",
    );
  });

  test("accepts selectors that match, and root-namespace authorization selectors matching anywhere", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: reviews, namespace: default }
spec:
  workloadSelector: { labels: { app: reviews } }
  outboundTrafficPolicy: { mode: REGISTRY_ONLY }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ratings-everywhere, namespace: istio-system }
spec:
  selector: { matchLabels: { app: ratings } }
  rules: [{ from: [{ source: { namespaces: [default] } }] }]
`;
    expect(run(noMatchingWorkloads, yaml)).toEqual([]);
  });
});

describe("MSH0111 MultipleSidecarsWithoutWorkloadSelectors and MSH0110 ConflictingSidecarWorkloadSelectors", () => {
  const sidecar = (name: string, selector: string) =>
    `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: ${name}, namespace: default }
spec:
${
      selector
        ? `  workloadSelector: { labels: ${selector} }\n`
        : ""
    }  egress: [{ hosts: ["./*", "istio-system/*"] }]
`;

  test("MSH0111 reports every selector-less Sidecar of a namespace that has two", () => {
    const yaml = [sidecar("default", ""), sidecar("legacy", ""), sidecar("reviews", "{ app: reviews }")].join(
      "---\n",
    );
    const ds = run(multipleSidecarsWithoutSelector, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0111", "Sidecar default/default", "spec", yaml, "spec:", 1),
      at("MSH0111", "Sidecar default/legacy", "spec", yaml, "spec:", 2),
    ]);
    expect(ds[0]!.message).toBe(
      "Sidecar default/legacy in namespace default has no workloadSelector either; which one applies is undefined",
    );
  });

  test("MSH0111 accepts one selector-less Sidecar per namespace", () => {
    const other = sidecar("default", "").replace("namespace: default", "namespace: other");
    expect(run(multipleSidecarsWithoutSelector, [sidecar("default", ""), other].join("---\n"))).toEqual([]);
  });

  test("MSH0110 reports two Sidecars selecting the same workload", () => {
    const yaml = [sidecar("reviews", "{ app: reviews }"), sidecar("reviews-v2", "{ version: v2 }")].join(
      "---\n",
    );
    const ds = run(conflictingSidecarSelectors, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0110", "Sidecar default/reviews", "spec.workloadSelector", yaml, "workloadSelector:", 1),
      at("MSH0110", "Sidecar default/reviews-v2", "spec.workloadSelector", yaml, "workloadSelector:", 2),
    ]);
    expect(ds[0]!.message).toBe(
      "selects WorkloadEntry default/reviews-v2, which Sidecar default/reviews-v2 also selects; which one applies is undefined",
    );
  });

  test("MSH0110 accepts Sidecars with disjoint selections", () => {
    const yaml = [sidecar("reviews", "{ app: reviews }"), sidecar("ratings", "{ app: ratings }")].join(
      "---\n",
    );
    expect(run(conflictingSidecarSelectors, yaml)).toEqual([]);
  });
});

function authorizationPolicy(source: string): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: reviews-viewer, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  rules:
    - from:
        - source:
${source}
`;
}

describe("MSH0160 AuthorizationPolicyNamespaceNotFound", () => {
  test("reports namespaces and notNamespaces that hold no resources", () => {
    const yaml = authorizationPolicy(`            namespaces: [defualt, default]
            notNamespaces: ["legacy-*"]`);
    const ds = run(authorizationNamespaceNotFound, yaml);
    expect(findings(ds)).toEqual([
      at(
        "MSH0160",
        "AuthorizationPolicy default/reviews-viewer",
        "spec.rules[0].from[0].source.namespaces[0]",
        yaml,
        "defualt",
      ),
      at(
        "MSH0160",
        "AuthorizationPolicy default/reviews-viewer",
        "spec.rules[0].from[0].source.notNamespaces[0]",
        yaml,
        "legacy-*",
      ),
    ]);
    expect(ds[0]!.message).toBe(
      'namespace "defualt" holds no resources in the mesh; this source never matches (did you mean default?)',
    );
    expect(ds[1]!.message).toContain("excluding it changes nothing");
  });

  test("accepts namespaces with resources, including prefix and suffix patterns", () => {
    const yaml = authorizationPolicy(`            namespaces: [default, "def*", "*ault", "*"]`);
    expect(run(authorizationNamespaceNotFound, yaml)).toEqual([]);
  });
});

describe("MSH0161 AuthorizationPolicyInvalidPrincipal", () => {
  test("reports malformed principals and identities no workload has", () => {
    const yaml = authorizationPolicy(`            principals:
              - reviews
              - cluster.local/ns/default/serviceaccount/ratings
              - example.org/ns/default/sa/ratings
              - cluster.local/ns/default/sa/ratngs
            notPrincipals: ["cluster.local/ns/*/sa/*"]`);
    const ds = run(authorizationPrincipal, yaml);
    const field = (i: number) => `spec.rules[0].from[0].source.principals[${i}]`;
    expect(findings(ds)).toEqual([
      at("MSH0161", "AuthorizationPolicy default/reviews-viewer", field(0), yaml, "- reviews"),
      at("MSH0161", "AuthorizationPolicy default/reviews-viewer", field(1), yaml, "serviceaccount"),
      at("MSH0161", "AuthorizationPolicy default/reviews-viewer", field(2), yaml, "example.org"),
      at("MSH0161", "AuthorizationPolicy default/reviews-viewer", field(3), yaml, "ratngs"),
      at(
        "MSH0161",
        "AuthorizationPolicy default/reviews-viewer",
        "spec.rules[0].from[0].source.notPrincipals[0]",
        yaml,
        "notPrincipals",
      ),
    ]);
    expect(ds.map((d) => d.message)).toEqual([
      'principal "reviews" is malformed: incomplete principal; use TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT',
      'principal "cluster.local/ns/default/serviceaccount/ratings" is malformed: expected "sa" where it has "serviceaccount"; ' +
      "use TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT",
      'principal "example.org/ns/default/sa/ratings" matches no workload identity: it names trust domain "example.org", ' +
      'but the mesh\'s trust domain is "cluster.local"',
      'principal "cluster.local/ns/default/sa/ratngs" matches no workload identity: no workload in namespace default runs as ' +
      'service account "ratngs" (did you mean ratings?)',
      'principal "cluster.local/ns/*/sa/*" is malformed: only one leading or trailing "*" is supported; ' +
      "use TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT",
    ]);
  });

  test("accepts exact identities of workloads, prefix and suffix patterns, and *", () => {
    const yaml = authorizationPolicy(`            principals:
              - cluster.local/ns/default/sa/ratings
              - cluster.local/ns/default/sa/*
              - "*/sa/reviews"
              - "*"`);
    expect(run(authorizationPrincipal, yaml)).toEqual([]);
  });

  test("principalFormProblem() aligns suffix patterns to the end and prefix patterns to the start", () => {
    expect(principalFormProblem("*/ns/default/sa/reviews")).toBeUndefined();
    expect(principalFormProblem("*a/reviews")).toBeUndefined();
    expect(principalFormProblem("cluster.local/n*")).toBeUndefined();
    expect(principalFormProblem("cluster.local/ns/*")).toBeUndefined();
    expect(principalFormProblem("*x/reviews")).toContain('expected "sa" where it has "x"');
    expect(principalFormProblem("cluster.local/ns//sa/reviews")).toContain("the NAMESPACE segment is empty");
    expect(principalFormProblem("a/ns/b/sa/c/d")).toContain('too many "/" segments');
  });

  test("patternMatches() implements exact, *, prefix* and *suffix", () => {
    expect([
      patternMatches("*", "x"),
      patternMatches("def*", "default"),
      patternMatches("*ult", "default"),
      patternMatches("default", "default"),
      patternMatches("dev*", "default"),
    ]).toEqual([true, true, true, true, false]);
  });
});
