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

import type { AttributeType } from "../attributes.ts";
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
import type { Diagnostic, Resource } from "../resource.ts";
import {
  checkSchema,
  fieldPath,
  indexPath,
  type Infer,
  type InferFields,
  isDNS1123Subdomain,
  type Reporter,
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
