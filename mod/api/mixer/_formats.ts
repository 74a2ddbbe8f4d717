/**
 * Field checks the Mixer-model schemas share: host:port addresses, URLs, unique names in lists,
 * durations compared by length, Prometheus names, and the quota override shape that memquota and
 * redisquota both accept.
 *
 * @module
 */
import { parseDuration } from "../../shared/duration.ts";
import { fieldPath, indexPath, type Infer, type Reporter, t } from "../schema.ts";

/** A duration of at least 1ms. */
export const durationSchema = t.duration();
/** A duration that may be zero. */
export const optionalDuration = t.duration({ min: "0" });

/** Reports at `path` when `value` is not `host:port` (an IPv6 host in brackets). */
export function hostPortCheck(value: string, path: string, report: Reporter): void {
  const m = /^(.+):(\d+)$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (
    !m || port < 1 || port > 65535 || (m[1]!.startsWith("[") ? !m[1]!.endsWith("]") : m[1]!.includes(":"))
  ) {
    report.error(path, `address ${JSON.stringify(value)} must be host:port`);
  }
}

/** `value` as a URL, or undefined after reporting that it is not one. */
function parsedUrl(value: string, path: string, report: Reporter): URL | undefined {
  try {
    return new URL(value);
  } catch {
    report.error(path, `${JSON.stringify(value)} is not a valid URL`);
    return undefined;
  }
}

/** Reports at `path` when `value` is not an http(s) URL. */
export function urlCheck(value: string, path: string, report: Reporter): void {
  const url = parsedUrl(value, path, report);
  if (!url) return;
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    report.error(path, `URL ${JSON.stringify(value)} must use http or https`);
  }
}

/**
 * A listchecker `providerUrl`: http(s), or a local file as `file:///absolute/path` (no host, no
 * query or fragment; `file:relative` and `file://host/path` are refused rather than guessed at).
 */
export function providerUrlCheck(value: string, path: string, report: Reporter): void {
  const url = parsedUrl(value, path, report);
  if (!url) return;
  if (url.protocol === "file:") {
    if (!value.startsWith("file:///") || url.search !== "" || url.hash !== "") {
      report.error(path, `file URL ${JSON.stringify(value)} must be file:///absolute/path`);
    }
  } else if (url.protocol !== "http:" && url.protocol !== "https:") {
    report.error(path, `URL ${JSON.stringify(value)} must use http, https or file`);
  }
}

/** Reports every item whose `name` an earlier item of the list already has. */
export function uniqueNames(
  items: readonly { readonly name: string }[],
  path: string,
  report: Reporter,
  what: string,
): void {
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    const first = seen.get(item.name);
    if (first !== undefined) {
      report.error(
        fieldPath(indexPath(path, i), "name"),
        `${what} ${JSON.stringify(item.name)} is already defined at ${indexPath(path, first)}`,
      );
    } else seen.set(item.name, i);
  });
}

/** A duration in milliseconds; NaN when it does not parse (comparisons with it are false). */
export function parseMs(duration: string): number {
  return parseDuration(duration) ?? Number.NaN;
}

/** Reports a Prometheus name (`what`) that does not match `pattern`. */
export function promNameCheck(
  what: string,
  pattern: RegExp,
): (value: string, path: string, report: Reporter) => void {
  return (value, path, report) => {
    if (!pattern.test(value)) {
      report.error(path, `invalid Prometheus ${what} ${JSON.stringify(value)}: must match ${pattern.source}`);
    }
  };
}

/** The schema of a per-dimension override of a quota limit. */
export const quotaOverrideSchema = t.object({
  dimensions: t.map(t.string(), { required: true, minEntries: 1 }),
  maxAmount: t.int({ min: 0 }),
  validDuration: optionalDuration,
});

/** A per-dimension override of a quota limit. */
export type QuotaOverride = Infer<typeof quotaOverrideSchema>;
