/**
 * config.istio.io/v1alpha2 Mixer-model kinds (`handler`, `instance`, `rule`): schemas, the types
 * inferred from them, and validation. Handler parameters are checked against the schema of the
 * compiled-in adapter they name, and instance parameters against their template's schema, both
 * taken from the one table of adapters and templates in `mod/api/mixer` (instance parameters are
 * CEL expressions over Istio's attribute vocabulary and are compiled there, so a bad expression is
 * rejected with the position of its field). This file adds only what the three kinds themselves
 * require: the handler's choice of compiled or out-of-process adapter, and the rule.
 *
 * @module
 */

import { type AttributeType, istioAttributes } from "../attributes.ts";
import {
  adapterDescriptor,
  type AdapterName,
  adapterNames,
  celCheck,
  durationSchema,
  hostPortCheck,
  templateDescriptor,
  type TemplateName,
  templateNames,
} from "../mixer/mod.ts";
import { camelizeSpec, LEGACY_KINDS, type Normalized, normalizeMixer } from "../mixer/legacy.ts";
import { type Diagnostic, type Resource, resourceLabel } from "../resource.ts";
import {
  checkSchema,
  fieldPath,
  indexPath,
  type Infer,
  type InferFields,
  isDNS1123Subdomain,
  type Reporter,
  type Schema,
  t,
  walkSchema,
} from "../schema.ts";

// ---------------------------------------------------------------------------------------------
// Handler
// ---------------------------------------------------------------------------------------------

/** Adapters compiled into meshd's mixer (the names in mod/api/mixer's adapter table). */
export type CompiledAdapter = AdapterName;

/** Templates compiled into meshd's mixer (the names in mod/api/mixer's template table). */
export type CompiledTemplate = TemplateName;

const handlerSchema = t.object(
  {
    compiledAdapter: t.enum(adapterNames),
    adapter: t.string({ nonEmpty: true }),
    connection: t.object({
      address: t.string({ required: true, check: hostPortCheck }),
      timeout: durationSchema,
      authentication: t.any(),
    }),
    /** Adapter parameters; each compiled-in adapter's descriptor in mod/api/mixer types them. */
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
      const adapter = h.compiledAdapter === undefined ? undefined : adapterDescriptor(h.compiledAdapter);
      if (adapter) {
        const params = h.params ?? {};
        walkSchema(adapter.params, params, { path: fieldPath(path, "params"), report });
      }
    },
  },
);

/** A configured adapter: compiled in (`compiledAdapter`) or out of process (`adapter` + `connection`). */
export type HandlerSpec = Infer<typeof handlerSchema>;

// ---------------------------------------------------------------------------------------------
// Instance
// ---------------------------------------------------------------------------------------------

const instanceSchema = t.object(
  {
    compiledTemplate: t.enum(templateNames, { required: true }),
    /** Template parameters; every leaf string is a CEL expression. */
    params: t.any(),
  },
  {
    check: (inst, path, report) => {
      const template = templateDescriptor(inst.compiledTemplate);
      if (!template) return;
      const params = inst.params ?? {};
      walkSchema(template.params, params, { path: fieldPath(path, "params"), report });
    },
  },
);

/** An instance: a template filled with CEL expressions evaluated per request. */
export type InstanceSpec = Infer<typeof instanceSchema>;

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

const headerOperationSchema = t.object({
  name: t.string({ required: true }),
  /** CEL expressions producing the header values. */
  values: t.array(t.string()),
  operation: t.enum(["REPLACE", "REMOVE", "APPEND"]),
});

/** A header operation a rule applies to requests or responses. */
export type HeaderOperation = Infer<typeof headerOperationSchema>;

const ruleActionSchema = t.object({
  handler: t.string({ required: true, check: referenceCheck("handler") }),
  instances: t.array(t.string({ check: referenceCheck("instance") }), { required: true, minItems: 1 }),
  /** Names the action so header operations can read its output (`NAME.output.FIELD`). */
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
});

/** One action of a rule: send these instances to this handler. */
export type RuleAction = Infer<typeof ruleActionSchema>;

const ruleFields = {
  /** CEL; empty means true. */
  match: t.string(),
  actions: t.array(ruleActionSchema, {
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
  }),
  requestHeaderOperations: t.array(headerOperationSchema),
  responseHeaderOperations: t.array(headerOperationSchema),
  sampling: t.any(),
};

/** A rule: when `match` holds (CEL, empty means true), run the actions. */
export type RuleSpec = InferFields<typeof ruleFields>;

const ruleSchema = t.object(ruleFields, { check: ruleCheck });

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

/** Validates a handler (or an Istio 1.x per-adapter kind). */
export function validateHandler(r: Resource): Diagnostic[] {
  return validateMixer(r);
}

/** Validates an instance (or an Istio 1.x per-template kind). */
export function validateInstance(r: Resource): Diagnostic[] {
  return validateMixer(r);
}

/** Validates a rule. */
export function validateRule(r: Resource): Diagnostic[] {
  return validateMixer(r);
}

const canonicalSchemas: Readonly<Record<string, Schema>> = {
  handler: handlerSchema,
  instance: instanceSchema,
  rule: ruleSchema,
};

