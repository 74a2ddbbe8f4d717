import { describe, expect, test } from "bun:test";
import { multipleMeshConfigs } from "../../mod/galley/analyzers/mesh_configs.ts";
import {
  mixerHandlerNotFound,
  mixerInstanceNotFound,
  mixerTemplateMismatch,
  parseMixerRef,
} from "../../mod/galley/analyzers/mixer_rules.ts";
import {
  workloadGroupNotInService,
  workloadNotInService,
} from "../../mod/galley/analyzers/workload_membership.ts";
import { at, BASE, findings, lineOf, run } from "./_analyze_fixture.ts";

const MIXER = `apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: { name: whitelist, namespace: default }
spec:
  compiledAdapter: listchecker
  params: { overrides: [v1, v2], blacklist: false }
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: { name: quota, namespace: istio-system }
spec:
  compiledAdapter: memquota
  params: { quotas: [{ name: requests.instance.istio-system, maxAmount: 100, validDuration: 1s }] }
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: { name: source-version, namespace: default }
spec:
  compiledTemplate: listentry
  params: { value: 'source.labels["version"]' }
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: { name: request-count, namespace: default }
spec:
  compiledTemplate: metric
  params: { value: "1" }
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: { name: requests, namespace: istio-system }
spec:
  compiledTemplate: quota
  params: { dimensions: { destination: destination.service.name } }
---
`;

function rule(actions: string): string {
  return `apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: { name: check, namespace: default }
spec:
  match: destination.labels["app"] == "ratings"
  actions:
${actions}
`;
}

describe("MSH0170 MixerHandlerNotFound", () => {
  test("reports an action whose handler does not exist", () => {
    const yaml = MIXER + rule("    - { handler: whitelst, instances: [source-version] }");
    const ds = run(mixerHandlerNotFound, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0170", "rule default/check", "spec.actions[0].handler", yaml, "handler: whitelst"),
    ]);
    expect(ds[0]!.message).toBe(
      'handler "whitelst" (default/whitelst) not found (did you mean default/whitelist?); this action never runs',
    );
  });

  test("resolves NAME, NAME.NAMESPACE and NAME.KIND.NAMESPACE references", () => {
    const yaml = MIXER + rule(`    - { handler: whitelist, instances: [source-version.default] }
    - { handler: quota.istio-system, instances: [requests.instance.istio-system] }`);
    expect(run(mixerHandlerNotFound, yaml)).toEqual([]);
    expect(run(mixerInstanceNotFound, yaml)).toEqual([]);
    expect(parseMixerRef("quota.handler.istio-system", "default")).toEqual({
      namespace: "istio-system",
      name: "quota",
    });
  });
});

describe("MSH0171 MixerInstanceNotFound", () => {
  test("reports instances that do not exist, including ones in another namespace named short", () => {
    const yaml = MIXER + rule("    - { handler: whitelist, instances: [source-version, requests] }");
    const ds = run(mixerInstanceNotFound, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0171", "rule default/check", "spec.actions[0].instances[1]", yaml, "handler: whitelist"),
    ]);
    expect(ds[0]!.message).toStartWith('instance "requests" (default/requests) not found');
  });

  test("accepts existing instances", () => {
    expect(
      run(mixerInstanceNotFound, MIXER + rule("    - { handler: whitelist, instances: [source-version] }")),
    ).toEqual([]);
  });
});

describe("MSH0172 MixerTemplateMismatch", () => {
  test("reports an instance whose template the handler's adapter does not take", () => {
    const yaml = MIXER + rule(`    - handler: whitelist
      instances: [source-version, request-count]`);
    const ds = run(mixerTemplateMismatch, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0172", "rule default/check", "spec.actions[0].instances[1]", yaml, "instances: [source-version"),
    ]);
    expect(ds[0]!.message).toBe(
      "instance default/request-count has template metric, but handler default/whitelist uses adapter listchecker, " +
        "which accepts only listentry instances",
    );
  });

  test("accepts listentry for listchecker and quota for memquota", () => {
    const yaml = MIXER + rule(`    - { handler: whitelist, instances: [source-version] }
    - { handler: quota.istio-system, instances: [requests.istio-system] }`);
    expect(run(mixerTemplateMismatch, yaml)).toEqual([]);
  });
});

const MESH = `apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec: { trustDomain: cluster.local, defaultMtlsMode: STRICT }
`;

describe("MSH0180 MultipleMeshConfigs", () => {
  test("reports a MeshConfig in another file than the one in force (parsing catches two in one file)", () => {
    const yaml = `apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh-override, namespace: default }
spec: { defaultMtlsMode: DISABLE }
`;
    const base = `${BASE}---\n${MESH}`;
    const ds = run(multipleMeshConfigs, yaml, base);
    expect(findings(ds)).toEqual([
      at("MSH0180", "MeshConfig default/mesh-override", "metadata.name", yaml, "mesh-override"),
    ]);
    expect(ds[0]!.severity).toBe("error");
    expect(ds[0]!.message).toBe(
      `MeshConfig istio-system/mesh (base.yaml:${
        lineOf(base, "kind: MeshConfig") - 1
      }) is already in force; ` +
        "a mesh has exactly one MeshConfig and this one is ignored",
    );
  });

  test("accepts a single MeshConfig", () => {
    expect(run(multipleMeshConfigs, MESH)).toEqual([]);
  });
});

describe("MSH0181 WorkloadNotInService and MSH0182 WorkloadGroupNotInService", () => {
  test("MSH0181 reports a WorkloadEntry no ServiceEntry selects, as Info", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: batch-1, namespace: default }
spec:
  address: 192.0.2.40
  labels: { app: batch }
`;
    const ds = run(workloadNotInService, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0181", "WorkloadEntry default/batch-1", "spec.labels", yaml, "labels:"),
    ]);
    expect(ds[0]!.severity).toBe("info");
    expect(ds[0]!.message).toBe(
      "this workload belongs to no service: its labels {app=batch} match no ServiceEntry workloadSelector in namespace default",
    );
  });

  test("MSH0181 accepts the fixture's workloads, which their ServiceEntries select", () => {
    expect(run(workloadNotInService, "")).toEqual([]);
  });

  test("MSH0182 reports a WorkloadGroup whose labels no ServiceEntry selects; a selected group passes", () => {
    const group = (name: string, app: string) =>
      `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: ${name}, namespace: default }
spec:
  metadata:
    labels: { app: ${app} }
  template: { serviceAccount: ${app} }
`;
    const yaml = [group("ratings", "ratings"), group("batch", "batch")].join("---\n");
    expect(findings(run(workloadGroupNotInService, yaml))).toEqual([
      at("MSH0182", "WorkloadGroup default/batch", "spec.metadata.labels", yaml, "labels: { app: batch }"),
    ]);
  });
});
