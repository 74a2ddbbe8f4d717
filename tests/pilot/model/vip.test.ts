/** allocateVips(): Istio's DNS auto-allocation rules, deterministic, collision-free, in a configurable range. */
import { describe, expect, test } from "bun:test";
import { allocateVips, needsVip, parseVipRange } from "../../../mod/pilot/model/vip.ts";
import type { Service } from "../../../mod/pilot/model/service.ts";
import { allocatedVips } from "../../../mod/pilot/translate/node_proxy.ts";
import { pushFrom } from "../_push.ts";

function svc(hostname: string, more: Partial<Service> = {}): Service {
  return {
    hostname,
    namespace: "ns",
    ports: [{ name: "tcp", number: 80, protocol: "TCP" }],
    addresses: [],
    resolution: "DNS",
    location: "MESH_EXTERNAL",
    exportTo: ["*"],
    subjectAltNames: [],
    source: `ServiceEntry/ns/${hostname}`,
    ...more,
  };
}

function inRange(ip: string, base: string, bits: number): boolean {
  const n = (s: string) => s.split(".").reduce((a, p) => a * 256 + Number(p), 0);
  const size = 2 ** (32 - bits);
  return n(ip) > n(base) && n(ip) < n(base) + size - 1;
}

describe("allocateVips()", () => {
  const hosts = Array.from({ length: 50 }, (_, i) => svc(`h${i}.example.com`));

  test("gives every host without addresses one address inside the range, never the first or last", () => {
    const vips = allocateVips(hosts, "198.19.0.0/24");
    expect(vips.size).toBe(50);
    for (const ip of vips.values()) expect(inRange(ip, "198.19.0.0", 24)).toBe(true);
    expect(new Set(vips.values()).size).toBe(50);
  });

  test("is deterministic and independent of the order services arrive in", () => {
    const a = allocateVips(hosts, "198.19.0.0/16");
    const b = allocateVips([...hosts].reverse(), "198.19.0.0/16");
    expect([...b.entries()].sort()).toEqual([...a.entries()].sort());
    expect(allocateVips(hosts, "198.19.0.0/16").get("ns/h7.example.com")).toBe(a.get("ns/h7.example.com")!);
  });

  test("never hands out a declared address, even when the hash points at it", () => {
    const first = allocateVips([svc("a.example.com")], "198.19.0.0/24").get("ns/a.example.com")!;
    const declared = svc("declared.example.com", { addresses: [first] });
    const vips = allocateVips([declared, svc("a.example.com")], "198.19.0.0/24");
    expect(vips.get("ns/a.example.com")).not.toBe(first);
    expect(vips.has("ns/declared.example.com")).toBe(false);
  });

  test("follows Istio's rules: no VIP for declared addresses, wildcard hosts or resolution NONE", () => {
    expect(needsVip(svc("a.example.com"))).toBe(true);
    expect(needsVip(svc("a.example.com", { resolution: "STATIC" }))).toBe(true);
    expect(needsVip(svc("a.example.com", { addresses: ["198.18.1.1"] }))).toBe(false);
    expect(needsVip(svc("*.example.com"))).toBe(false);
    expect(needsVip(svc("a.example.com", { resolution: "NONE" }))).toBe(false);
  });

  test("keys hosts by namespace: one host in two namespaces gets two addresses", () => {
    const vips = allocateVips(
      [svc("a.example.com"), svc("a.example.com", { namespace: "other" })],
      "198.19.0.0/16",
    );
    expect(vips.get("ns/a.example.com")).not.toBe(vips.get("other/a.example.com"));
  });

  test("stops when the range is full rather than reusing an address", () => {
    const vips = allocateVips(hosts.slice(0, 5), "198.19.0.0/30");
    expect([...vips.values()].sort()).toEqual(["198.19.0.1", "198.19.0.2"]);
  });

  test("refuses a range that is not an IPv4 CIDR block of at least 4 addresses, naming the setting", () => {
    expect(() => parseVipRange("198.19.0.0/31")).toThrow('MeshConfig autoAllocateVipRange "198.19.0.0/31"');
    expect(() => parseVipRange("fd00::/64")).toThrow("autoAllocateVipRange");
    expect(parseVipRange("198.19.7.9/16")).toEqual({ base: (198 * 256 + 19) * 65536, size: 65536 });
  });
});

describe("MeshConfig autoAllocateVipRange", () => {
  const SE = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api, namespace: ns }
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{ number: 443, name: tls, protocol: TLS }]
`;
  test("defaults to Istio's 240.240.0.0/16", () => {
    expect(allocatedVips(pushFrom(SE)).get("ns/api.example.com")).toMatch(/^240\.240\./);
  });

  test("a MeshConfig moves allocation into its range", () => {
    const push = pushFrom(
      SE,
      `apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec: { autoAllocateVipRange: 198.19.0.0/16 }`,
    );
    expect(push.mesh.autoAllocateVipRange).toBe("198.19.0.0/16");
    expect(allocatedVips(push).get("ns/api.example.com")).toMatch(/^198\.19\./);
  });

  test("validation refuses a range that is not an IPv4 block", () => {
    expect(() =>
      pushFrom(`apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec: { autoAllocateVipRange: "fd00::/64" }`)
    ).toThrow('autoAllocateVipRange "fd00::/64" must be an IPv4 CIDR block of at least 4 addresses');
  });
});
