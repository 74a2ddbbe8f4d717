/**
 * telemetry.istio.io/v1alpha1 Telemetry: typed model and validation. Access-log filter
 * expressions are CEL over Envoy's attributes and are compiled here, so a bad filter is rejected
 * with the position of the field.
 *
 * @module
 */

import { envoyAttributes } from "../attributes.ts";
import { compileExpression } from "../cel.ts";
import type { Diagnostic, Resource } from "../resource.ts";
import { checkSchema, fieldPath, type Reporter, t } from "../schema.ts";
import type { MatchLabelsSelector } from "./networking.ts";
import { policyTargetFields, policyTargetOneOf, type PolicyTargetReference } from "./security.ts";

/** Which side of a connection a setting applies to. */
export type WorkloadMode = "CLIENT_AND_SERVER" | "CLIENT" | "SERVER";

/** A reference to a telemetry provider configured in the mesh config. */
export interface ProviderRef {
  readonly name: string;
}

/** A custom tracing tag: exactly one source. */
export interface CustomTag {
  readonly literal?: { readonly value: string };
  readonly environment?: { readonly name: string; readonly defaultValue?: string };
  readonly header?: { readonly name: string; readonly defaultValue?: string };
  readonly formatter?: { readonly value: string };
}

/** Tracing settings. */
export interface Tracing {
  readonly match?: { readonly mode?: WorkloadMode };
  readonly providers?: readonly ProviderRef[];
  readonly randomSamplingPercentage?: number;
  readonly disableSpanReporting?: boolean;
  readonly customTags?: Readonly<Record<string, CustomTag>>;
  readonly useRequestIdForTraceSampling?: boolean;
  readonly enableIstioTags?: boolean;
  readonly disableContextPropagation?: boolean;
}

/** Istio's standard metrics. */
export type IstioMetric =
  | "ALL_METRICS"
  | "REQUEST_COUNT"
  | "REQUEST_DURATION"
  | "REQUEST_SIZE"
  | "RESPONSE_SIZE"
  | "TCP_OPENED_CONNECTIONS"
  | "TCP_CLOSED_CONNECTIONS"
  | "TCP_SENT_BYTES"
  | "TCP_RECEIVED_BYTES"
  | "GRPC_REQUEST_MESSAGES"
  | "GRPC_RESPONSE_MESSAGES";

/** Customizations of metrics selected by `match`. */
export interface MetricsOverrides {
  readonly match?: {
    readonly metric?: IstioMetric;
    readonly customMetric?: string;
    readonly mode?: WorkloadMode;
  };
  readonly disabled?: boolean;
  readonly tagOverrides?: Readonly<
    Record<string, { readonly operation?: "UPSERT" | "REMOVE"; readonly value?: string }>
  >;
}

/** Metrics settings. */
export interface Metrics {
  readonly providers?: readonly ProviderRef[];
  readonly overrides?: readonly MetricsOverrides[];
  readonly reportingInterval?: string;
}

/** Access-logging settings. */
export interface AccessLogging {
  readonly match?: { readonly mode?: WorkloadMode };
  readonly providers?: readonly ProviderRef[];
  readonly disabled?: boolean;
  /** `expression` is CEL over Envoy's attributes; entries are logged when it is true. */
  readonly filter?: { readonly expression?: string };
}

/** telemetry.istio.io Telemetry spec. */
export interface TelemetrySpec {
  readonly selector?: MatchLabelsSelector;
  readonly targetRef?: PolicyTargetReference;
  readonly targetRefs?: readonly PolicyTargetReference[];
  readonly tracing?: readonly Tracing[];
  readonly metrics?: readonly Metrics[];
  readonly accessLogging?: readonly AccessLogging[];
}

/** Metric names a metrics override can match. */
export const istioMetrics: readonly IstioMetric[] = [
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
];

const modeSelector = t.object({ mode: t.enum(["CLIENT_AND_SERVER", "CLIENT", "SERVER"]) });
const providersSchema = t.array(t.object({ name: t.string({ required: true }) }));

const customTagSchema = t.object(
  {
    literal: t.object({ value: t.string({ required: true }) }),
    environment: t.object({ name: t.string({ required: true }), defaultValue: t.string() }),
    header: t.object({ name: t.string({ required: true }), defaultValue: t.string() }),
    formatter: t.object({ value: t.string({ required: true }) }),
  },
  { exactlyOneOf: [["literal", "environment", "header", "formatter"]] },
);

const tracingSchema = t.object<Tracing>(
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
    },
  },
);

const tagOverrideSchema = t.object<{ operation?: string; value?: string }>(
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

const metricsSchema = t.object({
  providers: providersSchema,
  overrides: t.array(t.object({
    match: t.object(
      {
        metric: t.enum(istioMetrics),
        customMetric: t.string({ nonEmpty: true }),
        mode: t.enum(["CLIENT_AND_SERVER", "CLIENT", "SERVER"]),
      },
      { oneOf: [["metric", "customMetric"]] },
    ),
    disabled: t.bool(),
    tagOverrides: t.map(tagOverrideSchema, {
      key: (key, path, report) => {
        if (key === "") report.error(path, "tag name must not be empty");
      },
    }),
  })),
  reportingInterval: t.duration(),
});

function filterExpressionCheck(expression: string, path: string, report: Reporter): void {
  const compiled = compileExpression(expression, "bool", { attributes: envoyAttributes });
  if (!compiled.ok) report.error(path, `invalid CEL filter: ${compiled.message}`);
}

const accessLoggingSchema = t.object({
  match: modeSelector,
  providers: providersSchema,
  disabled: t.bool(),
  filter: t.object({ expression: t.string({ required: true, check: filterExpressionCheck }) }),
});

const telemetrySchema = t.object<TelemetrySpec>(
  {
    ...policyTargetFields,
    tracing: t.array(tracingSchema),
    metrics: t.array(metricsSchema),
    accessLogging: t.array(accessLoggingSchema),
  },
  {
    oneOf: policyTargetOneOf,
    check: (tel, path, report) => {
      if ((tel.tracing?.length ?? 0) > 1) {
        report.warning(fieldPath(path, "tracing"), "only the first tracing entry is used");
      }
    },
  },
);

/** The API group of Telemetry. */
export const telemetryGroup = "telemetry.istio.io";

/** Versions of telemetry.istio.io meshd accepts. */
export const telemetryVersions: readonly string[] = ["v1alpha1"];

/** Validates a Telemetry resource. */
export function validateTelemetry(r: Resource): Diagnostic[] {
  return checkSchema(r, telemetrySchema);
}
