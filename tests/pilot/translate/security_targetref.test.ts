/**
 * Policies attached with `targetRef` / `targetRefs` instead of a selector: which workloads they
 * reach (push context) and that they end up in the listeners of those workloads and no others.
 */
import { describe, expect, test } from "bun:test";
import { toJson } from "@bufbuild/protobuf";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { type Proxy, proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { GATEWAY_NAME_LABEL } from "../../../mod/pilot/model/push_context.ts";
import { buildListeners } from "../../../mod/pilot/translate/mod.ts";
import { TRANSLATE_REGISTRY } from "../../../mod/pilot/translate/type_registry.ts";
import { validateResource } from "../../../mod/galley/validate.ts";
import { parseConfig } from "../../../mod/galley/parse.ts";
import { pushFrom, sidecar, WEB_SERVICE, webSidecar } from "../_push.ts";

const router = (ip: string, namespace: string, labels: Record<string, string>): Proxy =>
  proxyFromNode({
    id: `router~${ip}~gw.${namespace}~${namespace}.svc.cluster.local`,
    metadata: { NAMESPACE: namespace, LABELS: labels },
  });

const GATEWAYS = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: app }
spec:
  selector: { istio: edge }
  servers:
    - port: { number: 8080, name: http, protocol: HTTP }
      hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web, namespace: app }
spec:
  hosts: ["*"]
  gateways: [edge]
  http: [{ route: [{ destination: { host: web.app.svc.cluster.local, port: { number: 80 } } }] }]
`;

const policy = (kind: string, name: string, ns: string, attach: string, body: string) => `
apiVersion: security.istio.io/v1
kind: ${kind}
metadata: { name: ${name}, namespace: ${ns} }
spec:
${attach}
${body}`;

const DENY_ALL = "  action: DENY\n  rules: [{}]";
const JWT = "  jwtRules: [{ issuer: https://issuer.example.com, jwks: '{\"keys\":[]}' }]";

const names = <T extends { metadata: { name: string } }>(list: readonly T[]) =>
  list.map((r) => r.metadata.name);

/** Every listener of a proxy as JSON text (enough to look for the RBAC and JWT filters). */
const filtersOf = (listeners: readonly Listener[]) =>
  JSON.stringify(listeners.map((l) => toJson(ListenerSchema, l, { registry: TRANSLATE_REGISTRY })));

describe("targetRef to a networking.istio.io Gateway", () => {
  const push = pushFrom(
    WEB_SERVICE,
    GATEWAYS,
    policy(
      "AuthorizationPolicy",
      "edge-deny",
      "app",
      "  targetRef: { group: networking.istio.io, kind: Gateway, name: edge }",
      DENY_ALL,
    ),
    policy(
      "RequestAuthentication",
      "edge-jwt",
      "app",
      "  targetRefs: [{ group: networking.istio.io, kind: Gateway, name: edge }]",
      JWT,
    ),
  );

  test("applies to the workloads the Gateway selects, and to no others", () => {
    const gw = router("10.0.9.1", "app", { istio: "edge" });
    expect(names(push.authorizationPolicies(gw))).toEqual(["edge-deny"]);
    expect(names(push.requestAuthentications(gw))).toEqual(["edge-jwt"]);
    expect(names(push.authorizationPolicies(webSidecar()))).toEqual([]);
    expect(names(push.authorizationPolicies(router("10.0.9.2", "app", { istio: "other" })))).toEqual([]);
  });

  test("puts the RBAC and JWT filters on the gateway's listener, not on the sidecar's", () => {
    const gwText = filtersOf(buildListeners(push, router("10.0.9.1", "app", { istio: "edge" })));
    expect(gwText).toContain("envoy.filters.http.rbac");
    expect(gwText).toContain("envoy.filters.http.jwt_authn");
    const sidecarText = filtersOf(buildListeners(push, webSidecar()));
    expect(sidecarText).not.toContain("envoy.filters.http.rbac");
    expect(sidecarText).not.toContain("envoy.filters.http.jwt_authn");
  });

  test("a policy in another namespace than the Gateway attaches to nothing", () => {
    const other = pushFrom(
      WEB_SERVICE,
      GATEWAYS,
      policy(
        "AuthorizationPolicy",
        "elsewhere",
        "other",
        "  targetRef: { group: networking.istio.io, kind: Gateway, name: edge }",
        DENY_ALL,
      ),
    );
    expect(names(other.authorizationPolicies(router("10.0.9.1", "app", { istio: "edge" })))).toEqual([]);
  });
});

describe("targetRef to a gateway.networking.k8s.io Gateway", () => {
  const push = pushFrom(
    WEB_SERVICE,
    policy(
      "AuthorizationPolicy",
      "k8s-gw",
      "app",
      "  targetRef: { group: gateway.networking.k8s.io, kind: Gateway, name: public }",
      DENY_ALL,
    ),
  );

  test("applies to workloads of its namespace labelled with the gateway's name", () => {
    expect(names(push.authorizationPolicies(router("10.0.9.1", "app", { [GATEWAY_NAME_LABEL]: "public" }))))
      .toEqual(["k8s-gw"]);
    expect(names(push.authorizationPolicies(router("10.0.9.1", "app", { [GATEWAY_NAME_LABEL]: "private" }))))
      .toEqual([]);
    expect(names(push.authorizationPolicies(router("10.0.9.1", "edge", { [GATEWAY_NAME_LABEL]: "public" }))))
      .toEqual([]);
    expect(names(push.authorizationPolicies(webSidecar()))).toEqual([]);
  });
});

describe("targetRef to a ServiceEntry", () => {
  const SELECTED = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api, namespace: app }
spec:
  hosts: [api.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  workloadSelector: { labels: { app: api } }
`;
  const push = pushFrom(
    WEB_SERVICE,
    SELECTED,
    policy(
      "AuthorizationPolicy",
      "web-deny",
      "app",
      "  targetRef: { group: networking.istio.io, kind: ServiceEntry, name: web }",
      DENY_ALL,
    ),
    policy(
      "AuthorizationPolicy",
      "api-deny",
      "app",
      "  targetRefs: [{ group: networking.istio.io, kind: ServiceEntry, name: api }]",
      DENY_ALL,
    ),
  );

  test("applies to the workloads at its endpoints' addresses", () => {
    expect(names(push.authorizationPolicies(webSidecar()))).toEqual(["web-deny"]);
    expect(names(push.authorizationPolicies(sidecar("10.0.0.2", "app", { app: "web" })))).toEqual([]);
  });

  test("applies to the workloads its workloadSelector picks in its namespace", () => {
    expect(names(push.authorizationPolicies(sidecar("10.0.0.7", "app", { app: "api" })))).toEqual([
      "api-deny",
    ]);
    expect(names(push.authorizationPolicies(sidecar("10.0.0.7", "other", { app: "api" })))).toEqual([]);
  });

  test("enforces the policy on the service's own inbound listener", () => {
    expect(filtersOf(buildListeners(push, webSidecar()))).toContain("envoy.filters.http.rbac");
    expect(filtersOf(buildListeners(push, sidecar("10.0.0.2", "app", { app: "web" }))))
      .not.toContain("envoy.filters.http.rbac");
  });

  test("a policy with targetRef is not a namespace-wide policy", () => {
    // Without honouring the reference, a policy without selector would look namespace-wide.
    expect(names(push.authorizationPolicies(sidecar("10.0.0.3", "app", {})))).toEqual([]);
  });
});

