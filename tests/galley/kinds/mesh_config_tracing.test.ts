/** MeshConfig `defaultConfig.tracing` (Istio's ProxyConfig tracing): validation and merging. */
import { describe, expect, test } from "bun:test";
import { defaultMeshConfig, mergeMeshConfig, splitMeshAddress } from "../../../mod/api/kinds/mesh_config.ts";
import { expectOneError, expectValid, resource } from "./_check.ts";

const mesh = (spec: string) =>
  resource(
    { apiVersion: "config.meshd.io/v1alpha1", kind: "MeshConfig", name: "mesh", namespace: "istio-system" },
    spec,
  );

/** A MeshConfig whose defaultConfig.tracing is `tracing` (YAML indented by six spaces). */
const tracing = (body: string) => mesh(`  defaultConfig:\n    tracing:\n${body}`);

describe("MeshConfig defaultConfig.tracing", () => {
  test("validateResource() accepts a Zipkin address (name, IPv4, bracketed IPv6) and a sampling percentage", () => {
    for (
      const address of ["zipkin.istio-system.svc.cluster.local:9411", "192.0.2.7:9411", "[2001:db8::7]:9411"]
    ) {
      expectValid(tracing(`      zipkin:\n        address: "${address}"\n      sampling: 12.5\n`));
    }
    expectValid(tracing(`      sampling: 0\n`));
    expectValid(tracing(`      sampling: 100\n`));
  });

  test("validateResource() rejects an address that is not host:port, naming the field and line", () => {
    for (
      const address of [
        "zipkin",
        "zipkin:0",
        "zipkin:70000",
        "2001:db8::7:9411",
        "bad_host!:9411",
        "[zk.example]:9411",
      ]
    ) {
      expectOneError(
        tracing(`      zipkin:\n        address: "${address}"\n`),
        "spec.defaultConfig.tracing.zipkin.address",
        10,
        "zipkin address",
      );
    }
    expectOneError(
      tracing(`      zipkin:\n        address: ""\n`),
      "spec.defaultConfig.tracing.zipkin.address",
      10,
      "empty",
    );
    expectOneError(tracing(`      zipkin: {}\n`), "spec.defaultConfig.tracing.zipkin.address", 9, "required");
  });

  test("validateResource() rejects sampling outside 0..100 and fields meshd does not take", () => {
    expectOneError(
      tracing(`      sampling: 100.5\n`),
      "spec.defaultConfig.tracing.sampling",
      9,
      "must be 0–100",
    );
    expectOneError(
      tracing(`      sampling: -1\n`),
      "spec.defaultConfig.tracing.sampling",
      9,
      "must be 0–100",
    );
    expectOneError(
      tracing(`      sampling: "5"\n`),
      "spec.defaultConfig.tracing.sampling",
      9,
      "must be a number",
    );
    expectOneError(
      tracing(`      lightstep: {}\n`),
      "spec.defaultConfig.tracing.lightstep",
      9,
      "unknown field",
    );
  });

  test("mergeMeshConfig() leaves tracing absent by default and defaults sampling to Istio's 1%", () => {
    expect(defaultMeshConfig.defaultConfig.tracing).toBeUndefined();
    expect(mergeMeshConfig({ defaultConfig: { discoveryAddress: "m.example:15012" } }).defaultConfig).toEqual(
      {
        discoveryAddress: "m.example:15012",
      },
    );
    expect(
      mergeMeshConfig({ defaultConfig: { tracing: { zipkin: { address: "zk.example:9411" } } } })
        .defaultConfig,
    )
      .toEqual({ discoveryAddress: "", tracing: { zipkin: { address: "zk.example:9411" }, sampling: 1 } });
  });

  test("mergeMeshConfig() merges tracing field by field over a base", () => {
    const base = mergeMeshConfig({
      defaultConfig: { tracing: { zipkin: { address: "zk.example:9411" }, sampling: 20 } },
    });
    expect(mergeMeshConfig({ defaultConfig: { tracing: { sampling: 3 } } }, base).defaultConfig.tracing)
      .toEqual({
        zipkin: { address: "zk.example:9411" },
        sampling: 3,
      });
    expect(
      mergeMeshConfig({ defaultConfig: { discoveryAddress: "m.example:15012" } }, base).defaultConfig.tracing,
    )
      .toEqual({ zipkin: { address: "zk.example:9411" }, sampling: 20 });
  });

  test("splitMeshAddress() splits host:port and refuses what is not one", () => {
    expect(splitMeshAddress("zk.example:9411")).toEqual({ host: "zk.example", port: 9411 });
    expect(splitMeshAddress("[::1]:9411")).toEqual({ host: "::1", port: 9411 });
    expect(splitMeshAddress("zk.example")).toBeUndefined();
    expect(splitMeshAddress("[zk.example]:9411")).toBeUndefined();
  });
});
