/**
 * Routes of a VirtualService that can never apply. Proxies try routes in order and take the
 * first whose match holds, so a route after a catch-all (no match, or a match that holds for
 * every request such as uri prefix "/") is dead, and a match block that repeats an earlier one,
 * or that an earlier one overlaps (takes every request it would take: uri prefix "/api" before
 * "/api/v2", with no other condition the later one lacks), never decides anything. A route all
 * of whose match blocks are repeated or overlapped is dead; a repeated block is reported as well
 * (as istioctl reports both for a duplicate route).
 *
 * @module
 */

import type {
  HTTPMatchRequest,
  L4MatchAttributes,
  StringMatch,
  TLSMatchAttributes,
  VirtualServiceSpec,
} from "../../api/kinds/networking.ts";
import { hostCovers } from "../../api/mod.ts";
import type { Resource } from "../../api/resource.ts";
import { defineAnalyzer } from "./_define.ts";

/** A finding of the reachability walk, before it becomes a diagnostic. */
interface Finding {
  readonly field: string;
  readonly message: string;
}

type Match = HTTPMatchRequest | L4MatchAttributes | TLSMatchAttributes;

/** Match fields that do not restrict which requests a match takes. */
const UNRESTRICTING_FIELDS = new Set(["name", "ignoreUriCase", "statPrefix"]);

/** Match fields that only name a match; two matches differing only in these are the same. */
const NAMING_FIELDS = new Set(["name", "statPrefix"]);

const MATCH_ALL_REGEXES = new Set([".*", "^.*$", "/.*", "^/.*$", ".+", "^.+$"]);

/** True when an HTTP, TCP or TLS match block holds for every request. */
function matchesEverything(m: Match): boolean {
  for (const [key, value] of Object.entries(m)) {
    if (UNRESTRICTING_FIELDS.has(key) || value === undefined) continue;
    if (key === "uri") {
      const uri = value as NonNullable<HTTPMatchRequest["uri"]>;
      if (uri.prefix === "/" || (uri.regex !== undefined && MATCH_ALL_REGEXES.has(uri.regex))) continue;
      return false;
    }
    if (key === "sniHosts" && Array.isArray(value) && value.includes("*")) continue;
    return false;
  }
  return true;
}

/** JSON with object keys sorted, so equal match blocks compare equal whatever their key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** True when every string `later` matches, `earlier` matches too. */
function stringCovers(earlier: StringMatch, later: StringMatch, fold = false): boolean {
  const f = (v: string) => (fold ? v.toLowerCase() : v);
  if (earlier.prefix !== undefined) {
    const value = later.exact ?? later.prefix;
    return value !== undefined && f(value).startsWith(f(earlier.prefix));
  }
  if (earlier.exact !== undefined) return later.exact !== undefined && f(later.exact) === f(earlier.exact);
  return canonical(earlier) === canonical(later);
}

type StringMap = Readonly<Record<string, StringMatch>>;

/** True when `later` requires every entry of `earlier` in a form that implies it. */
function mapCovers(earlier: StringMap, later: StringMap | undefined, equalOnly = false): boolean {
  return Object.entries(earlier).every(([k, m]) => {
    const l = later?.[k];
    if (l === undefined) return false;
    return equalOnly ? canonical(m) === canonical(l) : stringCovers(m, l);
  });
}

/** True when every entry of `earlier` is in `later` (a list `later` narrows to a part of). */
function listCovers(
  earlier: readonly string[],
  later: readonly string[] | undefined,
  same: (e: string, l: string) => boolean = (e, l) => e === l,
): boolean {
  return later !== undefined && later.length > 0 && later.every((l) => earlier.some((e) => same(e, l)));
}

/**
 * True when match block `earlier` holds for every request `later` holds for, so `later` never
 * decides anything after it: each condition of `earlier` is implied by one of `later`.
 */
export function matchCovers(earlier: Match, later: Match): boolean {
  const e = earlier as Record<string, unknown>;
  const l = later as Record<string, unknown>;
  for (const [key, value] of Object.entries(e)) {
    if (UNRESTRICTING_FIELDS.has(key) || value === undefined) continue;
    const other = l[key];
    switch (key) {
      case "uri": {
        if (other === undefined) return false;
        const fold = e.ignoreUriCase === true;
        if (l.ignoreUriCase === true && !fold) return false;
        if (!stringCovers(value as StringMatch, other as StringMatch, fold)) return false;
        break;
      }
      case "scheme":
      case "method":
      case "authority":
        if (other === undefined || !stringCovers(value as StringMatch, other as StringMatch)) return false;
        break;
      case "headers":
      case "queryParams":
        if (!mapCovers(value as StringMap, other as StringMap | undefined)) return false;
        break;
      case "withoutHeaders":
        if (!mapCovers(value as StringMap, other as StringMap | undefined, true)) return false;
        break;
      case "sourceLabels": {
        const labels = (other ?? {}) as Readonly<Record<string, string>>;
        if (!Object.entries(value as Record<string, string>).every(([k, v]) => labels[k] === v)) return false;
        break;
      }
      case "gateways":
      case "destinationSubnets":
        if (!listCovers(value as string[], other as string[] | undefined)) return false;
        break;
      case "sniHosts":
        if (!listCovers(value as string[], other as string[] | undefined, hostCovers)) return false;
        break;
      default:
        if (other === undefined || canonical(value) !== canonical(other)) return false;
    }
  }
  return true;
}

