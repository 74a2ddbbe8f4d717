import { describe, expect, test } from "bun:test";
import { proxyConfigKey, proxyFromNode, ProxyIdError } from "../../../mod/pilot/model/proxy.ts";

describe("proxyFromNode()", () => {
  test("reads Istio's node id and metadata", () => {
    const p = proxyFromNode({
      id: "sidecar~192.0.2.10~reviews-v1.bookinfo~bookinfo.svc.cluster.local",
      metadata: {
        LABELS: { app: "reviews", version: "v1" },
        SERVICE_ACCOUNT: "bookinfo-reviews",
        INSTANCE_IPS: "192.0.2.10,fd00::10",
        AUTO_REGISTER_GROUP: "reviews",
      },
    });
    expect(p).toMatchObject({
      type: "sidecar",
      ip: "192.0.2.10",
      ipAddresses: ["192.0.2.10", "fd00::10"],
      name: "reviews-v1",
      namespace: "bookinfo",
      dnsDomain: "bookinfo.svc.cluster.local",
      labels: { app: "reviews", version: "v1" },
      serviceAccount: "bookinfo-reviews",
      generator: "envoy",
      autoRegisterGroup: "reviews",
    });
  });

  test("GENERATOR grpc and proxyless types get gRPC resources", () => {
    expect(
      proxyFromNode({
        id: "sidecar~127.0.0.1~c.test~test.svc.cluster.local",
        metadata: { GENERATOR: "grpc" },
      }).generator,
    )
      .toBe("grpc");
    expect(proxyFromNode({ id: "proxyless~127.0.0.1~c.test~test.svc.cluster.local", metadata: {} }).generator)
      .toBe("grpc");
  });

  test("NAMESPACE metadata wins over the id", () => {
    expect(
      proxyFromNode({ id: "router~10.0.0.1~gw.a~a.svc.cluster.local", metadata: { NAMESPACE: "b" } })
        .namespace,
    ).toBe("b");
  });

  test("a malformed node id is refused with a clear message", () => {
    expect(() => proxyFromNode({ id: "just-a-name", metadata: {} })).toThrow(ProxyIdError);
    expect(() => proxyFromNode({ id: "just-a-name", metadata: {} })).toThrow(
      "want TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local",
    );
    expect(() => proxyFromNode({ id: "gateway~1.2.3.4~a.b~b.svc.cluster.local", metadata: {} })).toThrow(
      'type "gateway" is not sidecar, router or proxyless',
    );
  });

  test("proxyConfigKey() is equal for proxies that differ only in name and address", () => {
    const a = proxyFromNode({
      id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local",
      metadata: { LABELS: { x: "1", y: "2" } },
    });
    const b = proxyFromNode({
      id: "sidecar~10.0.0.2~b.ns~ns.svc.cluster.local",
      metadata: { LABELS: { y: "2", x: "1" } },
    });
    const c = proxyFromNode({
      id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local",
      metadata: { LABELS: { x: "1", y: "3" } },
    });
    const d = proxyFromNode({
      id: "sidecar~10.0.0.1~a.other~other.svc.cluster.local",
      metadata: { LABELS: { x: "1", y: "2" } },
    });
    expect(proxyConfigKey(a)).toBe(proxyConfigKey(b));
    expect(proxyConfigKey(a)).not.toBe(proxyConfigKey(c));
    expect(proxyConfigKey(a)).not.toBe(proxyConfigKey(d));
  });
});
