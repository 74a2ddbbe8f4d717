import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../mod/galley/parse.ts";
import {
  configKey,
  configPrefix,
  encodeResource,
  identityProblem,
  kindPrefix,
  parseConfigKey,
  resourceConfigKey,
} from "../../mod/store/config_keys.ts";

const YAML = `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
  labels: { app: reviews }
  resourceVersion: "42"
spec:
  hosts: [reviews]
`;

describe("config keys", () => {
  test("configKey() spells PREFIX/config/GROUP/KIND/NAMESPACE/NAME and parseConfigKey() reads it back", () => {
    const parts = {
      group: "networking.istio.io",
      kind: "VirtualService",
      namespace: "bookinfo",
      name: "reviews",
    };
    const key = configKey("/meshd", parts);
    expect(key).toBe("/meshd/config/networking.istio.io/VirtualService/bookinfo/reviews");
    expect(parseConfigKey("/meshd", key)).toEqual(parts);
    expect(key.startsWith(configPrefix("/meshd"))).toBe(true);
    expect(key.startsWith(kindPrefix("/meshd", "networking.istio.io", "VirtualService"))).toBe(true);
  });

  test("parseConfigKey() refuses keys of another prefix, too few or too many segments, and empty ones", () => {
    expect(parseConfigKey("/meshd", "/other/config/g/K/ns/n")).toBeUndefined();
    expect(parseConfigKey("/meshd", "/meshd/config/g/K/n")).toBeUndefined();
    expect(parseConfigKey("/meshd", "/meshd/config/g/K/ns/n/extra")).toBeUndefined();
    expect(parseConfigKey("/meshd", "/meshd/config/g//ns/n")).toBeUndefined();
    expect(parseConfigKey("/meshd", "/meshd/configx/g/K/ns/n")).toBeUndefined();
  });

  test("encodeResource() stores apiVersion, kind, metadata and spec, without resourceVersion or positions", () => {
    const r = parseConfig(YAML, "vs.yaml").resources[0]!;
    expect(resourceConfigKey("/p", r)).toBe("/p/config/networking.istio.io/VirtualService/bookinfo/reviews");
    const doc = JSON.parse(new TextDecoder().decode(encodeResource(r)));
    expect(doc).toEqual({
      apiVersion: "networking.istio.io/v1beta1",
      kind: "VirtualService",
      metadata: { name: "reviews", namespace: "bookinfo", labels: { app: "reviews" } },
      spec: { hosts: ["reviews"] },
    });
    // What is stored parses back to the same resource.
    const again = parseConfig(encodeResource(r), "key").resources[0]!;
    expect([again.kind, again.metadata.name, again.spec]).toEqual([r.kind, r.metadata.name, r.spec]);
  });

  test("identityProblem() accepts the key's own resource and names both sides of a mismatch", () => {
    const parts = parseConfigKey("/m", "/m/config/networking.istio.io/VirtualService/bookinfo/reviews")!;
    const r = parseConfig(YAML, "vs.yaml").resources[0]!;
    expect(identityProblem(parts, new TextDecoder().decode(encodeResource(r)))).toBeUndefined();
    const other = { ...parts, name: "ratings" };
    expect(identityProblem(other, new TextDecoder().decode(encodeResource(r)))).toBe(
      "the key names VirtualService bookinfo/ratings (networking.istio.io) but its value is " +
        "VirtualService bookinfo/reviews (networking.istio.io/v1beta1)",
    );
    expect(identityProblem(parts, "kind: VirtualService")).toMatch(/^the value is not a JSON document/);
    expect(identityProblem(parts, "[1]")).toMatch(/not a JSON object/);
  });

  test("identityProblem() takes a missing namespace as default, as parsing does", () => {
    const parts = { group: "security.istio.io", kind: "PeerAuthentication", namespace: "default", name: "x" };
    const doc = {
      apiVersion: "security.istio.io/v1",
      kind: "PeerAuthentication",
      metadata: { name: "x" },
      spec: {},
    };
    expect(identityProblem(parts, JSON.stringify(doc))).toBeUndefined();
  });
});
