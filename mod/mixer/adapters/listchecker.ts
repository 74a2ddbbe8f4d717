/**
 * The listchecker adapter: checks a listentry instance's value against a list of strings,
 * case-insensitive strings, IP addresses and CIDR blocks, or RE2 regular expressions, as a
 * whitelist (a value not on it is denied with NOT_FOUND) or a blacklist (a value on it is denied
 * with PERMISSION_DENIED).
 *
 * The list is the handler's `overrides` (a config file: galley hot-reloads it) plus, with
 * `providerUrl`, a YAML list of strings (or one entry a line) read at start and every
 * `refreshInterval`: fetched over http(s), or read from a local file (`file:///abs/path`).
 * Both go through one refresh loop: a read that fails (unreachable server, missing file, a list
 * that does not parse or compile) is logged and the last good list stays. A provider list not
 * refreshed for `ttl` is dropped, and checks answer UNAVAILABLE until a read succeeds again.
 * Decisions may be cached by clients for `cachingInterval` and `cachingUseCount`.
 *
 * @module
 */
import { open } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { RE2JS } from "@bufbuild/re2";
import { parse as parseYaml } from "yaml";
import type { ListCheckerParams, ListEntryType } from "../../api/mixer/mod.ts";
import { parseIP } from "../../api/schema.ts";
import type { Timer } from "../../shared/clock.ts";
import { parseDuration } from "../../shared/duration.ts";
import { errorMessage } from "../../shared/errors.ts";
import { type AdapterFactory, type CheckOutcome, Codes, type InstanceValue } from "./adapter.ts";

const DEFAULTS = {
  refreshIntervalMs: 60_000,
  ttlMs: 300_000,
  cachingIntervalMs: 300_000,
  cachingUseCount: 10_000,
};

/** Largest provider list (HTTP response or file) accepted. */
const MAX_PROVIDER_BYTES = 16 * 1024 * 1024;
/** How long one provider fetch may take. */
const FETCH_TIMEOUT_MS = 10_000;

/** A compiled list. */
export interface EntryList {
  readonly size: number;
  /** Whether `value` is on the list; a string when the value cannot be compared (e.g. not an IP). */
  contains(value: unknown): boolean | string;
}

function text(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return formatIP(value);
  return String(value);
}