/**
 * A Mixer resource as meshd runs it: a per-adapter or per-template kind of Istio 1.x becomes a
 * handler or instance, snake_case fields camelCase, 1.x expressions CEL (see mod/api/mixer's
 * `legacy.ts` for the rule that picks the language). Canonical CEL resources come back unchanged.
 */
export function mixerResource(r: Resource): Normalized {
  return normalizeMixer(r, ruleSchema);
}

function validateMixer(r: Resource): Diagnostic[] {
  const n = mixerResource(r);
  const label = resourceLabel(r);
  const out: Diagnostic[] = n.problems.map((p) => ({
    severity: p.severity,
    message: p.message,
    pos: r.positionOf(p.field),
    resource: label,
    field: p.field,
  }));
  if (n.foreign) return out;
  const reported = new Set(out.filter((d) => d.severity === "error").map((d) => d.field));
  for (const d of checkSchema(n.resource, canonicalSchemas[n.resource.kind]!)) {
    const field = d.field === undefined ? undefined : n.origin(d.field);
    if (field !== undefined && reported.has(field)) continue;
    out.push({ ...d, resource: label, field });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// attributemanifest, QuotaSpec, QuotaSpecBinding
// ---------------------------------------------------------------------------------------------

const MIXER_VALUE_TYPES: Readonly<Record<string, AttributeType>> = {
  STRING: "string",
  INT64: "int",
  DOUBLE: "double",
  BOOL: "bool",
  TIMESTAMP: "timestamp",
  IP_ADDRESS: "bytes",
  EMAIL_ADDRESS: "string",
  URI: "string",
  DNS_NAME: "string",
  DURATION: "duration",
  STRING_MAP: "string_map",
};

const attributeManifestSchema = t.object({
  revision: t.string(),
  name: t.string(),
  attributes: t.map(
    t.object({
      valueType: t.enum(Object.keys(MIXER_VALUE_TYPES), { required: true }),
      description: t.string(),
    }),
    {
      check: (attrs, path, report) => {
        for (const [name, info] of Object.entries(attrs)) {
          const known = istioAttributes.get(name)?.type;
          const declared = MIXER_VALUE_TYPES[info.valueType];
          const at = fieldPath(fieldPath(path, name), "valueType");
          if (known === undefined) {
            report.warning(
              fieldPath(path, name),
              `attribute ${name} is not in meshd's vocabulary; expressions cannot read it`,
            );
          } else if (declared !== known && !(known === "dyn")) {
            report.error(at, `attribute ${name} is ${known} in meshd's vocabulary, not ${info.valueType}`);
          }
        }
      },
    },
  ),
});

const stringMatchSchema = t.object(
  { exact: t.string(), prefix: t.string(), regex: t.string() },
  { exactlyOneOf: [["exact", "prefix", "regex"]] },
);

const quotaSpecSchema = t.object({
  rules: t.array(t.object({
    match: t.array(t.object({ clause: t.map(stringMatchSchema) })),
    quotas: t.array(t.object({ quota: t.string({ required: true }), charge: t.int({ min: 0 }) }), {
      minItems: 1,
    }),
  })),
});

const quotaSpecBindingSchema = t.object({
  services: t.array(
    t.object({ name: t.string(), namespace: t.string(), domain: t.string(), service: t.string() }),
    { required: true, minItems: 1 },
  ),
  quotaSpecs: t.array(t.object({ name: t.string({ required: true }), namespace: t.string() }), {
    required: true,
    minItems: 1,
  }),
});

/** An Istio 1.x QuotaSpec: which quotas a request charges, and how much. */
export type QuotaSpecSpec = Infer<typeof quotaSpecSchema>;

/** An Istio 1.x QuotaSpecBinding: which services the QuotaSpecs apply to. */
export type QuotaSpecBindingSpec = Infer<typeof quotaSpecBindingSchema>;

/** A QuotaSpec's spec in its camelCase spelling (1.x files may write snake_case). */
export function quotaSpecOf(r: Resource): QuotaSpecSpec {
  return camelizeSpec(r.spec ?? {}, quotaSpecSchema) as QuotaSpecSpec;
}

/** A QuotaSpecBinding's spec in its camelCase spelling (1.x files may write snake_case). */
export function quotaSpecBindingOf(r: Resource): QuotaSpecBindingSpec {
  return camelizeSpec(r.spec ?? {}, quotaSpecBindingSchema) as QuotaSpecBindingSpec;
}

function validateCamelized(schema: Schema): (r: Resource) => Diagnostic[] {
  return (r) => checkSchema(r, schema, { value: camelizeSpec(r.spec ?? {}, schema) });
}

/**
 * The config.istio.io kinds beyond handler, instance and rule: Istio 1.x's per-adapter and
 * per-template kinds (mapped to handlers and instances), `attributemanifest` (checked against
 * meshd's attribute vocabulary), `QuotaSpec` and `QuotaSpecBinding`. Galley registers each.
 */
export const mixerLegacyKinds: readonly {
  readonly kind: string;
  readonly validate: (r: Resource) => Diagnostic[];
}[] = [
  ...LEGACY_KINDS.map((kind) => ({ kind, validate: validateMixer })),
  { kind: "attributemanifest", validate: validateCamelized(attributeManifestSchema) },
  { kind: "QuotaSpec", validate: validateCamelized(quotaSpecSchema) },
  { kind: "QuotaSpecBinding", validate: validateCamelized(quotaSpecBindingSchema) },
];