function describe(section: string, i: number, rule: { readonly name?: string }): string {
  return rule.name ? `spec.${section}[${i}] ("${rule.name}")` : `spec.${section}[${i}]`;
}

/** Walks one section (http, tls or tcp) of a VirtualService. */
function walkSection(
  section: string,
  rules: readonly { readonly name?: string; readonly match?: readonly Match[] }[],
  unreachable: Finding[],
  ineffective: Finding[],
): void {
  let catchAll: { index: number; why: string } | undefined;
  const seen = new Map<string, string>();
  const tried: { match: Match; field: string }[] = [];
  rules.forEach((rule, i) => {
    const at = `spec.${section}[${i}]`;
    if (catchAll) {
      unreachable.push({
        field: at,
        message: `${describe(section, i, rule)} is never used: ${
          describe(section, catchAll.index, rules[catchAll.index]!)
        } before it ${catchAll.why}`,
      });
      return;
    }
    const matches = rule.match ?? [];
    if (matches.length === 0) {
      catchAll = { index: i, why: "has no match and takes every request" };
      return;
    }
    const duplicates: { field: string; earlier: string; overlap: boolean }[] = [];
    matches.forEach((m, j) => {
      const key = canonical(Object.fromEntries(Object.entries(m).filter(([k]) => !NAMING_FIELDS.has(k))));
      const field = `${at}.match[${j}]`;
      const earlier = seen.get(key);
      if (earlier !== undefined) {
        duplicates.push({ field, earlier, overlap: false });
        return;
      }
      const covering = tried.find((t) => matchCovers(t.match, m));
      if (covering) duplicates.push({ field, earlier: covering.field, overlap: true });
      seen.set(key, field);
      tried.push({ match: m, field });
    });
    const dead = duplicates.length === matches.length;
    if (dead) {
      const overlap = duplicates.some((d) => d.overlap);
      unreachable.push({
        field: at,
        message: `${describe(section, i, rule)} is never used: every match block ${
          overlap ? "repeats or is overlapped by" : "repeats"
        } an earlier one (${duplicates.map((d) => d.earlier).join(", ")})`,
      });
    }
    // A repeated block is reported at the block even in a dead route (the route finding names
    // the route); an overlapped block in a dead route is left to the route finding.
    for (const d of duplicates) {
      if (dead && d.overlap) continue;
      ineffective.push({
        field: d.field,
        message: d.overlap
          ? `${d.field} is never used: ${d.earlier}, which is tried first, takes every request it matches`
          : `${d.field} is never used: it repeats ${d.earlier}, which is tried first`,
      });
    }
    const all = matches.findIndex(matchesEverything);
    if (all >= 0) catchAll = { index: i, why: `matches every request (${at}.match[${all}])` };
  });
}

/** The unreachable routes and ineffective match blocks of a VirtualService. */
export function routeReachability(
  vs: Resource<VirtualServiceSpec>,
): { unreachable: Finding[]; ineffective: Finding[] } {
  const unreachable: Finding[] = [];
  const ineffective: Finding[] = [];
  walkSection("http", vs.spec.http ?? [], unreachable, ineffective);
  walkSection("tls", vs.spec.tls ?? [], unreachable, ineffective);
  walkSection("tcp", vs.spec.tcp ?? [], unreachable, ineffective);
  return { unreachable, ineffective };
}

/** MSH0130: no route sits behind a catch-all or repeats only earlier matches. */
export const unreachableRoutes = defineAnalyzer({
  code: "MSH0130",
  istioCode: "IST0130",
  name: "VirtualServiceUnreachableRule",
  severity: "warning",
  description: "A VirtualService route can never apply: an earlier route takes every request, " +
    "or all its matches repeat or are overlapped by earlier ones.",
}, (ctx, report) => {
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    for (const f of routeReachability(vs).unreachable) report(vs, f.field, f.message);
  }
});

/** MSH0131: no match block repeats an earlier one. */
export const ineffectiveMatches = defineAnalyzer({
  code: "MSH0131",
  istioCode: "IST0131",
  name: "VirtualServiceIneffectiveMatch",
  severity: "info",
  description:
    "A VirtualService match block repeats an earlier one, or an earlier one overlaps it, so it never decides anything.",
}, (ctx, report) => {
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    for (const f of routeReachability(vs).ineffective) report(vs, f.field, f.message);
  }
});
