import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import {
  DownstreamTlsContextSchema,
  UpstreamTlsContextSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import { CertificateValidationContext_TrustChainVerification } from "#gen/envoy/extensions/transport_sockets/tls/v3/common_pb.ts";
import {
  downstreamTlsContext,
  downstreamTransportSocket,
  istioMtlsSni,
  SDS_CLUSTER,
  spiffeId,
  SYSTEM_CA_FILE,
  upstreamTlsContext,
  type UpstreamTlsTarget,
  upstreamTransportSocket,
} from "../../../mod/pilot/translate/tls.ts";

const target: UpstreamTlsTarget = {
  host: "db.app.svc.cluster.local",
  port: 5432,
  protocol: "TCP",
  subset: "v1",
  identities: ["spiffe://cluster.local/ns/app/sa/db"],
};

describe("upstreamTlsContext()", () => {
  test("upstreamTlsContext() returns nothing for DISABLE", () => {
    expect(upstreamTlsContext({ mode: "DISABLE" }, target)).toBeUndefined();
  });

  test("upstreamTlsContext() uses SDS default and ROOTCA from the agent for ISTIO_MUTUAL", () => {
    const ctx = upstreamTlsContext({ mode: "ISTIO_MUTUAL" }, target)!;
    expect(ctx.sni).toBe("outbound_.5432_.v1_.db.app.svc.cluster.local");
    expect(istioMtlsSni({ host: "h", port: 1, subset: "" })).toBe("outbound_.1_._.h");
    const common = ctx.commonTlsContext!;
    expect(common.tlsCertificateSdsSecretConfigs.map((s) => s.name)).toEqual(["default"]);
    const sds = common.tlsCertificateSdsSecretConfigs[0]!.sdsConfig!.configSourceSpecifier;
    expect(sds.case === "apiConfigSource" && sds.value.grpcServices[0]?.targetSpecifier.value).toMatchObject({
      clusterName: SDS_CLUSTER,
    });
    const vc = common.validationContextType;
    expect(vc.case).toBe("combinedValidationContext");
    if (vc.case === "combinedValidationContext") {
      expect(vc.value.validationContextSdsSecretConfig?.name).toBe("ROOTCA");
      expect(vc.value.defaultValidationContext?.matchSubjectAltNames.map((m) => m.matchPattern.value))
        .toEqual([...target.identities]);
    }
    expect(common.alpnProtocols).toContain("istio");
  });

  test("upstreamTlsContext() prefers the rule's subjectAltNames over workload identities", () => {
    const ctx = upstreamTlsContext(
      { mode: "ISTIO_MUTUAL", subjectAltNames: ["spiffe://other/ns/x/sa/y"] },
      target,
    )!;
    const vc = ctx.commonTlsContext!.validationContextType;
    expect(
      vc.case === "combinedValidationContext" &&
        vc.value.defaultValidationContext?.matchSubjectAltNames.length,
    ).toBe(1);
  });

  test("upstreamTlsContext() verifies SIMPLE servers with the CA file, or the system bundle", () => {
    const withCa = upstreamTlsContext(
      { mode: "SIMPLE", caCertificates: "/ca.pem", sni: "x.example.com" },
      target,
    )!;
    expect(withCa.sni).toBe("x.example.com");
    const vc = withCa.commonTlsContext!.validationContextType;
    expect(vc.case === "validationContext" && vc.value.trustedCa?.specifier.value).toBe("/ca.pem");
    const system = upstreamTlsContext({ mode: "SIMPLE" }, target)!;
    const svc = system.commonTlsContext!.validationContextType;
    expect(svc.case === "validationContext" && svc.value.trustedCa?.specifier.value).toBe(SYSTEM_CA_FILE);
    expect(system.sni).toBe(target.host);
    const insecure = upstreamTlsContext({ mode: "SIMPLE", insecureSkipVerify: true }, target)!;
    expect(insecure.commonTlsContext!.validationContextType.case).toBeUndefined();
  });

  test("upstreamTlsContext() presents a client certificate for MUTUAL, from files or a credential", () => {
    const files = upstreamTlsContext(
      { mode: "MUTUAL", clientCertificate: "/c.pem", privateKey: "/k.pem", caCertificates: "/ca.pem" },
      target,
    )!;
    expect(files.commonTlsContext!.tlsCertificates[0]?.certificateChain?.specifier.value).toBe("/c.pem");
    const cred = upstreamTlsContext({ mode: "MUTUAL", credentialName: "partner" }, target)!;
    expect(cred.commonTlsContext!.tlsCertificateSdsSecretConfigs.map((s) => s.name)).toEqual(["partner"]);
    const vc = cred.commonTlsContext!.validationContextType;
    expect(vc.case === "combinedValidationContext" && vc.value.validationContextSdsSecretConfig?.name).toBe(
      "partner-cacert",
    );
  });

  test("upstreamTransportSocket() packs the context as envoy.transport_sockets.tls", () => {
    const ts = upstreamTransportSocket(upstreamTlsContext({ mode: "ISTIO_MUTUAL" }, target)!);
    expect(ts.name).toBe("envoy.transport_sockets.tls");
    expect(
      ts.configType.case === "typedConfig" && anyUnpack(ts.configType.value, UpstreamTlsContextSchema)?.sni,
    )
      .toBe("outbound_.5432_.v1_.db.app.svc.cluster.local");
  });

  test("spiffeId() spells Istio's identity", () => {
    expect(spiffeId("cluster.local", "bookinfo", "reviews")).toBe(
      "spiffe://cluster.local/ns/bookinfo/sa/reviews",
    );
  });
});

describe("downstreamTlsContext()", () => {
  test("downstreamTlsContext() terminates SIMPLE with a credential and passes PASSTHROUGH through", () => {
    expect(downstreamTlsContext({ mode: "PASSTHROUGH" })).toBeUndefined();
    const ctx = downstreamTlsContext({
      mode: "SIMPLE",
      credentialName: "cert",
      minProtocolVersion: "TLSV1_2",
    })!;
    expect(ctx.commonTlsContext!.tlsCertificateSdsSecretConfigs[0]?.name).toBe("cert");
    expect(ctx.requireClientCertificate).toBe(false);
    expect(ctx.commonTlsContext!.alpnProtocols).toEqual(["h2", "http/1.1"]);
    expect(ctx.commonTlsContext!.tlsParams?.tlsMinimumProtocolVersion).toBe(3);
  });

  test("downstreamTlsContext() requires client certificates for MUTUAL", () => {
    const ctx = downstreamTlsContext({
      mode: "MUTUAL",
      serverCertificate: "/s.pem",
      privateKey: "/k.pem",
      caCertificates: "/ca.pem",
    })!;
    expect(ctx.requireClientCertificate).toBe(true);
    const vc = ctx.commonTlsContext!.validationContextType;
    expect(vc.case === "validationContext" && vc.value.trustedCa?.specifier.value).toBe("/ca.pem");
    const ts = downstreamTransportSocket(ctx);
    expect(
      ts.configType.case === "typedConfig" &&
        anyUnpack(ts.configType.value, DownstreamTlsContextSchema)?.requireClientCertificate,
    )
      .toBe(true);
  });

  test("downstreamTlsContext() serves every credentialNames secret and verifies clients with the first one's CA", () => {
    const ctx = downstreamTlsContext({ mode: "MUTUAL", credentialNames: ["rsa-cert", "ecdsa-cert"] })!;
    const common = ctx.commonTlsContext!;
    expect(common.tlsCertificateSdsSecretConfigs.map((s) => s.name)).toEqual(["rsa-cert", "ecdsa-cert"]);
    const sds = common.tlsCertificateSdsSecretConfigs[1]!.sdsConfig!.configSourceSpecifier;
    expect(sds.case === "apiConfigSource" && sds.value.grpcServices[0]?.targetSpecifier.value).toMatchObject({
      clusterName: SDS_CLUSTER,
    });
    const vc = common.validationContextType;
    expect(vc.case === "combinedValidationContext" && vc.value.validationContextSdsSecretConfig?.name)
      .toBe("rsa-cert-cacert");
    expect(common.tlsCertificates).toEqual([]);
  });

  test("downstreamTlsContext() takes the client CA from caCertCredentialName when set", () => {
    for (
      const tls of [
        { credentialName: "shop", caCertCredentialName: "shop-clients" },
        { credentialNames: ["a", "b"], caCertCredentialName: "shop-clients" },
      ]
    ) {
      const vc =
        downstreamTlsContext({ mode: "OPTIONAL_MUTUAL", ...tls })!.commonTlsContext!.validationContextType;
      expect(vc.case === "combinedValidationContext" && vc.value.validationContextSdsSecretConfig?.name)
        .toBe("shop-clients");
    }
  });

  test("downstreamTlsContext() maps builtin:// to the gateway's own mesh certificate", () => {
    const common = downstreamTlsContext({ mode: "MUTUAL", credentialName: "builtin://" })!.commonTlsContext!;
    expect(common.tlsCertificateSdsSecretConfigs.map((s) => s.name)).toEqual(["default"]);
    const vc = common.validationContextType;
    expect(vc.case === "combinedValidationContext" && vc.value.validationContextSdsSecretConfig?.name)
      .toBe("ROOTCA");
  });

  test("downstreamTlsContext() serves every tlsCertificates pair from files, with the pairs' CA", () => {
    const ctx = downstreamTlsContext({
      mode: "MUTUAL",
      tlsCertificates: [
        { serverCertificate: "/rsa.pem", privateKey: "/rsa-key.pem", caCertificates: "/clients.pem" },
        { serverCertificate: "/ec.pem", privateKey: "/ec-key.pem" },
      ],
    })!;
    const common = ctx.commonTlsContext!;
    expect(
      common.tlsCertificates.map((c) => [c.certificateChain?.specifier.value, c.privateKey?.specifier.value]),
    )
      .toEqual([["/rsa.pem", "/rsa-key.pem"], ["/ec.pem", "/ec-key.pem"]]);
    expect(common.tlsCertificateSdsSecretConfigs).toEqual([]);
    const vc = common.validationContextType;
    expect(vc.case === "validationContext" && vc.value.trustedCa?.specifier.value).toBe("/clients.pem");
    const top = downstreamTlsContext({
      mode: "MUTUAL",
      caCertificates: "/top.pem",
      tlsCertificates: [{ serverCertificate: "/a", privateKey: "/b", caCertificates: "/clients.pem" }],
    })!.commonTlsContext!.validationContextType;
    expect(top.case === "validationContext" && top.value.trustedCa?.specifier.value).toBe("/top.pem");
  });

  test("downstreamTlsContext() accepts untrusted client certificates with insecureSkipVerify", () => {
    const vc = downstreamTlsContext({
      mode: "OPTIONAL_MUTUAL",
      credentialName: "c",
      insecureSkipVerify: true,
    })!.commonTlsContext!.validationContextType;
    expect(
      vc.case === "combinedValidationContext" && vc.value.defaultValidationContext?.trustChainVerification,
    )
      .toBe(CertificateValidationContext_TrustChainVerification.ACCEPT_UNTRUSTED);
    const strict = downstreamTlsContext({ mode: "MUTUAL", credentialName: "c" })!.commonTlsContext!
      .validationContextType;
    expect(
      strict.case === "combinedValidationContext" &&
        strict.value.defaultValidationContext?.trustChainVerification,
    )
      .toBe(CertificateValidationContext_TrustChainVerification.VERIFY_TRUST_CHAIN);
  });
});
