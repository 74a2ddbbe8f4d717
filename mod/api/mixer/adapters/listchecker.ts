/**
 * The listchecker adapter's descriptor: checks listentry instances against a list of strings,
 * IP ranges or regexes, given inline (`overrides`) or fetched from `providerUrl`.
 * Implementation: mod/mixer/adapters/listchecker.ts.
 *
 * @module
 */
import { re2Error } from "../../cel.ts";
import { fieldPath, indexPath, type InferFields, isIPOrCIDR, type Reporter, t } from "../../schema.ts";
import { durationSchema, optionalDuration, parseMs, providerUrlCheck } from "../_formats.ts";
import { defineAdapter } from "../adapter.ts";

const listEntryTypes = ["STRINGS", "CASE_INSENSITIVE_STRINGS", "IP_ADDRESSES", "REGEX"] as const;

/** listchecker entry interpretation. */
export type ListEntryType = (typeof listEntryTypes)[number];

const fields = {
  overrides: t.array(t.string()),
  providerUrl: t.string({ check: providerUrlCheck }),
  refreshInterval: durationSchema,
  ttl: durationSchema,
  cachingInterval: optionalDuration,
  cachingUseCount: t.int({ min: 0 }),
  entryType: t.enum(listEntryTypes),
  blacklist: t.bool(),
};

/** listchecker adapter parameters. */
export type ListCheckerParams = InferFields<typeof fields>;

function listCheckerCheck(p: ListCheckerParams, path: string, report: Reporter): void {
  if (!p.overrides?.length && !p.providerUrl) {
    report.error(path, "listchecker needs overrides, a providerUrl or both");
  }
  if (p.providerUrl && p.ttl && p.refreshInterval && !(parseMs(p.ttl) > parseMs(p.refreshInterval))) {
    report.error(fieldPath(path, "ttl"), "ttl must be longer than refreshInterval");
  }
  const entryType = p.entryType ?? "STRINGS";
  p.overrides?.forEach((entry, i) => {
    const at = indexPath(fieldPath(path, "overrides"), i);
    if (entryType === "IP_ADDRESSES" && !isIPOrCIDR(entry)) {
      report.error(
        at,
        `${JSON.stringify(entry)} is not an IP address or CIDR block (entryType is IP_ADDRESSES)`,
      );
    } else if (entryType === "REGEX") {
      const re2 = re2Error(entry);
      if (re2) {
        report.error(at, `invalid regex ${JSON.stringify(entry)}: ${re2}`);
        return;
      }
      try {
        new RegExp(entry);
      } catch (e) {
        report.error(
          at,
          `regex ${JSON.stringify(entry)} is valid RE2 but JavaScript cannot compile it: ` +
            (e instanceof Error ? e.message : String(e)),
        );
      }
    }
  });
}

/** The listchecker adapter. */
export const listchecker = defineAdapter({
  name: "listchecker",
  templates: ["listentry"],
  params: t.object(fields, { check: listCheckerCheck }),
});
