/**
 * Network RBAC over one connection: DENY before ALLOW, ALLOW refusing what no policy matches,
 * LOG marking audit, the principal and permission matchers Istio's L4 policies use, and matchers
 * the node proxy does not know treated as not matching (reported, never thrown).
 */
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { PermissionSchema, PrincipalSchema } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { evaluateRbac, type RbacConnection } from "../../../mod/agent/node_proxy/rbac.ts";
import {
  ANY_PERMISSION,
  ANY_PRINCIPAL,
  fromIpBlock,
  fromNamespace,
  fromPrincipal,
  rbac,
  toPort,
} from "./_rbac.ts";

const FOO = "spiffe://cluster.local/ns/foo/sa/client";
const BAR = "spiffe://cluster.local/ns/bar/sa/client";
const conn = (principal: string | undefined, port = 8080, source = "198.18.0.5"): RbacConnection => ({
  ...(principal ? { principal } : {}),
  sourceAddress: source,
  destinationAddress: "198.18.0.2",
  destinationPort: port,
});

describe("evaluateRbac()", () => {
  test("no configs allow everything", () => {
    expect(evaluateRbac([], conn(undefined))).toEqual({ allowed: true, audit: false });
  });

  test("ALLOW by namespace admits that namespace and refuses others and plaintext", () => {
    const cfg = [rbac("ALLOW", "ns[foo]", [fromNamespace("foo")])];
    expect(evaluateRbac(cfg, conn(FOO))).toMatchObject({ allowed: true, policy: "ns[foo]" });
    expect(evaluateRbac(cfg, conn(BAR))).toMatchObject({ allowed: false, reason: "no allow policy matched" });
    expect(evaluateRbac(cfg, conn(undefined)).allowed).toBe(false);
  });

  test("DENY by principal refuses it before any ALLOW", () => {
    const cfg = [rbac("DENY", "deny-foo", [fromPrincipal(FOO)]), rbac("ALLOW", "all", [ANY_PRINCIPAL])];
    expect(evaluateRbac(cfg, conn(FOO))).toMatchObject({ allowed: false, reason: "deny deny-foo" });
    expect(evaluateRbac(cfg, conn(BAR)).allowed).toBe(true);
  });

  test("LOG marks audit without deciding", () => {
    const cfg = [rbac("LOG", "audit-8080", [ANY_PRINCIPAL], [toPort(8080)])];
    expect(evaluateRbac(cfg, conn(FOO, 8080))).toEqual({ allowed: true, audit: true });
    expect(evaluateRbac(cfg, conn(FOO, 9090))).toEqual({ allowed: true, audit: false });
  });

  test("ports, port ranges, ipBlocks and the set operators", () => {
    const range = create(PermissionSchema, {
      rule: { case: "destinationPortRange", value: { start: 9000, end: 9100 } },
    });
    const notPort = create(PermissionSchema, { rule: { case: "notRule", value: toPort(9050) } });
    const both = create(PermissionSchema, { rule: { case: "andRules", value: { rules: [range, notPort] } } });
    const cfg = [rbac("ALLOW", "p", [fromIpBlock("198.18.0.0", 24)], [both])];
    expect(evaluateRbac(cfg, conn(undefined, 9000)).allowed).toBe(true);
    expect(evaluateRbac(cfg, conn(undefined, 9050)).allowed).toBe(false);
    expect(evaluateRbac(cfg, conn(undefined, 9100)).allowed).toBe(false);
    expect(evaluateRbac(cfg, conn(undefined, 9000, "198.18.1.5")).allowed).toBe(false);
    expect(evaluateRbac(cfg, conn(undefined, 9000, "::ffff:198.18.0.9")).allowed).toBe(true);
    const notFoo = create(PrincipalSchema, { identifier: { case: "notId", value: fromNamespace("foo") } });
    const either = create(PrincipalSchema, {
      identifier: { case: "orIds", value: { ids: [fromPrincipal(FOO), notFoo] } },
    });
    expect(evaluateRbac([rbac("ALLOW", "x", [either])], conn(BAR)).allowed).toBe(true);
    expect(evaluateRbac([rbac("ALLOW", "x", [notFoo])], conn(FOO)).allowed).toBe(false);
  });

  test("matchers it does not know never match and are reported", () => {
    const unknown: string[] = [];
    const header = create(PrincipalSchema, { identifier: { case: "header", value: { name: "x-user" } } });
    const sni = create(PermissionSchema, { rule: { case: "requestedServerName", value: {} } });
    const cfg = [rbac("ALLOW", "http-only", [header]), rbac("DENY", "sni", [ANY_PRINCIPAL], [sni])];
    expect(evaluateRbac(cfg, conn(FOO), (w) => unknown.push(w)).allowed).toBe(false);
    expect(unknown).toContain("principal header");
    expect(evaluateRbac([cfg[1]!], conn(FOO), (w) => unknown.push(w)).allowed).toBe(true);
    expect(unknown).toContain("permission requestedServerName");
    const badRegex = create(PrincipalSchema, {
      identifier: {
        case: "authenticated",
        value: { principalName: { matchPattern: { case: "safeRegex", value: { regex: "(" } } } },
      },
    });
    expect(
      evaluateRbac([rbac("ALLOW", "r", [badRegex], [ANY_PERMISSION])], conn(FOO), (w) => unknown.push(w))
        .allowed,
    )
      .toBe(false);
    expect(unknown.some((u) => u.startsWith("invalid RE2 regex"))).toBe(true);
  });
});
