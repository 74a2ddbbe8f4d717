/**
 * The static types of the kinds are inferred from their validation schemas, so a type and its
 * schema cannot drift. The `Equals` assertions below are checked by `tsc` (a wrong expectation is
 * a compile error), and the `@ts-expect-error` lines fail to compile if a type grows looser than
 * its schema. The runtime tests check the schema side of the same facts.
 */
import { describe, expect, test } from "bun:test";
import type { MeshConfig, MeshConfigSpec } from "../../mod/api/kinds/mesh_config.ts";
import {
  type ClientTLSSettings,
  type Destination,
  type DestinationRuleSpec,
  type HTTPRedirect,
  type LoadBalancerSettings,
  networkingSchemas,
  type SimpleLB,
  type StringMatch,
  type TLSRoute,
} from "../../mod/api/kinds/networking.ts";
import type { AuthorizationAction, MtlsMode, PolicyTargetReference } from "../../mod/api/kinds/security.ts";
import type { MetricsOverrides } from "../../mod/api/kinds/telemetry.ts";
import { parseConfig } from "../../mod/galley/parse.ts";
import { validateResource } from "../../mod/galley/validate.ts";
import { type Infer, labelsSchema, type Schema, t } from "../../mod/api/schema.ts";

/** True when `A` and `B` are the same type (not merely assignable to each other). */
type Equals<A, B> = (<X>() => X extends A ? 1 : 2) extends (<X>() => X extends B ? 1 : 2) ? true : false;

// ---------------------------------------------------------------------------------------------
// The inference rules, on a schema that uses every constructor
// ---------------------------------------------------------------------------------------------

const sample = t.object({
  name: t.string({ required: true }),
  note: t.string(),
  mode: t.enum(["ON", "OFF"]),
  count: t.int({ min: 0 }),
  ratio: t.number(),
  enabled: t.bool({ required: true }),
  tags: t.array(t.string()),
  limits: t.map(t.int()),
  labels: labelsSchema({ required: true }),
  inner: t.required(t.object({ value: t.string({ required: true }), extra: t.any() })),
  timeout: t.duration(),
});

const _sample: Equals<Infer<typeof sample>, {
  readonly name: string;
  readonly note?: string;
  readonly mode?: "ON" | "OFF";
  readonly count?: number;
  readonly ratio?: number;
  readonly enabled: boolean;
  readonly tags?: readonly string[];
  readonly limits?: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly inner: { readonly value: string; readonly extra?: unknown };
  readonly timeout?: string;
}> = true;

// ---------------------------------------------------------------------------------------------
// Representative kinds
// ---------------------------------------------------------------------------------------------

const _destination: Equals<Destination, {
  readonly host: string;
  readonly subset?: string;
  readonly port?: { readonly number?: number };
}> = true;

const _stringMatch: Equals<StringMatch, {
  readonly exact?: string;
  readonly prefix?: string;
  readonly regex?: string;
}> = true;

/** The fields the hand-written type lacked while the schema accepted them. */
const _loadBalancer: Equals<
  LoadBalancerSettings["warmup"],
  {
    readonly duration: string;
    readonly minimumPercent?: number;
    readonly aggression?: number;
  } | undefined
> = true;

const _zoneAware: Equals<
  LoadBalancerSettings["zoneAwareLbSetting"],
  {
    readonly enabled?: boolean;
    readonly failover?: readonly { readonly from?: string; readonly to?: string }[];
    readonly failoverPriority?: readonly string[];
    readonly minClusterSize?: number;
  } | undefined
> = true;

const _simpleLB: Equals<
  SimpleLB,
  "UNSPECIFIED" | "LEAST_CONN" | "RANDOM" | "PASSTHROUGH" | "ROUND_ROBIN" | "LEAST_REQUEST"
> = true;

const _tlsMode: Equals<
  ClientTLSSettings["mode"],
  "DISABLE" | "SIMPLE" | "MUTUAL" | "ISTIO_MUTUAL" | undefined
> = true;

const _redirectScheme: Equals<HTTPRedirect["scheme"], "http" | "https" | undefined> = true;

const _tlsRoute: Equals<keyof TLSRoute, "match" | "route"> = true;

const _targetRef: Equals<PolicyTargetReference, {
  readonly group?: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
}> = true;

