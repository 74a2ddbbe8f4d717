/**
 * config.istio.io/v1alpha2 Mixer-model kinds (`handler`, `instance`, `rule`): typed models and
 * validation. Handler parameters are checked per compiled-in adapter; instance parameters are
 * CEL expressions over Istio's attribute vocabulary and are compiled here, so a bad expression is
 * rejected with the position of its field.
 *
 * @module
 */

import { parseDuration } from "../../shared/duration.ts";
import type { AttributeType } from "../attributes.ts";
import { compileExpression, type ExpressionType, re2Error } from "../cel.ts";
import type { Diagnostic, Resource } from "../resource.ts";
import {
  checkSchema,
  fieldPath,
  indexPath,
  isDNS1123Subdomain,
  isIPOrCIDR,
  type Reporter,
  type Schema,
  t,
  walkSchema,
} from "../schema.ts";

// ---------------------------------------------------------------------------------------------
// Typed models
// ---------------------------------------------------------------------------------------------

/** Adapters compiled into meshd's mixer. */
export type CompiledAdapter =
  | "denier"
  | "listchecker"
  | "memquota"
  | "redisquota"
  | "prometheus"
  | "stdio"
  | "zipkin";

/** Templates compiled into meshd's mixer. */
export type CompiledTemplate =
  | "authorization"
  | "listentry"
  | "checknothing"
  | "quota"
  | "metric"
  | "logentry"
  | "tracespan"
  | "reportnothing";

/** The adapters meshd compiles in. */
export const compiledAdapters: readonly CompiledAdapter[] = [
  "denier",
  "listchecker",
  "memquota",
  "redisquota",
  "prometheus",
  "stdio",
  "zipkin",
];

/** The templates meshd compiles in. */
export const compiledTemplates: readonly CompiledTemplate[] = [
  "authorization",
  "listentry",
  "checknothing",
  "quota",
  "metric",
  "logentry",
  "tracespan",
  "reportnothing",
];

/** A configured adapter: compiled in (`compiledAdapter`) or out of process (`adapter` + `connection`). */
export interface HandlerSpec {
  readonly compiledAdapter?: CompiledAdapter;
  readonly adapter?: string;
  readonly connection?: { readonly address: string; readonly timeout?: string };
  /** Adapter parameters; see the *Params interfaces for the compiled-in adapters. */
  readonly params?: unknown;
}

/** denier adapter parameters. */
export interface DenierParams {
  readonly status?: { readonly code?: number; readonly message?: string };
  readonly validDuration?: string;
  readonly validUseCount?: number;
}

/** listchecker entry interpretation. */
export type ListEntryType = "STRINGS" | "CASE_INSENSITIVE_STRINGS" | "IP_ADDRESSES" | "REGEX";

/** listchecker adapter parameters. */
export interface ListCheckerParams {
  readonly overrides?: readonly string[];
  readonly providerUrl?: string;
  readonly refreshInterval?: string;
  readonly ttl?: string;
  readonly cachingInterval?: string;
  readonly cachingUseCount?: number;
  readonly entryType?: ListEntryType;
  readonly blacklist?: boolean;
}

/** A per-dimension override of a quota limit. */
export interface QuotaOverride {
  readonly dimensions: Readonly<Record<string, string>>;
  readonly maxAmount?: number;
  readonly validDuration?: string;
}

/** memquota adapter parameters. */
export interface MemQuotaParams {
  readonly quotas?: readonly {
    readonly name: string;
    readonly maxAmount?: number;
    readonly validDuration?: string;
    readonly rollingWindow?: boolean;
    readonly overrides?: readonly QuotaOverride[];
  }[];
  readonly minDeduplicationDuration?: string;
}

/** redisquota adapter parameters. */
export interface RedisQuotaParams {
  readonly redisServerUrl: string;
  readonly connectionPoolSize?: number;
  readonly quotas?: readonly {
    readonly name: string;
    readonly maxAmount?: number;
    readonly validDuration?: string;
    readonly bucketDuration?: string;
    readonly rateLimitAlgorithm?: "FIXED_WINDOW" | "ROLLING_WINDOW";
    readonly overrides?: readonly QuotaOverride[];
  }[];
}

/** Prometheus histogram buckets: exactly one of the three forms. */
export interface PrometheusBuckets {
  readonly explicitBuckets?: { readonly bounds: readonly number[] };
  readonly linearBuckets?: {
    readonly numFiniteBuckets: number;
    readonly width: number;
    readonly offset?: number;
  };
  readonly exponentialBuckets?: {
    readonly numFiniteBuckets: number;
    readonly growthFactor: number;
    readonly scale: number;
  };
}

