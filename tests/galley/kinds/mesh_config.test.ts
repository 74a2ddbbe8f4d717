import { describe, expect, test } from "bun:test";
import { defaultMeshConfig, mergeMeshConfig } from "../../../mod/api/kinds/mesh_config.ts";
import { parseConfig } from "../../../mod/galley/parse.ts";
import { errorsOf, expectOneError, expectValid, resource } from "./_check.ts";

const mesh = (spec: string, name = "mesh") =>
  resource(
    { apiVersion: "config.meshd.io/v1alpha1", kind: "MeshConfig", name, namespace: "istio-system" },
    spec,
  );

describe("MeshConfig", () => {
  test("validateResource() accepts a full MeshConfig", () => {
    expectValid(mesh(`  trustDomain: example.org
  rootNamespace: mesh-root
  defaultMtlsMode: STRICT
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
  enableAutoMtls: false
  connectTimeout: 2s
  mixer:
    failOpen: false
  accessLogFile: /dev/stdout
  defaultConfig:
    discoveryAddress: meshd.example.internal:15012
`));
  });

  test("validateResource() rejects bad trust domains, timeouts, modes and addresses", () => {
    expectOneError(
      mesh(`  trustDomain: Cluster_Local\n`),
      "spec.trustDomain",
      7,
      "must be a lower-case DNS name",
    );
    expectOneError(mesh(`  connectTimeout: 2h\n`), "spec.connectTimeout", 7, "duration must be at most 1h");
    expectOneError(
      mesh(`  defaultMtlsMode: ON\n`),
      "spec.defaultMtlsMode",
      7,
      "must be one of STRICT, PERMISSIVE, DISABLE",
    );
    expectOneError(
      mesh(`  defaultConfig:\n    discoveryAddress: meshd\n`),
      "spec.defaultConfig.discoveryAddress",
      8,
      "must be host:port",
    );
    expectOneError(mesh(`  mixer:\n    failOpen: "yes"\n`), "spec.mixer.failOpen", 8, "must be a boolean");
  });

  test("mergeMeshConfig() returns the defaults for no resource", () => {
    expect(mergeMeshConfig(undefined)).toEqual(defaultMeshConfig);
    expect(defaultMeshConfig).toMatchObject({
      trustDomain: "cluster.local",
      rootNamespace: "istio-system",
      defaultMtlsMode: "PERMISSIVE",
      outboundTrafficPolicy: { mode: "ALLOW_ANY" },
      enableAutoMtls: true,
      connectTimeout: "10s",
      mixer: { failOpen: true },
    });
  });

  test("mergeMeshConfig() merges a resource's spec over the defaults, field by field", () => {
    const parsed = parseConfig(
      mesh(`  trustDomain: example.org\n  mixer: {}\n  outboundTrafficPolicy:\n    mode: REGISTRY_ONLY\n`),
      "mesh.yaml",
    );
    expect(parsed.diagnostics).toEqual([]);
    const merged = mergeMeshConfig(parsed.resources[0]!);
    expect(merged).toEqual({
      ...defaultMeshConfig,
      trustDomain: "example.org",
      outboundTrafficPolicy: { mode: "REGISTRY_ONLY" },
    });
    expect(merged.mixer.failOpen).toBe(true);
  });

  test("parseConfig() allows only one MeshConfig per mesh", () => {
    const errors = errorsOf(`${mesh("  {}\n", "a")}\n---\n${mesh("  {}\n", "b")}`);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toBe(
      "only one MeshConfig is allowed per mesh; MeshConfig istio-system/a is already defined at test.yaml:1:1",
    );
    expect(errors[0]!.pos).toEqual({ file: "test.yaml", line: 10, col: 1 });
  });
});