const _mtlsMode: Equals<MtlsMode, "UNSET" | "DISABLE" | "PERMISSIVE" | "STRICT"> = true;
const _action: Equals<AuthorizationAction, "ALLOW" | "DENY" | "AUDIT" | "CUSTOM"> = true;

const _tagOverride: Equals<
  NonNullable<MetricsOverrides["tagOverrides"]>[string],
  { readonly operation?: "UPSERT" | "REMOVE"; readonly value?: string }
> = true;

const _meshKeys: Equals<keyof MeshConfig, keyof MeshConfigSpec> = true;
const _meshNested: Equals<
  MeshConfig["outboundTrafficPolicy"],
  { readonly mode: "ALLOW_ANY" | "REGISTRY_ONLY" }
> = true;

// Types are no looser than their schemas: a missing required field, an unknown field and a value
// outside an enum are compile errors.
// @ts-expect-error host is required
const _noHost: Destination = { subset: "v1" };
// @ts-expect-error hostname is not a field of Destination
const _unknownField: Destination = { host: "a", hostname: "b" };
// @ts-expect-error FASTEST is not a load-balancing algorithm
const _badEnum: LoadBalancerSettings = { simple: "FASTEST" };

void [
  _sample,
  _destination,
  _stringMatch,
  _loadBalancer,
  _zoneAware,
  _simpleLB,
  _tlsMode,
  _redirectScheme,
  _tlsRoute,
  _targetRef,
  _mtlsMode,
  _action,
  _tagOverride,
  _meshKeys,
  _meshNested,
  _noHost,
  _unknownField,
  _badEnum,
];

// ---------------------------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------------------------

/** Every object field name in `schema`, as dotted paths. */
function fieldNames(schema: Schema, path = ""): string[] {
  switch (schema.type) {
    case "object":
      return Object.entries(schema.fields).flatMap(([name, field]) => {
        const at = path === "" ? name : `${path}.${name}`;
        return [at, ...fieldNames(field, at)];
      });
    case "array":
      return fieldNames(schema.items, `${path}[]`);
    case "map":
      return fieldNames(schema.values, `${path}{}`);
    default:
      return [];
  }
}

describe("schema types", () => {
  test("t.required() marks a copy of the node and leaves the original optional", () => {
    const optional = t.object({ a: t.string() });
    const required = t.required(optional);
    expect(required).toEqual({ ...optional, required: true });
    expect(optional.required).toBeUndefined();
  });

  test("t.enum() keeps its values for the walker", () => {
    expect(t.enum(["A", "B"], { required: true })).toEqual({
      type: "string",
      enum: ["A", "B"],
      required: true,
    });
  });

  test("a DestinationRule with warmup and zoneAwareLbSetting validates and its typed model carries both", () => {
    const parsed = parseConfig(
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      warmup:
        duration: 30s
        minimumPercent: 10
      zoneAwareLbSetting:
        enabled: true
        minClusterSize: 3
`,
      "dr.yaml",
    );
    expect(parsed.diagnostics).toEqual([]);
    const resource = parsed.resources[0]!;
    expect(validateResource(resource)).toEqual([]);
    const lb = (resource.spec as DestinationRuleSpec).trafficPolicy?.loadBalancer;
    expect(lb?.warmup?.duration).toBe("30s");
    expect(lb?.warmup?.minimumPercent).toBe(10);
    expect(lb?.zoneAwareLbSetting?.minClusterSize).toBe(3);
  });

  test("every field of the networking schemas is a protobuf JSON (lowerCamelCase) name", () => {
    const names = Object.entries(networkingSchemas).flatMap(([kind, schema]) =>
      fieldNames(schema).map((path) => `${kind}.${path}`)
    );
    expect(names.length).toBeGreaterThan(300);
    const bad = names.filter((path) =>
      !/^[a-z][A-Za-z0-9]*$/.test(path.split(/[.\[\]{}]+/).filter(Boolean).pop()!)
    );
    expect(bad).toEqual([]);
    expect(names).toContain("DestinationRule.trafficPolicy.loadBalancer.warmup.minimumPercent");
    expect(names).toContain("DestinationRule.trafficPolicy.loadBalancer.zoneAwareLbSetting.minClusterSize");
  });
});