/** prometheus adapter parameters. */
export interface PrometheusParams {
  readonly metrics?: readonly {
    readonly name: string;
    readonly namespace?: string;
    readonly instanceName: string;
    readonly description?: string;
    readonly kind: "COUNTER" | "GAUGE" | "DISTRIBUTION";
    readonly labelNames?: readonly string[];
    readonly buckets?: PrometheusBuckets;
  }[];
  readonly metricsExpirationPolicy?: {
    readonly metricsExpiryDuration?: string;
    readonly expiryCheckIntervalDuration?: string;
  };
}

/** stdio adapter parameters. */
export interface StdioParams {
  readonly logStream?: "STDOUT" | "STDERR" | "FILE" | "ROTATED_FILE";
  readonly severityLevels?: Readonly<Record<string, "INFO" | "WARNING" | "ERROR">>;
  readonly metricLevel?: "INFO" | "WARNING" | "ERROR";
  readonly outputLevel?: "INFO" | "WARNING" | "ERROR";
  readonly outputAsJson?: boolean;
  readonly outputPath?: string;
  readonly maxMegabytesBeforeRotation?: number;
  readonly maxDaysBeforeRotation?: number;
  readonly maxRotatedFiles?: number;
}

/** zipkin adapter parameters. */
export interface ZipkinParams {
  readonly url: string;
  readonly sampleProbability?: number;
}

/** An instance: a template filled with CEL expressions evaluated per request. */
export interface InstanceSpec {
  readonly compiledTemplate: CompiledTemplate;
  /** Template parameters; every leaf string is a CEL expression. */
  readonly params?: unknown;
}

/** A header operation a rule applies to requests or responses. */
export interface HeaderOperation {
  readonly name: string;
  /** CEL expressions producing the header values. */
  readonly values?: readonly string[];
  readonly operation?: "REPLACE" | "REMOVE" | "APPEND";
}

/** One action of a rule: send these instances to this handler. */
export interface RuleAction {
  readonly handler: string;
  readonly instances?: readonly string[];
  /** Names the action so header operations can read its output (`NAME.output.FIELD`). */
  readonly name?: string;
}

/** A rule: when `match` holds (CEL, empty means true), run the actions. */
export interface RuleSpec {
  readonly match?: string;
  readonly actions?: readonly RuleAction[];
  readonly requestHeaderOperations?: readonly HeaderOperation[];
  readonly responseHeaderOperations?: readonly HeaderOperation[];
}

// ---------------------------------------------------------------------------------------------
// Handler
// ---------------------------------------------------------------------------------------------

const durationSchema = t.duration();
const optionalDuration = t.duration({ min: "0" });