describe("validation of targetRef kinds", () => {
  const errors = (yaml: string) => {
    const [r] = parseConfig(yaml, "p.yaml").resources;
    return validateResource(r!).filter((d) => d.severity === "error").map((d) => `${d.field}: ${d.message}`);
  };

  test("Gateway (both groups) and ServiceEntry are accepted", () => {
    for (
      const ref of [
        "{ group: networking.istio.io, kind: Gateway, name: g }",
        "{ group: gateway.networking.k8s.io, kind: Gateway, name: g }",
        "{ group: networking.istio.io, kind: ServiceEntry, name: s }",
      ]
    ) {
      expect(errors(policy("AuthorizationPolicy", "p", "app", `  targetRef: ${ref}`, DENY_ALL))).toEqual([]);
      expect(errors(policy("RequestAuthentication", "p", "app", `  targetRefs: [${ref}]`, JWT))).toEqual([]);
    }
  });

  test("Service and GatewayClass are refused as not supported by meshd", () => {
    const svc = errors(
      policy("AuthorizationPolicy", "p", "app", "  targetRef: { kind: Service, name: s }", DENY_ALL),
    );
    expect(svc).toHaveLength(1);
    expect(svc[0]).toContain("spec.targetRef.kind: targetRef to a Service is not supported by meshd");
    const gc = errors(
      policy(
        "RequestAuthentication",
        "p",
        "app",
        "  targetRefs: [{ group: gateway.networking.k8s.io, kind: GatewayClass, name: istio-waypoint }]",
        JWT,
      ),
    );
    expect(gc).toHaveLength(1);
    expect(gc[0]).toContain("not supported by meshd");
  });
});
