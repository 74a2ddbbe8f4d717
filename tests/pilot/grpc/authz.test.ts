/**
 * AuthorizationPolicies on proxyless gRPC servers: CUSTOM rules enforced as DENY (gRPC has no
 * ext_authz; they must not fail open), AUDIT left out (gRPC RBAC has no LOG action), one filter
 * name per action (gRPC refuses duplicates), and both gaps listed by grpcUnsupported().
 */
import { describe, expect, test } from "bun:test";
import { toJson } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { RBACSchema as HttpRbacSchema } from "#gen/envoy/extensions/filters/http/rbac/v3/rbac_pb.ts";
import type { HttpFilter } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { BAD_CUSTOM_SUFFIX } from "../../../mod/pilot/translate/authz.ts";
import { grpcUnsupported } from "../../../mod/pilot/translate/grpc/mod.ts";
import { GRPC_RBAC_FILTER_NAMES, serverRbacFilters } from "../../../mod/pilot/translate/grpc/tls.ts";
import { pushFrom } from "../_push.ts";
import { grpcProxy, MESH } from "./_fixture.ts";

const policy = (name: string, action: string, extra = "") => `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: test }
spec:
  selector: { matchLabels: { app: echo } }
  action: ${action}
${extra}`;

const CUSTOM = policy(
  "ext",
  "CUSTOM",
  `  provider: { name: authz }
  rules: [{ to: [{ operation: { paths: ["/echo.Echo/Admin"] } }] }]`,
);
const DENY = policy(
  "deny",
  "DENY",
  '  rules: [{ when: [{ key: "request.headers[x-deny]", values: ["1"] }] }]',
);
const AUDIT = policy("audit", "AUDIT", "  rules: [{}]");
const ALLOW = policy("allow", "ALLOW", "  rules: [{}]");

/** The server of echo-v1 (10.0.0.1, app=echo). */
const server = () => grpcProxy("test", "10.0.0.1", { app: "echo", version: "v1" });

const rbacJson = (f: HttpFilter) =>
  f.configType.case === "typedConfig"
    ? toJson(HttpRbacSchema, anyUnpack(f.configType.value, HttpRbacSchema)!)
    : undefined;

describe("gRPC server authorization", () => {
  test("CUSTOM rules are denied first, then DENY and ALLOW, each filter named apart; AUDIT is left out", () => {
    const filters = serverRbacFilters(pushFrom(...MESH, CUSTOM, DENY, AUDIT, ALLOW), server());
    expect(filters.map((f) => f.name)).toEqual([
      GRPC_RBAC_FILTER_NAMES.CUSTOM,
      GRPC_RBAC_FILTER_NAMES.DENY,
      GRPC_RBAC_FILTER_NAMES.ALLOW,
    ]);
    expect(new Set(filters.map((f) => f.name)).size).toBe(filters.length);
    expect(rbacJson(filters[0]!)).toEqual({
      rules: {
        action: "DENY",
        policies: {
          [`istio-ext-authz-authz-ns[test]-policy[ext]-rule[0]${BAD_CUSTOM_SUFFIX}`]: {
            permissions: [{ urlPath: { path: { exact: "/echo.Echo/Admin" } } }],
            principals: [{ any: true }],
          },
        },
      },
    });
  });

  test("without CUSTOM policies the filters are the other actions' only", () => {
    const filters = serverRbacFilters(pushFrom(...MESH, ALLOW), server());
    expect(filters.map((f) => f.name)).toEqual(["envoy.filters.http.rbac"]);
    expect(serverRbacFilters(pushFrom(...MESH), server())).toEqual([]);
  });

  test("grpcUnsupported() names the CUSTOM and AUDIT policies of a server, not of a client", () => {
    const push = pushFrom(...MESH, CUSTOM, AUDIT, ALLOW);
    const gaps = grpcUnsupported(push, server()).filter((g) => g.resource === "server listeners");
    expect(gaps.map((g) => g.field)).toEqual([
      "AuthorizationPolicy test/audit action: AUDIT",
      "AuthorizationPolicy test/ext action: CUSTOM (ext_authz)",
    ]);
    expect(gaps[1]!.reason).toContain('denied instead of asking provider "authz"');
    const client = grpcProxy("test", "10.9.9.9", { app: "echo" });
    expect(grpcUnsupported(push, client).filter((g) => g.resource === "server listeners")).toEqual([]);
  });
});
