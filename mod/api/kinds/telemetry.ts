/**
 * telemetry.istio.io Telemetry (v1, v1alpha1): validation and the typed model inferred from its schema.
 * Access-log filter
 * expressions are CEL over Envoy's attributes and are compiled here, so a bad filter is rejected
 * with the position of the field.
 *
 * What pilot does not build is refused with a "not supported" (or "has no effect") warning at
 * the field, so nothing is validated and then ignored: access-log filters (Envoy's CEL
 * access-log filter is not built), `useRequestIdForTraceSampling`, `enableIstioTags`, `disableContextPropagation`,
 * `formatter` custom tags, and every `metrics` field (meshd builds no Istio stats filter).
 *
 * @module
 */

import { envoyAttributes } from "../attributes.ts";
import { compileExpression } from "../cel.ts";
import type { Diagnostic, Resource } from "../resource.ts";
import { checkSchema, fieldPath, type Infer, type Reporter, type Schema, t } from "../schema.ts";
import { policyTargetFields, policyTargetOneOf } from "./security.ts";

/** Warns "not supported" at every set leaf of `value` under `path`. */
function refuseLeaves(value: unknown, path: string, report: Reporter, why: string): void {
  if (Array.isArray(value)) value.forEach((v, i) => refuseLeaves(v, `${path}[${i}]`, report, why));
  else if (typeof value === "object" && value !== null && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) refuseLeaves(v, fieldPath(path, k), report, why);
  } else if (value !== undefined) report.warning(path, `not supported: ${why}`);
}

const NO_STATS = "meshd builds no Istio stats filter; metrics providers and overrides are not honoured";

const workloadModeSchema = t.enum(["CLIENT_AND_SERVER", "CLIENT", "SERVER"]);

/** Which side of a connection a setting applies to. */
export type WorkloadMode = Infer<typeof workloadModeSchema>;

const istioMetricValues = [
  "ALL_METRICS",
  "REQUEST_COUNT",
  "REQUEST_DURATION",
  "REQUEST_SIZE",
  "RESPONSE_SIZE",
  "TCP_OPENED_CONNECTIONS",
  "TCP_CLOSED_CONNECTIONS",
  "TCP_SENT_BYTES",
  "TCP_RECEIVED_BYTES",
  "GRPC_REQUEST_MESSAGES",
  "GRPC_RESPONSE_MESSAGES",
] as const;

/** Istio's standard metrics. */
export type IstioMetric = (typeof istioMetricValues)[number];

/** Metric names a metrics override can match. */
export const istioMetrics: readonly IstioMetric[] = istioMetricValues;

const modeSelector = t.object({ mode: workloadModeSchema });

const providerRefSchema = t.object({ name: t.string({ required: true }) });

/** A reference to a telemetry provider configured in the mesh config. */
export type ProviderRef = Infer<typeof providerRefSchema>;

const providersSchema = t.array(providerRefSchema);

const customTagSchema = t.object(
  {
    literal: t.object({ value: t.string({ required: true }) }),
    environment: t.object({ name: t.string({ required: true }), defaultValue: t.string() }),
    header: t.object({ name: t.string({ required: true }), defaultValue: t.string() }),
    formatter: t.object({ value: t.string({ required: true }) }),
  },
  { exactlyOneOf: [["literal", "environment", "header", "formatter"]] },
);

/** A custom tracing tag: exactly one source. */
export type CustomTag = Infer<typeof customTagSchema>;

const tracingSchema = t.object(
  {
    match: modeSelector,
    providers: providersSchema,
    randomSamplingPercentage: t.number({ min: 0, max: 100 }),
    disableSpanReporting: t.bool(),
    customTags: t.map(customTagSchema, {
      key: (key, path, report) => {
        if (key === "") report.error(path, "tag name must not be empty");
      },
    }),
    useRequestIdForTraceSampling: t.bool(),
    enableIstioTags: t.bool(),
    disableContextPropagation: t.bool(),
  },
  {
    check: (tr, path, report) => {
      if ((tr.providers?.length ?? 0) > 1) {
        report.warning(fieldPath(path, "providers"), "only the first tracing provider is used");
      }
      for (
        const f of ["useRequestIdForTraceSampling", "enableIstioTags", "disableContextPropagation"] as const
      ) {
        if (tr[f] !== undefined) report.warning(fieldPath(path, f), `${f} is not supported by meshd`);
      }
      for (const [name, tag] of Object.entries(tr.customTags ?? {})) {
        if (tag.formatter) {
          report.warning(
            fieldPath(fieldPath(fieldPath(fieldPath(path, "customTags"), name), "formatter"), "value"),
            "formatter custom tags are not supported by meshd; use literal, environment or header",
          );
        }
      }
    },
  },
);

