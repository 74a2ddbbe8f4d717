import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { FilterChain } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { DownstreamTlsContextSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import { effectiveMtlsMode } from "../../../mod/pilot/translate/authn.ts";
import { buildListeners } from "../../../mod/pilot/translate/mod.ts";
import { pushFrom, sidecar, WEB_SERVICE, webSidecar } from "../_push.ts";

const pa = (name: string, ns: string, body: string) => `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: ${name}, namespace: ${ns} }
spec:
${body}`;

const web = webSidecar();

function virtualInbound(push = pushFrom(WEB_SERVICE)): Listener {
  const l = buildListeners(push, web).find((x) => x.name === "virtualInbound");
  if (!l) throw new Error("no virtualInbound");
  return l;
}

function chains(l: Listener): [string, number | undefined, string][] {
  return l.filterChains.map((
    c,
  ) => [c.name, c.filterChainMatch?.destinationPort, c.filterChainMatch?.transportProtocol ?? ""]);
}

function tlsOf(c: FilterChain) {
  const ts = c.transportSocket;
  if (!ts || ts.configType.case !== "typedConfig") return undefined;
  return anyUnpack(ts.configType.value, DownstreamTlsContextSchema);
}

describe("PeerAuthentication: effective mode", () => {
  test("effectiveMtlsMode() falls back to MeshConfig defaultMtlsMode (PERMISSIVE)", () => {
    expect(effectiveMtlsMode(pushFrom(WEB_SERVICE), web, 80)).toBe("PERMISSIVE");
  });

  test("effectiveMtlsMode() prefers workload > namespace > mesh, and portLevelMtls over the workload's mode", () => {
    const push = pushFrom(
      WEB_SERVICE,
      pa("mesh", "istio-system", "  mtls: { mode: STRICT }"),
      pa("ns", "app", "  mtls: { mode: DISABLE }"),
      pa(
        "wl",
        "app",
        "  selector: { matchLabels: { app: web } }\n  mtls: { mode: PERMISSIVE }\n  portLevelMtls: { '9000': { mode: STRICT } }",
      ),
    );
    expect(effectiveMtlsMode(push, web, 80)).toBe("PERMISSIVE");
    expect(effectiveMtlsMode(push, web, 9000)).toBe("STRICT");
    expect(effectiveMtlsMode(push, sidecar("10.0.0.9", "app", { app: "other" }), 80)).toBe("DISABLE");
    expect(effectiveMtlsMode(push, sidecar("10.0.0.9", "other", {}), 80)).toBe("STRICT");
  });

  test("effectiveMtlsMode(): UNSET inherits, and a selector in the root namespace is ignored", () => {
    const push = pushFrom(
      WEB_SERVICE,
      pa("mesh", "istio-system", "  mtls: { mode: STRICT }"),
      pa("root-wl", "istio-system", "  selector: { matchLabels: { app: web } }\n  mtls: { mode: DISABLE }"),
      pa("wl", "app", "  selector: { matchLabels: { app: web } }\n  mtls: { mode: UNSET }"),
    );
    expect(effectiveMtlsMode(push, web, 80)).toBe("STRICT");
  });
});

describe("PeerAuthentication: virtualInbound chains", () => {
  test("PERMISSIVE (the default): TLS inspector, an mTLS chain matching tls and a plaintext one per port", () => {
    const vi = virtualInbound();
    expect(vi.listenerFilters.map((f) => f.name)).toContain("envoy.filters.listener.tls_inspector");
    expect(chains(vi)).toEqual([
      ["virtualInbound-blackhole", 15006, ""],
      ["inbound|80||-mtls", 80, "tls"],
      ["inbound|80||", 80, "raw_buffer"],
      ["inbound|9000||-mtls", 9000, "tls"],
      ["inbound|9000||", 9000, "raw_buffer"],
      ["InboundPassthroughFilterChain-mtls", undefined, "tls"],
      ["InboundPassthroughFilterChain", undefined, "raw_buffer"],
    ]);
    expect(vi.filterChains[2]!.transportSocket).toBeUndefined();
  });

  test("STRICT: only mTLS chains, with the SDS workload cert, ROOTCA validation and a required client cert", () => {
    const vi = virtualInbound(pushFrom(WEB_SERVICE, pa("ns", "app", "  mtls: { mode: STRICT }")));
    expect(vi.listenerFilters.map((f) => f.name)).toEqual(["envoy.filters.listener.original_dst"]);
    expect(chains(vi)).toEqual([
      ["virtualInbound-blackhole", 15006, ""],
      ["inbound|80||-mtls", 80, ""],
      ["inbound|9000||-mtls", 9000, ""],
      ["InboundPassthroughFilterChain-mtls", undefined, ""],
    ]);
    const tls = tlsOf(vi.filterChains[1]!)!;
    expect(tls.requireClientCertificate).toBe(true);
    const common = tls.commonTlsContext!;
    expect(common.tlsCertificateSdsSecretConfigs.map((s) => s.name)).toEqual(["default"]);
    expect(common.tlsCertificateSdsSecretConfigs[0]!.sdsConfig?.configSourceSpecifier.value).toMatchObject({
      grpcServices: [{ targetSpecifier: { case: "envoyGrpc", value: { clusterName: "sds-grpc" } } }],
    });
    expect(common.validationContextType.case).toBe("combinedValidationContext");
    expect(
      common.validationContextType.case === "combinedValidationContext"
        ? common.validationContextType.value.validationContextSdsSecretConfig?.name
        : undefined,
    ).toBe("ROOTCA");
    expect(common.alpnProtocols).toEqual(["h2", "http/1.1"]);
    expect(tlsOf(vi.filterChains[2]!)!.commonTlsContext!.alpnProtocols).toEqual([]);
  });

  test("DISABLE: plaintext chains only; portLevelMtls mixes modes per port", () => {
    const off = virtualInbound(
      pushFrom(WEB_SERVICE, pa("mesh", "istio-system", "  mtls: { mode: DISABLE }")),
    );
    expect(chains(off)).toEqual([
      ["virtualInbound-blackhole", 15006, ""],
      ["inbound|80||", 80, ""],
      ["inbound|9000||", 9000, ""],
      ["InboundPassthroughFilterChain", undefined, ""],
    ]);
    expect(off.filterChains.every((c) => c.transportSocket === undefined)).toBe(true);
    const mixed = virtualInbound(pushFrom(
      WEB_SERVICE,
      pa(
        "wl",
        "app",
        "  selector: { matchLabels: { app: web } }\n  mtls: { mode: DISABLE }\n  portLevelMtls: { '80': { mode: STRICT } }",
      ),
    ));
    expect(chains(mixed)).toEqual([
      ["virtualInbound-blackhole", 15006, ""],
      ["inbound|80||-mtls", 80, ""],
      ["inbound|9000||", 9000, ""],
      ["InboundPassthroughFilterChain", undefined, ""],
    ]);
  });
});
