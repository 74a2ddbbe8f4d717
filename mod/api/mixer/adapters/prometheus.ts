/**
 * The prometheus adapter's descriptor: metric instances exported as Prometheus series.
 * Implementation: mod/mixer/adapters/prometheus.ts.
 *
 * @module
 */
import { fieldPath, indexPath, type Infer, t } from "../../schema.ts";
import { durationSchema, promNameCheck, uniqueNames } from "../_formats.ts";
import { defineAdapter } from "../adapter.ts";

const bucketsSchema = t.object(
  {
    explicitBuckets: t.object({
      bounds: t.array(t.number(), {
        required: true,
        minItems: 1,
        check: (b, path, report) => {
          if (b.some((v, i) => i > 0 && v <= b[i - 1]!)) {
            report.error(path, "bucket bounds must be strictly increasing");
          }
        },
      }),
    }),
    linearBuckets: t.object({
      numFiniteBuckets: t.int({ required: true, min: 1 }),
      width: t.number({ required: true, min: Number.MIN_VALUE }),
      offset: t.number(),
    }),
    exponentialBuckets: t.object({
      numFiniteBuckets: t.int({ required: true, min: 1 }),
      growthFactor: t.number({
        required: true,
        check: (g, path, report) => {
          if (!(g > 1)) report.error(path, "growthFactor must be greater than 1");
        },
      }),
      scale: t.number({
        required: true,
        check: (s, path, report) => {
          if (!(s > 0)) report.error(path, "scale must be greater than 0");
        },
      }),
    }),
  },
  { exactlyOneOf: [["explicitBuckets", "linearBuckets", "exponentialBuckets"]] },
);

const metricSchema = t.object(
  {
    name: t.string({
      required: true,
      check: promNameCheck("metric name", /^[a-zA-Z_:][a-zA-Z0-9_:]*$/),
    }),
    namespace: t.string({ check: promNameCheck("namespace", /^[a-zA-Z_][a-zA-Z0-9_]*$/) }),
    instanceName: t.string({ required: true }),
    description: t.string(),
    kind: t.enum(["COUNTER", "GAUGE", "DISTRIBUTION"], { required: true }),
    labelNames: t.array(t.string({ check: promNameCheck("label name", /^[a-zA-Z_][a-zA-Z0-9_]*$/) })),
    buckets: bucketsSchema,
  },
  {
    check: (m, path, report) => {
      if (m.kind === "DISTRIBUTION" && !m.buckets) {
        report.error(fieldPath(path, "buckets"), "DISTRIBUTION metrics need buckets");
      }
      if (m.kind !== "DISTRIBUTION" && m.buckets) {
        report.error(
          fieldPath(path, "buckets"),
          `buckets only apply to DISTRIBUTION metrics, not ${m.kind}`,
        );
      }
      const labels = m.labelNames ?? [];
      labels.forEach((l, i) => {
        if (labels.indexOf(l) !== i) {
          report.error(
            indexPath(fieldPath(path, "labelNames"), i),
            `duplicate label name ${JSON.stringify(l)}`,
          );
        }
      });
    },
  },
);

const params = t.object({
  metrics: t.array(metricSchema, {
    check: (m, path, report) => uniqueNames(m, path, report, "metric"),
  }),
  metricsExpirationPolicy: t.object({
    metricsExpiryDuration: durationSchema,
    expiryCheckIntervalDuration: durationSchema,
  }),
});

/** Prometheus histogram buckets: exactly one of the three forms. */
export type PrometheusBuckets = Infer<typeof bucketsSchema>;

/** One metric of a prometheus handler. */
export type PrometheusMetric = Infer<typeof metricSchema>;

/** prometheus adapter parameters. */
export type PrometheusParams = Infer<typeof params>;

/** The prometheus adapter. */
export const prometheus = defineAdapter({ name: "prometheus", templates: ["metric"], params });
