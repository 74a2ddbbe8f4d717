/**
 * The memquota adapter's descriptor: quota instances counted in this process's memory.
 * Implementation: mod/mixer/adapters/memquota.ts.
 *
 * @module
 */
import { type Infer, t } from "../../schema.ts";
import { optionalDuration, quotaOverrideSchema, uniqueNames } from "../_formats.ts";
import { defineAdapter } from "../adapter.ts";

const params = t.object({
  quotas: t.array(
    t.object({
      name: t.string({ required: true }),
      maxAmount: t.int({ min: 0 }),
      validDuration: optionalDuration,
      rollingWindow: t.bool(),
      overrides: t.array(quotaOverrideSchema),
    }),
    { check: (q, path, report) => uniqueNames(q, path, report, "quota") },
  ),
  minDeduplicationDuration: optionalDuration,
});

/** memquota adapter parameters. */
export type MemQuotaParams = Infer<typeof params>;

/** The memquota adapter. */
export const memquota = defineAdapter({ name: "memquota", templates: ["quota"], params });
