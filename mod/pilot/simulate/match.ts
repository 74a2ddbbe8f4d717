/**
 * Envoy's matching rules, restated for simulation: filter chain selection, virtual host
 * selection by :authority, and route, header, query parameter, dynamic metadata (JWT claims)
 * and string matching. Regular expressions use RE2 (through CEL's `matches`, the engine galley
 * validates regexes with), so a pattern behaves here as it does in Envoy.
 *
 * @module
 */
import { celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import type { FilterChain } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import type {
  HeaderMatcher,
  QueryParameterMatcher,
  RouteMatch,
  VirtualHost,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import type { StringMatcher } from "#gen/envoy/type/matcher/v3/string_pb.ts";
import type { MetadataMatcher } from "#gen/envoy/type/matcher/v3/metadata_pb.ts";
import type { ValueMatcher } from "#gen/envoy/type/matcher/v3/value_pb.ts";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

let re2Program: ((bindings: { s: string; re: string }) => unknown) | undefined;

/** Whether `value` matches the RE2 `pattern` in full (Envoy's safe_regex semantics). */
export function re2FullMatch(pattern: string, value: string): boolean {
  re2Program ??= plan(celEnv(), parse("s.matches(re)")) as (bindings: { s: string; re: string }) => unknown;
  const result = re2Program({ s: value, re: `^(?:${pattern})$` });
  if (isCelError(result)) throw new Error(`invalid RE2 regex ${JSON.stringify(pattern)}: ${result.message}`);
  return result === true;
}

/** Whether a string matches an Envoy StringMatcher. */
export function stringMatches(m: StringMatcher, value: string): boolean {
  const fold = (s: string) => (m.ignoreCase ? s.toLowerCase() : s);
  const p = m.matchPattern;
  switch (p.case) {
    case "exact":
      return fold(value) === fold(p.value);
    case "prefix":
      return fold(value).startsWith(fold(p.value));
    case "suffix":
      return fold(value).endsWith(fold(p.value));
    case "contains":
      return fold(value).includes(fold(p.value));
    case "safeRegex":
      return re2FullMatch(p.value.regex, value);
    default:
      return false;
  }
}

/** The request as route matching sees it. */
export interface HttpRequestView {
  /** Lower-case header names, including :authority, :method, :path and :scheme. */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * Dynamic metadata the HTTP filters before the router set, by filter namespace (e.g. the
   * JWT filter's verified payloads under `envoy.filters.http.jwt_authn`, keyed by issuer).
   */
  readonly dynamicMetadata?: Readonly<Record<string, JsonObject>>;
}

/**
 * Envoy's ValueMatcher on a metadata value (undefined: absent): `present_match` compares
 * presence; `null`, `double` (exact or [start, end)), `string` and `bool` matchers need a value
 * of their kind; `list_match` (one_of) needs a list with a matching element; `or_match` any.
 */
export function valueMatches(m: ValueMatcher, value: JsonValue | undefined): boolean {
  const p = m.matchPattern;
  switch (p.case) {
    case "presentMatch":
      return (value !== undefined) === p.value;
    case "nullMatch":
      return value === null;
    case "doubleMatch": {
      if (typeof value !== "number") return false;
      const d = p.value.matchPattern;
      if (d.case === "exact") return value === d.value;
      if (d.case === "range") return value >= d.value.start && value < d.value.end;
      return false;
    }
    case "stringMatch":
      return typeof value === "string" && stringMatches(p.value, value);
    case "boolMatch":
      return value === p.value;
    case "listMatch": {
      const one = p.value.matchPattern;
      return Array.isArray(value) && one.case === "oneOf" && value.some((v) => valueMatches(one.value, v));
    }
    case "orMatch":
      return p.value.valueMatchers.some((v) => valueMatches(v, value));
    default:
      return false;
  }
}

/**
 * Envoy's MetadataMatcher: the value at `path` (keys into nested objects) in the filter's
 * namespace, matched by its value matcher (an absent value matches only `present_match:
 * false`), the result flipped by `invert`.
 */
export function metadataMatches(m: MetadataMatcher, req: HttpRequestView): boolean {
  let value: JsonValue | undefined = req.dynamicMetadata?.[m.filter];
  for (const seg of m.path) {
    if (seg.segment.case !== "key") return false;
    value = value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as JsonObject)[seg.segment.value]
      : undefined;
  }
  const ok = m.value ? valueMatches(m.value, value) : false;
  return ok !== m.invert;
}

/**
 * Envoy's header matching: an absent header fails every matcher (whatever `invert_match`
 * says) except an inverted presence match, unless `treat_missing_header_as_empty` makes it "".
 */
export function headerMatches(m: HeaderMatcher, req: HttpRequestView): boolean {
  const raw = req.headers[m.name.toLowerCase()];
  const spec = m.headerMatchSpecifier;
  if (spec.case === "presentMatch") return (raw !== undefined) === spec.value !== m.invertMatch;
  if (raw === undefined && !m.treatMissingHeaderAsEmpty) return false;
  const value = raw ?? "";
  let ok: boolean;
  switch (spec.case) {
    case "stringMatch":
      ok = stringMatches(spec.value, value);
      break;
    case "exactMatch":
      ok = value === spec.value;
      break;
    case "prefixMatch":
      ok = value.startsWith(spec.value);
      break;
    case "suffixMatch":
      ok = value.endsWith(spec.value);
      break;
    case "containsMatch":
      ok = value.includes(spec.value);
      break;
    case "safeRegexMatch":
      ok = re2FullMatch(spec.value.regex, value);
      break;
    case "rangeMatch": {
      const n = /^-?\d+$/.test(value) ? BigInt(value) : undefined;
      ok = n !== undefined && n >= spec.value.start && n < spec.value.end;
      break;
    }
    default:
      ok = true;
  }
  return ok !== m.invertMatch;
}

/** Query parameters of a path ("/a?x=1&y" → x=1, y=""); the first occurrence of a name wins. */
export function queryParameters(path: string): Map<string, string> {
  const out = new Map<string, string>();
  const q = path.indexOf("?");
  if (q < 0) return out;
  for (const part of path.slice(q + 1).split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
    if (!out.has(name)) out.set(name, eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1)));
  }
  return out;
}