/** Tracing settings. */
export type Tracing = Infer<typeof tracingSchema>;

const tagOverrideSchema = t.object(
  { operation: t.enum(["UPSERT", "REMOVE"]), value: t.string() },
  {
    check: (o, path, report) => {
      if ((o.operation ?? "UPSERT") === "UPSERT" && !o.value) {
        report.error(fieldPath(path, "value"), "value is required when operation is UPSERT");
      }
      if (o.operation === "REMOVE" && o.value) {
        report.error(fieldPath(path, "value"), "value may only be set when operation is UPSERT");
      }
    },
  },
);

const metricsOverridesSchema = t.object({
  match: t.object(
    {
      metric: t.enum(istioMetricValues),
      customMetric: t.string({ nonEmpty: true }),
      mode: workloadModeSchema,
    },
    { oneOf: [["metric", "customMetric"]] },
  ),
  disabled: t.bool(),
  tagOverrides: t.map(tagOverrideSchema, {
    key: (key, path, report) => {
      if (key === "") report.error(path, "tag name must not be empty");
    },
  }),
});

/** Customizations of metrics selected by `match`. */
export type MetricsOverrides = Infer<typeof metricsOverridesSchema>;

const metricsSchema = t.object({
  providers: providersSchema,
  overrides: t.array(metricsOverridesSchema),
  reportingInterval: t.duration(),
}, { check: (m, path, report) => refuseLeaves(m, path, report, NO_STATS) });

/** Metrics settings. */
export type Metrics = Infer<typeof metricsSchema>;

function filterExpressionCheck(expression: string, path: string, report: Reporter): void {
  const compiled = compileExpression(expression, "bool", { attributes: envoyAttributes });
  if (!compiled.ok) report.error(path, `invalid CEL filter: ${compiled.message}`);
}

const accessLoggingSchema = t.object({
  match: modeSelector,
  providers: providersSchema,
  disabled: t.bool(),
  filter: t.object({ expression: t.string({ required: true, check: filterExpressionCheck }) }),
}, {
  check: (a, path, report) => {
    if (a.filter?.expression !== undefined) {
      report.warning(
        fieldPath(fieldPath(path, "filter"), "expression"),
        "access-log filters are not supported by meshd (Envoy's CEL access-log filter is not built); " +
          "entries are logged unfiltered",
      );
    }
  },
});

/**
 * Access-logging settings; `filter.expression` is CEL over Envoy's attributes, and entries are
 * logged when it is true.
 */
export type AccessLogging = Infer<typeof accessLoggingSchema>;

const telemetrySchema = t.object(
  {
    ...policyTargetFields,
    tracing: t.array(tracingSchema),
    metrics: t.array(metricsSchema),
    accessLogging: t.array(accessLoggingSchema),
  },
  // Several tracing entries are applied in order, later ones winning (translate/telemetry.ts).
  { oneOf: policyTargetOneOf },
);

/** telemetry.istio.io Telemetry spec. */
export type TelemetrySpec = Infer<typeof telemetrySchema>;

/** The API group of Telemetry. */
export const telemetryGroup = "telemetry.istio.io";

/** Versions of telemetry.istio.io meshd accepts. */
export const telemetryVersions: readonly string[] = ["v1", "v1alpha1"];

/** Schemas of the telemetry kinds, by kind. */
export const telemetrySchemas: Readonly<Record<string, Schema>> = { Telemetry: telemetrySchema };

/** Validates a Telemetry resource. */
export function validateTelemetry(r: Resource): Diagnostic[] {
  return checkSchema(r, telemetrySchema);
}
