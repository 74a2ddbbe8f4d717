/**
 * The redisquota adapter's descriptor: quota instances counted in Redis, shared by replicas.
 * Implementation: mod/mixer/adapters/redisquota.ts.
 *
 * @module
 */
import { fieldPath, type Infer, t } from "../../schema.ts";
import { durationSchema, hostPortCheck, parseMs, quotaOverrideSchema, uniqueNames } from "../_formats.ts";
import { defineAdapter } from "../adapter.ts";

const quota = t.object(
  {
    name: t.string({ required: true }),
    maxAmount: t.int({ min: 0 }),
    validDuration: t.duration({ required: true }),
    bucketDuration: durationSchema,
    rateLimitAlgorithm: t.enum(["FIXED_WINDOW", "ROLLING_WINDOW"]),
    overrides: t.array(quotaOverrideSchema),
  },
  {
    check: (q, path, report) => {
      if (q.rateLimitAlgorithm === "ROLLING_WINDOW") {
        if (!q.bucketDuration) {
          report.error(fieldPath(path, "bucketDuration"), "ROLLING_WINDOW quotas need bucketDuration");
        } else if (parseMs(q.bucketDuration) >= parseMs(q.validDuration)) {
          report.error(
            fieldPath(path, "bucketDuration"),
            "bucketDuration must be shorter than validDuration",
          );
        }
      }
    },
  },
);

const params = t.object({
  redisServerUrl: t.string({ required: true, check: hostPortCheck }),
  connectionPoolSize: t.int({ min: 0 }),
  quotas: t.array(quota, { check: (q, path, report) => uniqueNames(q, path, report, "quota") }),
});

/** One quota of a redisquota handler. */
export type RedisQuota = Infer<typeof quota>;

/** redisquota adapter parameters. */
export type RedisQuotaParams = Infer<typeof params>;

/** The redisquota adapter. */
export const redisquota = defineAdapter({ name: "redisquota", templates: ["quota"], params });