function queryMatches(m: QueryParameterMatcher, params: Map<string, string>): boolean {
  const value = params.get(m.name);
  const spec = m.queryParameterMatchSpecifier;
  if (spec.case === "presentMatch") return value !== undefined;
  if (value === undefined) return false;
  return spec.case === "stringMatch" ? stringMatches(spec.value, value) : true;
}

/**
 * Whether a request matches a RouteMatch: the path rule (`prefix` against the whole :path,
 * `path` and `safe_regex` against it without the query string; `case_sensitive: false` folds
 * case for prefix and path), then every header, query parameter and dynamic metadata matcher.
 */
export function routeMatches(m: RouteMatch, req: HttpRequestView): boolean {
  const fullPath = req.headers[":path"] ?? "/";
  const q = fullPath.indexOf("?");
  const path = q < 0 ? fullPath : fullPath.slice(0, q);
  const insensitive = m.caseSensitive === false;
  const fold = (s: string) => (insensitive ? s.toLowerCase() : s);
  const ps = m.pathSpecifier;
  let ok: boolean;
  switch (ps.case) {
    case "prefix":
      ok = fold(fullPath).startsWith(fold(ps.value));
      break;
    case "path":
      ok = fold(path) === fold(ps.value);
      break;
    case "safeRegex":
      ok = re2FullMatch(ps.value.regex, path);
      break;
    case "pathSeparatedPrefix": {
      const p = fold(path);
      const want = fold(ps.value);
      ok = p === want || p.startsWith(want.endsWith("/") ? want : `${want}/`);
      break;
    }
    default:
      ok = false;
  }
  if (!ok) return false;
  if (!m.headers.every((h) => headerMatches(h, req))) return false;
  const params = queryParameters(fullPath);
  if (!m.queryParameters.every((p) => queryMatches(p, params))) return false;
  return m.dynamicMetadata.every((d) => metadataMatches(d, req));
}

/**
 * The virtual host Envoy picks for an authority (case-insensitively): an exact domain, else
 * the longest suffix wildcard ("*.example.com", "*-bar.example.com"), else the longest prefix
 * wildcard ("example.*"), else "*".
 */
