/**
 * PeerAuthentication layered once (mod/api): the workload's own policy (port-level first), the
 * namespace's, the mesh's, the default; UNSET defers. Galley's mTLS-conflict analyzer and pilot's
 * listeners ask the same function, so they agree. Before, `meshd analyze` took a policy with a
 * selector in the root namespace as the selected workload's own, while pilot (as Istio) ignores
 * such a policy, so an ingress gateway in istio-system was analysed PERMISSIVE and served STRICT.
 */
import { describe, expect, test } from "bun:test";
import { effectivePeerMtls } from "../../mod/api/mod.ts";
import type { PeerAuthenticationSpec } from "../../mod/api/kinds/security.ts";
import type { Resource } from "../../mod/api/resource.ts";
import { createAnalysisContext } from "../../mod/galley/analyze.ts";
import { effectiveMtls } from "../../mod/galley/analyzers/mtls_conflicts.ts";
import { effectiveMtlsMode } from "../../mod/pilot/translate/authn.ts";
import { load } from "../galley/_analyze_fixture.ts";
import { pushFrom } from "../pilot/_push.ts";

function pa(namespace: string, name: string, spec: PeerAuthenticationSpec): Resource<PeerAuthenticationSpec> {
  return {
    apiVersion: "security.istio.io/v1",
    group: "security.istio.io",
    kind: "PeerAuthentication",
    metadata: { namespace, name },
    spec,
  } as unknown as Resource<PeerAuthenticationSpec>;
}

const ROOT = "istio-system";
const policies = [
  pa(ROOT, "mesh", { mtls: { mode: "STRICT" } }),
  pa("shop", "ns", { mtls: { mode: "PERMISSIVE" } }),
  pa("shop", "cart", {
    selector: { matchLabels: { app: "cart" } },
    mtls: { mode: "UNSET" },
    portLevelMtls: { "8080": { mode: "DISABLE" } },
  }),
  pa("shop", "pay", { selector: { matchLabels: { app: "pay" } }, mtls: { mode: "STRICT" } }),
  pa("other", "unset", { mtls: { mode: "UNSET" } }),
  pa(ROOT, "gw", { selector: { matchLabels: { app: "gw" } }, portLevelMtls: { "443": { mode: "DISABLE" } } }),
];
const ask = (namespace: string, labels?: Record<string, string>, port?: number) => {
  const d = effectivePeerMtls(policies, {
    namespace,
    ...(labels ? { labels } : {}),
    ...(port === undefined ? {} : { port }),
    rootNamespace: ROOT,
    defaultMode: "PERMISSIVE",
  });
  return [d.mode, d.policy?.metadata.name ?? "default"];
};

describe("effectivePeerMtls()", () => {
  test.each(
    [
      ["the workload's port-level mode", "shop", { app: "cart" }, 8080, ["DISABLE", "cart"]],
      ["UNSET at the workload defers to the namespace", "shop", { app: "cart" }, 9090, ["PERMISSIVE", "ns"]],
      ["the workload's own mode", "shop", { app: "pay" }, undefined, ["STRICT", "pay"]],
      ["no workload policy: the namespace's", "shop", { app: "web" }, undefined, ["PERMISSIVE", "ns"]],
      ["the namespace as a whole ignores workload policies", "shop", undefined, undefined, [
        "PERMISSIVE",
        "ns",
      ]],
      ["UNSET in the namespace defers to the mesh", "other", { app: "x" }, undefined, ["STRICT", "mesh"]],
      ["a selector in another namespace does not apply", "web", { app: "pay" }, undefined, [
        "STRICT",
        "mesh",
      ]],
    ] as const,
  )("%s", (_, ns, labels, port, want) => {
    expect(ask(ns, labels, port)).toEqual([...want]);
  });

  test("nothing set anywhere: the mesh default", () => {
    expect(effectivePeerMtls([], { namespace: "a", rootNamespace: ROOT, defaultMode: "STRICT" })).toEqual({
      mode: "STRICT",
    });
  });
});

describe("galley and pilot agree on PeerAuthentication", () => {
  test("a policy with a selector in the root namespace is ignored, also for the workload it selects there", () => {
    const yaml = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: mesh, namespace: istio-system }
spec:
  mtls: { mode: STRICT }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: gateway, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  mtls: { mode: PERMISSIVE }
`;
    const labels = { istio: "ingressgateway" };
    const galley = effectiveMtls(createAnalysisContext(load({ "pa.yaml": yaml })), ROOT, labels);
    const pilot = effectiveMtlsMode(pushFrom(yaml), { namespace: ROOT, labels });
    expect(galley).toEqual({ mode: "STRICT", source: "PeerAuthentication istio-system/mesh" });
    expect(pilot).toBe("STRICT");
    // Another namespace's workload with the same labels: the root-namespace selector is not mesh-wide.
    expect(effectiveMtlsMode(pushFrom(yaml), { namespace: "shop", labels })).toBe("STRICT");
  });
});