function formatIP(b: Uint8Array): string {
  if (b.length === 4) return b.join(".");
  const groups: string[] = [];
  for (let i = 0; i + 1 < b.length; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return groups.join(":");
}

/** An IPv4 address written as IPv6 (::ffff:a.b.c.d) compares as IPv4. */
function normalizeIP(b: Uint8Array): Uint8Array {
  if (b.length === 16 && b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return b.slice(12);
  }
  return b;
}

function prefixMatch(ip: Uint8Array, net: Uint8Array, bits: number): boolean {
  if (ip.length !== net.length) return false;
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (ip[i] !== net[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (ip[whole]! & mask) === (net[whole]! & mask);
}

/**
 * Compiles entries of `type` into a list. Throws naming the first entry that cannot be compiled
 * (an IP list entry that is not an address or CIDR block, a regex that is not RE2).
 */
export function compileList(entries: readonly string[], type: ListEntryType): EntryList {
  switch (type) {
    case "STRINGS": {
      const set = new Set(entries);
      return { size: set.size, contains: (v) => set.has(text(v)) };
    }
    case "CASE_INSENSITIVE_STRINGS": {
      const set = new Set(entries.map((e) => e.toLowerCase()));
      return { size: set.size, contains: (v) => set.has(text(v).toLowerCase()) };
    }
    case "IP_ADDRESSES": {
      const nets = entries.map((e) => {
        const [addr, len] = e.split("/", 2) as [string, string | undefined];
        const bytes = parseIP(addr.trim());
        if (!bytes) throw new Error(`list entry ${JSON.stringify(e)} is not an IP address or CIDR block`);
        const ip = normalizeIP(bytes);
        const max = ip.length * 8;
        const bits = len === undefined
          ? max
          : /^\d{1,3}$/.test(len)
          ? Number(len) - (bytes.length - ip.length) * 8
          : NaN;
        if (!(bits >= 0 && bits <= max)) {
          throw new Error(`list entry ${JSON.stringify(e)} has a bad prefix length`);
        }
        return { ip, bits };
      });
      return {
        size: nets.length,
        contains(v) {
          const raw = v instanceof Uint8Array ? v : typeof v === "string" ? parseIP(v) : undefined;
          if (!raw || (raw.length !== 4 && raw.length !== 16)) return `${text(v)} is not a valid IP address`;
          const ip = normalizeIP(raw);
          return nets.some((n) => prefixMatch(ip, n.ip, n.bits));
        },
      };
    }
    case "REGEX": {
      const res = entries.map((e) => {
        try {
          return RE2JS.compile(e);
        } catch (err) {
          throw new Error(
            `list entry ${JSON.stringify(e)} is not an RE2 regular expression: ${errorMessage(err)}`,
          );
        }
      });
      return { size: res.length, contains: (v) => res.some((re) => re.test(text(v))) };
    }
  }
}

/** Parses a provider's list: a YAML sequence of scalars, or one entry a line (# starts a comment). */
export function parseProviderList(body: string): string[] {
  const trimmed = body.trim();
  if (trimmed === "") return [];
  if (trimmed.startsWith("-") || trimmed.startsWith("[")) {
    const doc = parseYaml(trimmed, { maxAliasCount: 0 }) as unknown;
    if (!Array.isArray(doc)) throw new Error("the list is not a YAML sequence");
    return doc.map((x, i) => {
      if (typeof x === "string" || typeof x === "number" || typeof x === "boolean") return String(x);
      throw new Error(`list item ${i} is not a scalar`);
    });
  }
  return trimmed.split(/\r?\n/).map((l) => l.replace(/#.*$/, "").trim()).filter((l) => l !== "");
}

async function fetchText(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: "follow" });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > MAX_PROVIDER_BYTES) {
    throw new Error(`the list is ${declared} bytes; the limit is ${MAX_PROVIDER_BYTES}`);
  }
  const reader = res.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > MAX_PROVIDER_BYTES) {
      await reader.cancel();
      throw new Error(`the list is larger than ${MAX_PROVIDER_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

async function readFileText(url: string): Promise<string> {
  const file = await open(fileURLToPath(url), "r");
  try {
    const { size } = await file.stat();
    if (size > MAX_PROVIDER_BYTES) {
      throw new Error(`the list is ${size} bytes; the limit is ${MAX_PROVIDER_BYTES}`);
    }
    const body = await file.readFile();
    if (body.length > MAX_PROVIDER_BYTES) {
      throw new Error(`the list is larger than ${MAX_PROVIDER_BYTES} bytes`);
    }
    return new TextDecoder().decode(body);
  } finally {
    await file.close();
  }
}

/**
 * The text of a provider list: the body of an http(s) URL (status 200 only), or the content of
 * a `file:` URL's file. Throws when it cannot be read or is larger than 16 MiB.
 */
export function readProviderText(url: string): Promise<string> {
  return url.startsWith("file:") ? readFileText(url) : fetchText(url);
}

/** Builds a listchecker handler. */
export const createListChecker: AdapterFactory = (params, env) => {
  const p = (params ?? {}) as ListCheckerParams;
  const type = p.entryType ?? "STRINGS";
  const overrides = p.overrides ?? [];
  const ms = (v: string | undefined, d: number) => (v === undefined ? d : parseDuration(v) ?? d);
  const refreshMs = Math.max(1000, ms(p.refreshInterval, DEFAULTS.refreshIntervalMs));
  const ttlMs = ms(p.ttl, DEFAULTS.ttlMs);
  const validDurationMs = ms(p.cachingInterval, DEFAULTS.cachingIntervalMs);
  const validUseCount = p.cachingUseCount ?? DEFAULTS.cachingUseCount;
  const log = env.logger;

  let list: EntryList | undefined = p.providerUrl ? undefined : compileList(overrides, type);
  let lastError = p.providerUrl ? `the list at ${p.providerUrl} has not been read yet` : "";
  let lastBody: string | undefined;
  let refreshTimer: Timer | undefined;
  let purgeTimer: Timer | undefined;
  let closed = false;

  const resetPurge = () => {
    purgeTimer?.cancel();
    purgeTimer = env.clock.setTimer(ttlMs, () => {
      log.warn("listchecker: provider list not refreshed within its ttl; dropping it", {
        handler: env.handler,
        url: p.providerUrl,
      });
      list = undefined;
      lastBody = undefined;
      lastError = `the list at ${p.providerUrl} could not be refreshed within ${ttlMs} ms: ${lastError}`;
    });
  };

  const refresh = async () => {
    if (closed || !p.providerUrl) return;
    try {
      const body = await readProviderText(p.providerUrl);
      if (closed) return;
      if (body !== lastBody || !list) {
        const next = compileList([...overrides, ...parseProviderList(body)], type);
        list = next;
        lastBody = body;
        log.info("listchecker: list installed", { handler: env.handler, entries: next.size });
      }
      lastError = "";
      resetPurge();
    } catch (err) {
      lastError = errorMessage(err);
      log.warn("listchecker: could not read the list", {
        handler: env.handler,
        url: p.providerUrl,
        error: lastError,
        keptEntries: list?.size ?? 0,
      });
    } finally {
      if (!closed) refreshTimer = env.clock.setTimer(refreshMs, () => void refresh());
    }
  };
  if (p.providerUrl) {
    resetPurge();
    void refresh();
  }

  const checkOne = (inst: InstanceValue): CheckOutcome => {
    if (!list) {
      return {
        status: { code: Codes.UNAVAILABLE, message: lastError },
        validDurationMs: 0,
        validUseCount: 0,
      };
    }
    const value = inst.fields.value;
    const found = list.contains(value);
    if (typeof found === "string") {
      return { status: { code: Codes.INVALID_ARGUMENT, message: found }, validDurationMs, validUseCount };
    }
    if (p.blacklist) {
      if (found) {
        return {
          status: { code: Codes.PERMISSION_DENIED, message: `${text(value)} is blacklisted` },
          validDurationMs,
          validUseCount,
        };
      }
    } else if (!found) {
      return {
        status: { code: Codes.NOT_FOUND, message: `${text(value)} is not whitelisted` },
        validDurationMs,
        validUseCount,
      };
    }
    return { status: { code: Codes.OK, message: "" }, validDurationMs, validUseCount };
  };

  return {
    check(instances) {
      let out: CheckOutcome = { status: { code: Codes.OK, message: "" }, validDurationMs, validUseCount };
      for (const inst of instances) {
        const r = checkOne(inst);
        if (r.status.code !== Codes.OK) return r;
        out = r;
      }
      return out;
    },
    close() {
      closed = true;
      refreshTimer?.cancel();
      purgeTimer?.cancel();
    },
  };
};