export function selectVirtualHost(
  vhosts: readonly VirtualHost[],
  authority: string,
): VirtualHost | undefined {
  const host = authority.toLowerCase();
  let suffix: { vh: VirtualHost; len: number } | undefined;
  let prefix: { vh: VirtualHost; len: number } | undefined;
  let any: VirtualHost | undefined;
  for (const vh of vhosts) {
    for (const raw of vh.domains) {
      const d = raw.toLowerCase();
      if (d === "*") {
        any ??= vh;
      } else if (d.startsWith("*")) {
        const rest = d.slice(1);
        if (host.length > rest.length && host.endsWith(rest) && (!suffix || rest.length > suffix.len)) {
          suffix = { vh, len: rest.length };
        }
      } else if (d.endsWith("*")) {
        const rest = d.slice(0, -1);
        if (host.length > rest.length && host.startsWith(rest) && (!prefix || rest.length > prefix.len)) {
          prefix = { vh, len: rest.length };
        }
      } else if (d === host) {
        return vh;
      }
    }
  }
  return suffix?.vh ?? prefix?.vh ?? any;
}

/** What filter chain matching sees of a connection. */
export interface ConnectionView {
  readonly destinationPort: number;
  /** Destination IP, when known. */
  readonly destinationIp?: string;
  /** SNI of the TLS client hello; absent for plaintext. */
  readonly serverName?: string;
}

function ipv4ToInt(ip: string): number | undefined {
  const parts = ip.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

/** Whether an IPv4 address lies in `prefix/len`. */
export function inCidr(ip: string, prefix: string, len: number): boolean {
  const a = ipv4ToInt(ip);
  const b = ipv4ToInt(prefix);
  if (a === undefined || b === undefined) return ip === prefix;
  if (len === 0) return true;
  const mask = len >= 32 ? 0xffffffff : (0xffffffff << (32 - len)) >>> 0;
  return ((a & mask) >>> 0) === ((b & mask) >>> 0);
}

function narrow<T>(chains: T[], score: (c: T) => number | undefined): T[] {
  // Envoy's rule at each step: the most specific criterion that matches wins; chains without
  // the criterion are the fallback; chains whose criterion does not match are out.
  const scored = chains.map((c) => ({ c, s: score(c) }));
  const matching = scored.filter((x) => x.s !== undefined && x.s >= 0);
  if (matching.length > 0) {
    const best = Math.max(...matching.map((x) => x.s!));
    return matching.filter((x) => x.s === best).map((x) => x.c);
  }
  return scored.filter((x) => x.s === undefined).map((x) => x.c);
}

function serverNameScore(names: readonly string[], sni: string | undefined): number | undefined {
  if (names.length === 0) return undefined;
  if (sni === undefined) return -1;
  let best = -1;
  for (const n of names) {
    if (n === sni) best = Math.max(best, 1000);
    else if (n.startsWith("*.") && sni.endsWith(n.slice(1))) best = Math.max(best, n.length);
  }
  return best;
}

/**
 * The filter chain Envoy picks for a connection: by destination port, then destination IP
 * (longest prefix), then server name (exact before the longest wildcard), then transport
 * protocol ("tls" with an SNI, else "raw_buffer"); each step keeps the most specific match, or
 * the chains that do not use the criterion. Falls back to the default chain.
 */
export function selectFilterChain(
  chains: readonly FilterChain[],
  conn: ConnectionView,
  defaultChain?: FilterChain,
): FilterChain | undefined {
  let c = [...chains];
  c = narrow(c, (x) => {
    const p = x.filterChainMatch?.destinationPort;
    return p === undefined ? undefined : p === conn.destinationPort ? 0 : -1;
  });
  c = narrow(c, (x) => {
    const ranges = x.filterChainMatch?.prefixRanges ?? [];
    if (ranges.length === 0) return undefined;
    if (!conn.destinationIp) return -1;
    const hits = ranges.filter((r) => inCidr(conn.destinationIp!, r.addressPrefix, r.prefixLen ?? 32));
    return hits.length === 0 ? -1 : Math.max(...hits.map((r) => r.prefixLen ?? 32));
  });
  c = narrow(c, (x) => serverNameScore(x.filterChainMatch?.serverNames ?? [], conn.serverName));
  const transport = conn.serverName !== undefined ? "tls" : "raw_buffer";
  c = narrow(c, (x) => {
    const t = x.filterChainMatch?.transportProtocol ?? "";
    return t === "" ? undefined : t === transport ? 0 : -1;
  });
  return c[0] ?? defaultChain;
}
