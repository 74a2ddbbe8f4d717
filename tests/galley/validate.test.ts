import { expect, test } from "bun:test";
import { parseConfig } from "../../mod/galley/parse.ts";
import type { Resource } from "../../mod/api/resource.ts";
import { findKind, knownKinds, validateResource } from "../../mod/galley/validate.ts";
import { mixerLegacyKinds } from "../../mod/api/kinds/mixer.ts";

test("knownKinds lists every kind meshd reads, with its accepted versions", () => {
  expect(knownKinds.map((k) => `${k.group}/${k.kind}`)).toEqual([
    "networking.istio.io/VirtualService",
    "networking.istio.io/DestinationRule",
    "networking.istio.io/Gateway",
    "networking.istio.io/ServiceEntry",
    "networking.istio.io/WorkloadEntry",
    "networking.istio.io/WorkloadGroup",
    "networking.istio.io/Sidecar",
    "security.istio.io/PeerAuthentication",
    "security.istio.io/RequestAuthentication",
    "security.istio.io/AuthorizationPolicy",
    "telemetry.istio.io/Telemetry",
    "config.istio.io/handler",
    "config.istio.io/instance",
    "config.istio.io/rule",
    ...mixerLegacyKinds.map((k) => `config.istio.io/${k.kind}`),
    "config.meshd.io/MeshConfig",
  ]);
  // Istio 1.x's per-adapter and per-template kinds, the attribute manifest and the quota specs.
  for (
    const k of ["denier", "listchecker", "checknothing", "metric", "attributemanifest", "QuotaSpecBinding"]
  ) {
    expect(mixerLegacyKinds.map((x) => x.kind)).toContain(k);
  }
  expect(findKind("networking.istio.io", "VirtualService")?.versions).toEqual(["v1", "v1beta1", "v1alpha3"]);
  expect(findKind("security.istio.io", "AuthorizationPolicy")?.versions).toEqual(["v1", "v1beta1"]);
  expect(findKind("config.istio.io", "Handler")).toBeUndefined();
});

test("validateResource() gives every diagnostic a position, the resource label and the field", () => {
  const r = parseConfig(
    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: bookinfo\nspec:\n  host: reviews\n  subsets:\n  - name: v1\n",
    "dr.yaml",
  ).resources[0]!;
  expect(validateResource(r)).toEqual([{
    severity: "error",
    message: "is required",
    pos: { file: "dr.yaml", line: 9, col: 5 },
    resource: "DestinationRule bookinfo/reviews",
    field: "spec.subsets[0].labels",
  }]);
});

test("validateResource() treats a missing spec as empty", () => {
  const r = parseConfig(
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se\n",
    "se.yaml",
  ).resources[0]!;
  expect(r.spec).toEqual({});
  expect(validateResource(r).map((d) => [d.field, d.message])).toEqual([["spec.hosts", "is required"]]);
});

test("validateResource() rejects a spec that is not a mapping", () => {
  const r = parseConfig(
    "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: s\nspec: [1]\n",
    "s.yaml",
  ).resources[0]!;
  expect(validateResource(r).map((d) => [d.field, d.pos?.line, d.message])).toEqual([[
    "spec",
    5,
    "must be an object, got a list",
  ]]);
});

test("validateResource() rejects resources of unknown kinds or versions from other sources", () => {
  const base: Resource = {
    group: "networking.istio.io",
    version: "v9",
    kind: "VirtualService",
    metadata: { name: "x", namespace: "default" },
    spec: {},
    source: { file: "mcp", line: 1, col: 1 },
    positionOf: () => ({ file: "mcp", line: 1, col: 1 }),
  };
  expect(validateResource(base).map((d) => d.message)).toEqual([
    "networking.istio.io/v9 is not a supported version of VirtualService; use networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3",
  ]);
  expect(validateResource({ ...base, kind: "Ingress", version: "v1" }).map((d) => d.message)).toEqual([
    "unknown kind Ingress (networking.istio.io/v1)",
  ]);
});
