/**
 * The Mixer templates meshd compiles in, each described once: its name, the schema of an
 * instance's `params` (CEL expression leaves, see {@link expr}), and what its instances produce
 * (`phase`: a check decision, a quota allocation, or telemetry to report).
 *
 * This table is the only list of templates. Galley validates `instance` resources against it,
 * the template-mismatch analyzer and the adapters' descriptors name templates from it, and
 * mixer's dispatch sorts a rule's instances into check, quota and report actions by `phase`.
 * Adding a template is one entry here.
 *
 * @module
 */
import { type Schema, t } from "../schema.ts";
import { expr, exprMap } from "./expressions.ts";

/** What a template's instances are for: the Mixer API call that carries them to an adapter. */
export type Phase = "check" | "quota" | "report";

/** A template, described once. */
export interface TemplateDescriptor<N extends string = string> {
  /** The `compiledTemplate` value instances use. */
  readonly name: N;
  /** What its instances produce. */
  readonly phase: Phase;
  /** The schema of an instance's `params`; every leaf string is a CEL expression. */
  readonly params: Schema;
}

/** Describes a template (keeps its name's literal type, so the table yields the name union). */
export function defineTemplate<const N extends string>(d: TemplateDescriptor<N>): TemplateDescriptor<N> {
  return Object.freeze(d);
}

/** Every compiled-in template, in the order validation messages list them. */
export const TEMPLATES = [
  defineTemplate({
    name: "authorization",
    phase: "check",
    params: t.object({
      subject: t.object({ user: expr("string"), groups: expr("string"), properties: exprMap }),
      action: t.object({
        namespace: expr("string"),
        service: expr("string"),
        method: expr("string"),
        path: expr("string"),
        properties: exprMap,
      }),
    }),
  }),
  defineTemplate({
    name: "listentry",
    phase: "check",
    /** A string or an IP address (listchecker's IP_ADDRESSES lists), as in Istio. */
    params: t.object({ value: expr("any", { required: true }) }),
  }),
  defineTemplate({ name: "checknothing", phase: "check", params: t.object({}) }),
  defineTemplate({ name: "quota", phase: "quota", params: t.object({ dimensions: exprMap }) }),
  defineTemplate({
    name: "metric",
    phase: "report",
    params: t.object({
      value: expr("any", { required: true }),
      dimensions: exprMap,
      monitoredResourceType: expr("string"),
      monitoredResourceDimensions: exprMap,
    }),
  }),
  defineTemplate({
    name: "logentry",
    phase: "report",
    params: t.object({
      variables: exprMap,
      timestamp: expr("timestamp"),
      severity: expr("string"),
      monitoredResourceType: expr("string"),
      monitoredResourceDimensions: exprMap,
    }),
  }),
  defineTemplate({
    name: "tracespan",
    phase: "report",
    params: t.object({
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
  }),
  defineTemplate({ name: "reportnothing", phase: "report", params: t.object({}) }),
] as const;

/** The name of a compiled-in template. */
export type TemplateName = (typeof TEMPLATES)[number]["name"];

/** Names of the compiled-in templates, in table order. */
export const templateNames: readonly TemplateName[] = TEMPLATES.map((d) => d.name);

const byName: ReadonlyMap<string, TemplateDescriptor<TemplateName>> = new Map(
  TEMPLATES.map((d) => [d.name, d]),
);

/** The descriptor of a compiled-in template, or undefined for a name the table does not hold. */
export function templateDescriptor(name: string): TemplateDescriptor<TemplateName> | undefined {
  return byName.get(name);
}
