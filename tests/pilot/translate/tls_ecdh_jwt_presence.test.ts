/**
 * Newer Istio fields honoured by translation: ServerTLSSettings `ecdhCurves` (gateway servers and
 * Sidecar ingress) → `tls_params.ecdh_curves`, JWTRule `presence: REQUIRED` → a JWT requirement
 * that rejects requests without that rule's token, and WorkloadGroup `metadata.annotations` →
 * the auto-registered WorkloadEntry's annotations.
 *
 * @module
 */
import { describe, expect, test } from "bun:test";
import { toJson } from "@bufbuild/protobuf";
import { JwtRequirementSchema } from "#gen/envoy/extensions/filters/http/jwt_authn/v3/config_pb.ts";
import type { JWTRule } from "../../../mod/api/kinds/security.ts";
import { parseConfig } from "../../../mod/galley/parse.ts";
import { validateResource } from "../../../mod/galley/validate.ts";
import {
  AUTO_REGISTRATION_GROUP_ANNOTATION,
  autoRegisteredAnnotations,
  HEALTH_CHECKS_ANNOTATION,
} from "../../../mod/pilot/autoregister.ts";
import { jwtRequirement } from "../../../mod/pilot/translate/jwt.ts";
import { downstreamTlsContext } from "../../../mod/pilot/translate/tls.ts";

function diagnostics(yaml: string): [string, string, string][] {
  const parsed = parseConfig(yaml, "fields.yaml");
  return [...parsed.diagnostics, ...parsed.resources.flatMap((r) => validateResource(r))]
    .filter((d) => d.severity !== "info")
    .map((d) => [d.severity, d.field ?? "", d.message]);
}

const gateway = (tls: string) => `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: edge }
spec:
  selector: { istio: edge }
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: ${tls}
`;

describe("ServerTLSSettings.ecdhCurves", () => {
  test("SIMPLE, MUTUAL and OPTIONAL_MUTUAL servers restrict Envoy's curves, without duplicates", () => {
    for (const mode of ["SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"] as const) {
      const ctx = downstreamTlsContext({
        mode,
        credentialName: "cert",
        ecdhCurves: ["X25519", "P-256", "X25519"],
      })!;
      expect(ctx.commonTlsContext!.tlsParams?.ecdhCurves).toEqual(["X25519", "P-256"]);
    }
  });

  test("curves sit beside the other TLS parameters", () => {
    const params = downstreamTlsContext({
      mode: "SIMPLE",
      credentialName: "cert",
      minProtocolVersion: "TLSV1_2",
      cipherSuites: ["ECDHE-ECDSA-AES256-GCM-SHA384"],
      ecdhCurves: ["P-384"],
    })!.commonTlsContext!.tlsParams!;
    expect(params.cipherSuites).toEqual(["ECDHE-ECDSA-AES256-GCM-SHA384"]);
    expect(params.ecdhCurves).toEqual(["P-384"]);
  });

  test("ISTIO_MUTUAL keeps the mesh's settings: no curves, as in Istio", () => {
    const ctx = downstreamTlsContext({ mode: "ISTIO_MUTUAL", ecdhCurves: ["P-256"] })!;
    expect(ctx.commonTlsContext!.tlsParams?.ecdhCurves ?? []).toEqual([]);
  });

  test("validation accepts known curves silently and warns on unknown, repeated or unused ones", () => {
    expect(diagnostics(gateway("{mode: SIMPLE, credentialName: cert, ecdhCurves: [X25519, P-256]}")))
      .toEqual([]);
    const warned = diagnostics(
      gateway("{mode: SIMPLE, credentialName: cert, ecdhCurves: [P-256, P-256, P-999]}"),
    );
    expect(warned.map(([s, p]) => [s, p])).toEqual([
      ["warning", "spec.servers[0].tls.ecdhCurves[1]"],
      ["warning", "spec.servers[0].tls.ecdhCurves[2]"],
    ]);
    expect(warned[0]![2]).toContain("duplicate");
    expect(warned[1]![2]).toContain('unrecognized ECDH curve "P-999"');
    const istio = diagnostics(gateway("{mode: ISTIO_MUTUAL, ecdhCurves: [P-256]}"));
    expect(istio).toEqual([[
      "warning",
      "spec.servers[0].tls.ecdhCurves",
      "ecdhCurves is ignored with ISTIO_MUTUAL TLS: it applies to SIMPLE, MUTUAL and OPTIONAL_MUTUAL, as in Istio",
    ]]);
  });
});

describe("JWTRule.presence", () => {
  const rule = (issuer: string, presence?: JWTRule["presence"]) => ({
    name: issuer,
    rule: { issuer, ...(presence ? { presence } : {}) } as JWTRule,
  });
  const json = (rules: Parameters<typeof jwtRequirement>[0]): unknown =>
    toJson(JwtRequirementSchema, jwtRequirement(rules));
  const anyOrNone = {
    requiresAny: {
      requirements: [{ providerName: "a" }, { providerName: "b" }, { allowMissing: {} }],
    },
  };

  test("OPTIONAL (the default) lets a request without a token through", () => {
    expect(json([rule("a"), rule("b", "OPTIONAL")])).toEqual(anyOrNone);
  });

  test("REQUIRED demands that rule's token, whatever the other rules accept", () => {
    expect(json([rule("a", "REQUIRED"), rule("b")])).toEqual({
      requiresAll: { requirements: [{ providerName: "a" }, anyOrNone] },
    });
    expect(json([rule("a", "REQUIRED"), rule("b", "REQUIRED")])).toEqual({
      requiresAll: { requirements: [{ providerName: "a" }, { providerName: "b" }, anyOrNone] },
    });
  });

  test("validation accepts presence without a warning", () => {
    expect(diagnostics(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: app }
spec:
  jwtRules:
  - issuer: https://issuer.example.com
    presence: REQUIRED
`)).toEqual([]);
  });
});

describe("WorkloadGroup.metadata.annotations", () => {
  test("the auto-registered WorkloadEntry carries the group's annotations, as Istio writes them", () => {
    expect(autoRegisteredAnnotations("vms", { metadata: { annotations: { team: "a" } }, template: {} }))
      .toEqual({
        [AUTO_REGISTRATION_GROUP_ANNOTATION]: "vms",
        team: "a",
      });
    expect(
      autoRegisteredAnnotations("vms", {
        metadata: { annotations: { [AUTO_REGISTRATION_GROUP_ANNOTATION]: "other" } },
        template: {},
        probe: { tcpSocket: { port: 9000 } },
      }),
    ).toEqual({ [AUTO_REGISTRATION_GROUP_ANNOTATION]: "other", [HEALTH_CHECKS_ANNOTATION]: "true" });
  });
});
