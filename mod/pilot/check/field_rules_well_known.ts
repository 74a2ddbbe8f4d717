/**
 * The well-known string formats of protoc-gen-validate (`validate.rules.string.hostname`,
 * `ip`, `ipv4`, `ipv6`, `address`, `uri`, `uri_ref`, `uuid`, `email`, `well_known_regex`):
 * each a pure predicate that answers with the reason a value fails, or undefined.
 *
 * Envoy runs the C++ validators protoc-gen-validate generates; these follow the rules as
 * protoc-gen-validate documents them. Where the C++ and Go validators are known to differ, the
 * C++ behaviour (what Envoy does) is taken: `ipv4` is a dotted quad only (inet_pton), not an
 * IPv4-mapped IPv6 address. Unsure: the C++ validator may leave `uri`/`uri_ref` unenforced;
 * they are checked here as the Go validator does (an absolute URI; a parseable reference), which
 * can only be stricter than Envoy.
 *
 * @module
 */

/** Why `s` is not a hostname (RFC 1123 labels, at most 253 characters), or undefined. */
export function hostnameProblem(s: string): string | undefined {
  if (s.length > 253) return "hostname cannot exceed 253 characters";
  const trimmed = s.endsWith(".") ? s.slice(0, -1) : s;
  for (const part of trimmed.toLowerCase().split(".")) {
    if (part.length === 0 || part.length > 63) {
      return "hostname part must be non-empty and cannot exceed 63 characters";
    }
    if (part.startsWith("-")) return "hostname parts cannot begin with hyphens";
    if (part.endsWith("-")) return "hostname parts cannot end with hyphens";
    if (!/^[a-z0-9-]+$/.test(part)) {
      return `hostname parts can only contain alphanumeric characters or hyphens, got ${
        JSON.stringify(part)
      }`;
    }
  }
  return undefined;
}

/** Whether `s` is an IPv4 address in dotted-quad form (no leading zeros, as inet_pton). */
export function isIpv4(s: string): boolean {
  const parts = s.split(".");
  if (parts.length !== 4) return false;
  return parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

/** Whether `s` is an IPv6 address (RFC 4291 text form, optional trailing IPv4, no zone). */
export function isIpv6(s: string): boolean {
  const halves = s.split("::");
  if (halves.length > 2) return false;
  const groups = (h: string) => (h === "" ? [] : h.split(":"));
  const head = groups(halves[0] ?? "");
  const tail = halves.length === 2 ? groups(halves[1] ?? "") : [];
  const all = [...head, ...tail];
  let count = 0;
  for (let i = 0; i < all.length; i++) {
    const g = all[i]!;
    if (i === all.length - 1 && g.includes(".")) {
      if (!isIpv4(g)) return false;
      count += 2;
    } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
      count += 1;
    } else {
      return false;
    }
  }
  return halves.length === 2 ? count <= 7 : count === 8;
}

/** Whether `s` is an IPv4 or IPv6 address. */
export function isIp(s: string): boolean {
  return isIpv4(s) || isIpv6(s);
}

/** Why `s` is not a URI reference (no spaces, no control characters, valid %-escapes), or undefined. */
export function uriRefProblem(s: string): string | undefined {
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x20\x7f]/.test(s)) return "value must be a valid URI: contains a space or control character";
  if (/%(?![0-9a-fA-F]{2})/.test(s)) return "value must be a valid URI: invalid %-escape";
  return undefined;
}

/** Why `s` is not an absolute URI (a scheme, then a valid reference), or undefined. */
export function uriProblem(s: string): string | undefined {
  const ref = uriRefProblem(s);
  if (ref) return ref;
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:/.test(s)) return "value must be absolute";
  return undefined;
}

/** Whether `s` is a UUID in its 8-4-4-4-12 hexadecimal text form. */
export function isUuid(s: string): boolean {
  return /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(s);
}

/** Why `s` is not an e-mail address (local@host, host a hostname), or undefined. */
export function emailProblem(s: string): string | undefined {
  const at = s.lastIndexOf("@");
  if (at <= 0 || s.length > 254) return "value must be a valid email address";
  if (at > 64) return "email address local phrase cannot exceed 64 characters";
  return hostnameProblem(s.slice(at + 1));
}

/** Header names as RFC 7230 tokens (optionally an HTTP/2 pseudo-header's leading colon). */
const HEADER_NAME_STRICT = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
/** Header values without control characters other than horizontal tab. */
// deno-lint-ignore no-control-regex
const HEADER_VALUE_STRICT = /^[^\x00-\x08\x0A-\x1F\x7F]*$/;
/** The loose form of both (`strict: false`): no NUL, CR or LF. */
// deno-lint-ignore no-control-regex
const HEADER_STRING = /^[^\x00\x0A\x0D]*$/;

/**
 * Why `s` breaks `well_known_regex` (1 = HTTP_HEADER_NAME, 2 = HTTP_HEADER_VALUE) under
 * `strict`, or undefined.
 */
export function headerProblem(kind: number, strict: boolean, s: string): string | undefined {
  if (kind === 1) {
    const re = strict ? HEADER_NAME_STRICT : HEADER_STRING;
    return re.test(s) ? undefined : `value does not match regex pattern ${JSON.stringify(re.source)}`;
  }
  if (kind === 2) {
    const re = strict ? HEADER_VALUE_STRICT : HEADER_STRING;
    return re.test(s) ? undefined : `value does not match regex pattern ${JSON.stringify(re.source)}`;
  }
  return undefined;
}