function hostPortCheck(value: string, path: string, report: Reporter): void {
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

function urlCheck(value: string, path: string, report: Reporter): void {
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
function providerUrlCheck(value: string, path: string, report: Reporter): void {
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

const quotaOverrideSchema = t.object({
  dimensions: t.map(t.string(), { required: true, minEntries: 1 }),
  maxAmount: t.int({ min: 0 }),
  validDuration: optionalDuration,
});

function uniqueNames(
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

const listEntryTypes: readonly ListEntryType[] = [
  "STRINGS",
  "CASE_INSENSITIVE_STRINGS",
  "IP_ADDRESSES",
  "REGEX",
];

const adapterSchemas: Readonly<Record<CompiledAdapter, Schema>> = {
  denier: t.object({
    status: t.object({ code: t.int({ min: 0, max: 16 }), message: t.string(), details: t.array(t.any()) }),
    validDuration: optionalDuration,
    validUseCount: t.int({ min: 0 }),
  }),
  listchecker: t.object<ListCheckerParams>(
    {
      overrides: t.array(t.string()),
      providerUrl: t.string({ check: providerUrlCheck }),
      refreshInterval: durationSchema,
      ttl: durationSchema,
      cachingInterval: optionalDuration,
      cachingUseCount: t.int({ min: 0 }),
      entryType: t.enum(listEntryTypes),
      blacklist: t.bool(),
    },
    { check: listCheckerCheck },
  ),
  memquota: t.object<MemQuotaParams>({
    quotas: t.array<{ name: string }>(
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
  }),
  redisquota: t.object<RedisQuotaParams>({
    redisServerUrl: t.string({ required: true, check: hostPortCheck }),
    connectionPoolSize: t.int({ min: 0 }),
    quotas: t.array<{ name: string }>(
      t.object<NonNullable<RedisQuotaParams["quotas"]>[number]>(
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
              } else if (parseMs(q.bucketDuration) >= parseMs(q.validDuration!)) {
                report.error(
                  fieldPath(path, "bucketDuration"),
                  "bucketDuration must be shorter than validDuration",
                );
              }
            }
          },
        },
      ),
      { check: (q, path, report) => uniqueNames(q, path, report, "quota") },
    ),
  }),
  prometheus: t.object<PrometheusParams>({
    metrics: t.array<{ name: string }>(
      t.object<NonNullable<PrometheusParams["metrics"]>[number]>(
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
          buckets: t.object(
            {
              explicitBuckets: t.object({
                bounds: t.array<number>(t.number(), {
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
          ),
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
      ),
      { check: (m, path, report) => uniqueNames(m, path, report, "metric") },
    ),
    metricsExpirationPolicy: t.object({
      metricsExpiryDuration: durationSchema,
      expiryCheckIntervalDuration: durationSchema,
    }),
  }),
  stdio: t.object<StdioParams>(
    {
      logStream: t.enum(["STDOUT", "STDERR", "FILE", "ROTATED_FILE"]),
      severityLevels: t.map(t.enum(["INFO", "WARNING", "ERROR"])),
      metricLevel: t.enum(["INFO", "WARNING", "ERROR"]),
      outputLevel: t.enum(["INFO", "WARNING", "ERROR"]),
      outputAsJson: t.bool(),
      outputPath: t.string(),
      maxMegabytesBeforeRotation: t.int({ min: 0 }),
      maxDaysBeforeRotation: t.int({ min: 0 }),
      maxRotatedFiles: t.int({ min: 0 }),
    },
    {
      check: (p, path, report) => {
        if ((p.logStream === "FILE" || p.logStream === "ROTATED_FILE") && !p.outputPath) {
          report.error(fieldPath(path, "outputPath"), `logStream ${p.logStream} needs outputPath`);
        }
      },
    },
  ),
  zipkin: t.object({
    url: t.string({ required: true, check: urlCheck }),
    sampleProbability: t.number({ min: 0, max: 1 }),
  }),
};

function promNameCheck(what: string, pattern: RegExp) {
  return (value: string, path: string, report: Reporter) => {
    if (!pattern.test(value)) {
      report.error(path, `invalid Prometheus ${what} ${JSON.stringify(value)}: must match ${pattern.source}`);
    }
  };
}

function parseMs(duration: string): number {
  return parseDuration(duration) ?? Number.NaN;
}

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

const handlerSchema = t.object<HandlerSpec>(
  {
    compiledAdapter: t.enum(compiledAdapters),
    adapter: t.string({ nonEmpty: true }),
    connection: t.object({
      address: t.string({ required: true, check: hostPortCheck }),
      timeout: durationSchema,
      authentication: t.any(),
    }),
    params: t.any(),
  },
  {
    exactlyOneOf: [["compiledAdapter", "adapter"]],
    check: (h, path, report) => {
      if (h.adapter !== undefined && !h.connection) {
        report.error(fieldPath(path, "connection"), "out-of-process adapters need connection.address");
      }
      if (h.compiledAdapter !== undefined && h.connection) {
        report.error(
          fieldPath(path, "connection"),
          "connection is only for out-of-process adapters; compiled adapters run inside meshd",
        );
      }
      if (h.compiledAdapter !== undefined) {
        const params = h.params ?? {};
        walkSchema(adapterSchemas[h.compiledAdapter], params, { path: fieldPath(path, "params"), report });
      }
    },
  },
);

// ---------------------------------------------------------------------------------------------
// Instance
// ---------------------------------------------------------------------------------------------

/** A CEL expression leaf of a template, required to produce `type`. */
function expr(type: ExpressionType, opts: { required?: boolean } = {}): Schema {
  return t.string({
    required: opts.required,
    check: (value, path, report) => celCheck(value, type, path, report),
  });
}

function celCheck(
  value: string,
  type: ExpressionType,
  path: string,
  report: Reporter,
  extra?: Record<string, AttributeType>,
): void {
  const compiled = compileExpression(value, type, { extraAttributes: extra });
  if (!compiled.ok) report.error(path, `invalid CEL expression: ${compiled.message}`);
}

const exprMap = t.map(expr("any"));

const templateSchemas: Readonly<Record<CompiledTemplate, Schema>> = {
  authorization: t.object({
    subject: t.object({ user: expr("string"), groups: expr("string"), properties: exprMap }),
    action: t.object({
      namespace: expr("string"),
      service: expr("string"),
      method: expr("string"),
      path: expr("string"),
      properties: exprMap,
    }),
  }),
  listentry: t.object({ value: expr("string", { required: true }) }),
  checknothing: t.object({}),
  reportnothing: t.object({}),
  quota: t.object({ dimensions: exprMap }),
  metric: t.object({
    value: expr("any", { required: true }),
    dimensions: exprMap,
    monitoredResourceType: expr("string"),
    monitoredResourceDimensions: exprMap,
  }),
  logentry: t.object({
    variables: exprMap,
    timestamp: expr("timestamp"),
    severity: expr("string"),
    monitoredResourceType: expr("string"),
    monitoredResourceDimensions: exprMap,
  }),
  tracespan: t.object({
    traceId: expr("string", { required: true }),
    spanId: expr("string", { required: true }),
    parentSpanId: expr("string"),
    spanName: expr("string", { required: true }),
    startTime: expr("timestamp", { required: true }),
    endTime: expr("timestamp", { required: true }),
    spanTags: exprMap,
    httpStatusCode: expr("int"),
    clientSpan: expr("bool"),
    rewriteClientSpanId: expr("bool"),
    sourceName: expr("string"),
    sourceIp: expr("bytes"),
    destinationName: expr("string"),
    destinationIp: expr("bytes"),
    requestSize: expr("int"),
    requestTotalSize: expr("int"),
    responseSize: expr("int"),
    responseTotalSize: expr("int"),
    apiProtocol: expr("string"),
  }),
};

const instanceSchema = t.object<InstanceSpec>(
  { compiledTemplate: t.enum(compiledTemplates, { required: true }), params: t.any() },
  {
    check: (inst, path, report) => {
      const params = inst.params ?? {};
      walkSchema(templateSchemas[inst.compiledTemplate], params, { path: fieldPath(path, "params"), report });
    },
  },
);

// ---------------------------------------------------------------------------------------------
// Rule
// ---------------------------------------------------------------------------------------------

function referenceCheck(what: string) {
  return (value: string, path: string, report: Reporter) => {
    if (!isDNS1123Subdomain(value)) {
      report.error(
        path,
        `invalid ${what} reference ${JSON.stringify(value)}: ` +
          "use NAME or NAME.NAMESPACE (lower-case DNS names)",
      );
    }
  };
}

const headerOperationSchema = t.object<HeaderOperation>({
  name: t.string({ required: true }),
  values: t.array(t.string()),
  operation: t.enum(["REPLACE", "REMOVE", "APPEND"]),
});

const ruleSchema = t.object<RuleSpec>(
  {
    match: t.string(),
    actions: t.array<RuleAction>(
      t.object({
        handler: t.string({ required: true, check: referenceCheck("handler") }),
        instances: t.array(t.string({ check: referenceCheck("instance") }), { required: true, minItems: 1 }),
        name: t.string({
          check: (v, path, report) => {
            if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(v)) {
              report.error(
                path,
                `action name ${JSON.stringify(v)} must be an identifier (letters, digits, '_')`,
              );
            }
          },
        }),
      }),
      {
        check: (actions, path, report) => {
          const seen = new Map<string, number>();
          actions.forEach((a, i) => {
            if (a.name === undefined) return;
            const first = seen.get(a.name);
            if (first !== undefined) {
              report.error(
                fieldPath(indexPath(path, i), "name"),
                `action name ${JSON.stringify(a.name)} is already used by ${indexPath(path, first)}`,
              );
            } else seen.set(a.name, i);
          });
        },
      },
    ),
    requestHeaderOperations: t.array(headerOperationSchema),
    responseHeaderOperations: t.array(headerOperationSchema),
    sampling: t.any(),
  },
  { check: ruleCheck },
);

function ruleCheck(rule: RuleSpec, path: string, report: Reporter): void {
  if (rule.match !== undefined && rule.match.trim() !== "") {
    celCheck(rule.match, "bool", fieldPath(path, "match"), report);
  }
  const outputs: Record<string, AttributeType> = {};
  for (const a of rule.actions ?? []) if (a.name) outputs[`${a.name}.output`] = "dyn";
  for (const field of ["requestHeaderOperations", "responseHeaderOperations"] as const) {
    rule[field]?.forEach((op, i) => {
      const at = indexPath(fieldPath(path, field), i);
      if (op.name === "") report.error(fieldPath(at, "name"), "header name must not be empty");
      op.values?.forEach((v, j) =>
        celCheck(v, "string", indexPath(fieldPath(at, "values"), j), report, outputs)
      );
      if ((op.operation ?? "REPLACE") !== "REMOVE" && !op.values?.length) {
        report.error(fieldPath(at, "values"), `${op.operation ?? "REPLACE"} needs at least one value`);
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/** The API group of the Mixer-model kinds. */
export const mixerGroup = "config.istio.io";

/** Versions of config.istio.io meshd accepts. */
export const mixerVersions: readonly string[] = ["v1alpha2"];

/** Validates a handler. */
export function validateHandler(r: Resource): Diagnostic[] {
  return checkSchema(r, handlerSchema);
}

/** Validates an instance. */
export function validateInstance(r: Resource): Diagnostic[] {
  return checkSchema(r, instanceSchema);
}

/** Validates a rule. */
export function validateRule(r: Resource): Diagnostic[] {
  return checkSchema(r, ruleSchema);
}
