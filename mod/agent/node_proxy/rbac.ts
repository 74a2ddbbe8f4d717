/**
 * Envoy network RBAC (`envoy.config.rbac.v3.RBAC`) evaluated over one L4 connection, as Envoy's
 * network RBAC filter does: configs run in order; a DENY config refuses when one of its policies
 * matches, an ALLOW config refuses when none matches, a LOG config marks the connection for audit
 * when one matches. A policy matches when one of its permissions and one of its principals do.
 * Principals: any, authenticated principal name (exact, prefix, suffix, contains, RE2 regex),
 * source_ip / direct_remote_ip / remote_ip CIDRs, and_ids, or_ids, not_id. Permissions: any,
 * destination_port, destination_port_range, destination_ip, and_rules, or_rules, not_rule.
 * Anything else (HTTP-only matchers, metadata, CEL conditions) does not match and is reported once
 * through `onUnknown`.
 *
 * @module
 */
import { BlockList, isIP } from "node:net";
import { RE2JS } from "@bufbuild/re2";
import type { CidrRange } from "#gen/envoy/config/core/v3/address_pb.ts";
import {
  type Permission,
  type Principal,
  type RBAC,
  RBAC_Action,
} from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import type { StringMatcher } from "#gen/envoy/type/matcher/v3/string_pb.ts";

/** What RBAC sees of a connection. */
export interface RbacConnection {
  /** The peer's SPIFFE identity (mTLS or tunnel); undefined for plaintext. */
  readonly principal?: string;
  /** The downstream address (the peer's source). */
  readonly sourceAddress: string;
  readonly destinationAddress: string;
  readonly destinationPort: number;
}

/** The verdict. */
export interface RbacDecision {
  readonly allowed: boolean;
  /** A LOG (AUDIT) policy matched. */
  readonly audit: boolean;
  /** Why it was refused: `deny POLICY` or `no allow policy matched`. */
  readonly reason?: string;
  /** The policy that decided (matched DENY or ALLOW). */
  readonly policy?: string;
}

/** Told the name of a matcher the evaluator does not know (treated as not matching). */
export type UnknownMatcher = (what: string) => void;

/** Evaluates `configs` in order for `conn`. Empty configs allow. Never throws. */
export function evaluateRbac(
  configs: readonly RBAC[],
  conn: RbacConnection,
  onUnknown: UnknownMatcher = () => {},
): RbacDecision {
  let audit = false;
  let allowPolicy: string | undefined;
  for (const config of configs) {
    const matched = Object.entries(config.policies).find(([, p]) =>
      p.condition === undefined
        ? p.permissions.some((x) => permissionMatches(x, conn, onUnknown)) &&
          p.principals.some((x) => principalMatches(x, conn, onUnknown))
        : (onUnknown("policy.condition"), false)
    )?.[0];
    switch (config.action) {
      case RBAC_Action.DENY:
        if (matched !== undefined) {
          return { allowed: false, audit, reason: `deny ${matched}`, policy: matched };
        }
        break;
      case RBAC_Action.ALLOW:
        if (matched === undefined) return { allowed: false, audit, reason: "no allow policy matched" };
        allowPolicy = matched;
        break;
      case RBAC_Action.LOG:
        if (matched !== undefined) audit = true;
        break;
      default:
        onUnknown(`action ${config.action}`);
    }
  }
  return { allowed: true, audit, ...(allowPolicy !== undefined ? { policy: allowPolicy } : {}) };
}

function principalMatches(p: Principal, c: RbacConnection, unknown: UnknownMatcher): boolean {
  const id = p.identifier;
  switch (id.case) {
    case "any":
      return id.value;
    case "andIds":
      return id.value.ids.every((x) => principalMatches(x, c, unknown));
    case "orIds":
      return id.value.ids.some((x) => principalMatches(x, c, unknown));
    case "notId":
      return !principalMatches(id.value, c, unknown);
    case "authenticated":
      if (c.principal === undefined) return false;
      return id.value.principalName === undefined ||
        stringMatches(id.value.principalName, c.principal, unknown);
    case "sourceIp":
    case "directRemoteIp":
    case "remoteIp":
      return cidrContains(id.value, c.sourceAddress);
    default:
      unknown(`principal ${id.case ?? "(empty)"}`);
      return false;
  }
}

function permissionMatches(p: Permission, c: RbacConnection, unknown: UnknownMatcher): boolean {
  const r = p.rule;
  switch (r.case) {
    case "any":
      return r.value;
    case "andRules":
      return r.value.rules.every((x) => permissionMatches(x, c, unknown));
    case "orRules":
      return r.value.rules.some((x) => permissionMatches(x, c, unknown));
    case "notRule":
      return !permissionMatches(r.value, c, unknown);
    case "destinationPort":
      return r.value === c.destinationPort;
    case "destinationPortRange":
      return c.destinationPort >= r.value.start && c.destinationPort < r.value.end;
    case "destinationIp":
      return cidrContains(r.value, c.destinationAddress);
    default:
      unknown(`permission ${r.case ?? "(empty)"}`);
      return false;
  }
}

const regexCache = new Map<string, RE2JS | null>();

function regexMatches(pattern: string, value: string, unknown: UnknownMatcher): boolean {
  let re = regexCache.get(pattern);
  if (re === undefined) {
    try {
      re = RE2JS.compile(pattern);
    } catch {
      unknown(`invalid RE2 regex ${JSON.stringify(pattern)}`);
      re = null;
    }
    if (regexCache.size > 1000) regexCache.clear();
    regexCache.set(pattern, re);
  }
  return re !== null && re.matches(value);
}

/** Envoy's StringMatcher over `value`. */
export function stringMatches(m: StringMatcher, value: string, unknown: UnknownMatcher = () => {}): boolean {
  const v = m.ignoreCase ? value.toLowerCase() : value;
  const p = m.matchPattern;
  const want = (s: string) => (m.ignoreCase ? s.toLowerCase() : s);
  switch (p.case) {
    case "exact":
      return v === want(p.value);
    case "prefix":
      return v.startsWith(want(p.value));
    case "suffix":
      return v.endsWith(want(p.value));
    case "contains":
      return v.includes(want(p.value));
    case "safeRegex":
      return regexMatches(p.value.regex, value, unknown);
    default:
      unknown(`string matcher ${p.case ?? "(empty)"}`);
      return false;
  }
}

const cidrCache = new WeakMap<CidrRange, BlockList | null>();

/** Whether `address` is inside `range` (a prefix without length is the single address). */
export function cidrContains(range: CidrRange, address: string): boolean {
  let list = cidrCache.get(range);
  if (list === undefined) {
    const family = isIP(range.addressPrefix);
    if (family === 0) {
      list = null;
    } else {
      list = new BlockList();
      const type = family === 4 ? "ipv4" : "ipv6";
      list.addSubnet(range.addressPrefix, range.prefixLen ?? (family === 4 ? 32 : 128), type);
    }
    cidrCache.set(range, list);
  }
  if (list === null) return false;
  const plain = address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  const family = isIP(plain);
  if (family === 0) return false;
  return list.check(plain, family === 4 ? "ipv4" : "ipv6");
}
