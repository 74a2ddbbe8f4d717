/**
 * The dispatch table: an immutable view of the Mixer config (handlers built into adapters,
 * instances and rules compiled) that answers checks, allocates quota and routes reports.
 *
 * A new table is built on every config snapshot; requests always see one whole table. Handlers
 * whose `handler` resource did not change are carried over with their state (quota counters,
 * metrics, fetched lists); the others are built anew and the replaced ones closed once the new
 * table is in force. A rule whose handler or instance cannot be found, or whose instance's
 * template its adapter does not accept, loses that action and the table says why
 * (`problems`, shown at /debug/mixerz). Which templates an adapter accepts, and whether a
 * template's instances go to check, quota or report, come from the adapter and template tables
 * of mod/api/mixer; the adapters' factories from `adapters/factories.ts`.
 *
 * Rules in the mesh's root namespace apply to every request; rules in another namespace only to
 * requests whose `destination.service.namespace` (or `destination.namespace`) is that namespace.
 *
 * @module
 */
import {
  adapterDescriptor,
  LEGACY_KINDS,
  parseMixerRef,
  type Phase,
  templateDescriptor,
} from "../api/mixer/mod.ts";
import type { ConfigSnapshot } from "../galley/mod.ts";
import type { MeshConfig } from "../api/kinds/mesh_config.ts";
import type { HandlerSpec, InstanceSpec, RuleSpec } from "../api/kinds/mixer.ts";
import { mixerGroup, mixerResource } from "../api/kinds/mixer.ts";
import { evaluate } from "../api/cel.ts";
import type { Resource } from "../api/resource.ts";
import { resourceKey } from "../api/resource.ts";
import type { Clock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import type { Ref } from "./client/referenced.ts";
import type { AttributeBag } from "./client/wire.ts";
import {
  type AdapterEnv,
  type CheckOutcome,
  Codes,
  type Handler,
  instanceNameMatches,
  type InstanceValue,
  type QuotaArgs,
  type QuotaOutcome,
  type RpcStatus,
} from "./adapters/adapter.ts";
import { adapterFactories } from "./adapters/factories.ts";
import type { MetricPool } from "./adapters/prometheus.ts";
import { createRemoteHandler } from "./adapters/remote.ts";
import { compileQuotaSpecs, type QuotaRequirement, type QuotaSpecs } from "./quota_spec.ts";
import {
  type CompiledHeaderOp,
  type CompiledInstance,
  type CompiledRule,
  compileInstance,
  compileRule,
  evalTree,
} from "./compile.ts";

/** The call that carries a template's instances (its descriptor's phase; report for others). */
function phaseOf(template: string): Phase {
  return templateDescriptor(template)?.phase ?? "report";
}

/**
 * The snapshot's resources of one Mixer kind in meshd's form: Istio 1.x per-adapter and
 * per-template kinds as handlers and instances, 1.x expressions as CEL. Resources of adapters or
 * templates meshd does not run are left out.
 */
function mixerResources<S>(snapshot: ConfigSnapshot, kind: "handler" | "instance" | "rule"): Resource<S>[] {
  const out: Resource<S>[] = [];
  for (const k of kind === "rule" ? ["rule"] : [kind, ...LEGACY_KINDS]) {
    for (const r of snapshot.list(mixerGroup, k)) {
      const n = mixerResource(r);
      if (n.resource.kind !== kind || n.foreign || n.problems.some((p) => p.severity === "error")) continue;
      out.push(n.resource as Resource<S>);
    }
  }
  return out;
}

/** What the table needs from the module. */
export interface DispatchOptions {
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics: MetricsRegistry;
  readonly pool: MetricPool;
  /** The mesh settings now. */
  mesh(): MeshConfig;
  /** How long a decision no adapter limited may be reused, ms. */
  readonly defaultValidDurationMs: number;
  /** How many times a decision no adapter limited may be reused. */
  readonly defaultValidUseCount: number;
}

/** A handler as the table holds it. */
export interface BuiltHandler {
  readonly key: string;
  /** NAME.NAMESPACE. */
  readonly name: string;
  readonly adapter: string;
  /** Templates it accepts; undefined for out-of-process adapters (they say what they take). */
  readonly templates?: readonly string[];
  readonly resource: Resource<HandlerSpec>;
  readonly impl?: Handler;
  /** Why it could not be built. */
  readonly error?: string;
}

interface Action {
  readonly handler: BuiltHandler;
  readonly instances: readonly CompiledInstance[];
  readonly name?: string;
}

interface RuleEntry {
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly compiled: CompiledRule;
  readonly check: readonly Action[];
  readonly quota: readonly Action[];
  readonly report: readonly Action[];
}

/** A header change a check asks the proxy to make. */
export interface HeaderChange {
  readonly name: string;
  readonly operation: "REPLACE" | "REMOVE" | "APPEND";
  readonly value: string;
}

/** The answer to a check. */
export interface CheckDecision {
  readonly status: RpcStatus;
  readonly validDurationMs: number;
  readonly validUseCount: number;
  /** What the decision read. */
  readonly refs: readonly Ref[];
  readonly requestHeaders: readonly HeaderChange[];
  readonly responseHeaders: readonly HeaderChange[];
}

/** No header changes (shared by every decision without any). */
const NONE: readonly HeaderChange[] = Object.freeze([]);

/** The answer to one quota request. */
export interface QuotaDecision extends QuotaOutcome {
  readonly refs: readonly Ref[];
  /** Whether any rule sent the quota to a handler (otherwise it is granted as asked). */
  readonly matched: boolean;
}

/** One quota charged for a request, with the units asked for. */
export interface QuotaCharge extends QuotaOutcome {
  readonly amount: number;
}

/** A problem with the config that the table worked around. */
export interface TableProblem {
  readonly resource: string;
  readonly message: string;
}

/** An immutable dispatch table. */
export interface DispatchTable {
  /** The config snapshot version it was built from. */
  readonly version: number;
  readonly handlers: ReadonlyMap<string, BuiltHandler>;
  readonly problems: readonly TableProblem[];
  /** Number of rules with check, quota and report actions. */
  readonly counts: { readonly check: number; readonly quota: number; readonly report: number };
  /** Runs check rules against a bag. Never throws. */
  check(bag: Readonly<AttributeBag>): Promise<CheckDecision>;
  /**
   * Allocates `args.amount` of the quota named `name` (NAME, NAME.NAMESPACE or
   * NAME.KIND.NAMESPACE) for a bag. Unmatched quotas are granted as asked. Never throws.
   */
  quota(bag: Readonly<AttributeBag>, name: string, args: QuotaArgs): Promise<QuotaDecision>;
  /**
   * Allocates `args.amount` of every quota whose rule matches the bag (only the named one, when
   * `only` names an existing quota instance). When a QuotaSpecBinding binds the bag's destination
   * service, only the quotas its QuotaSpecs ask for are charged, each `charge × args.amount`.
   * Returns one outcome per quota charged. Never throws.
   */
  quotaAll(bag: Readonly<AttributeBag>, args: QuotaArgs, only?: string): Promise<QuotaCharge[]>;
  /** Routes bags through report rules to their handlers. Never throws. */
  report(bags: readonly Readonly<AttributeBag>[]): Promise<void>;
}

const handlerKey = (ns: string, name: string) => `${mixerGroup}/handler/${ns}/${name}`;

/** Whether a quota name from a request names the instance. */
export function quotaNameMatches(requested: string, inst: CompiledInstance): boolean {
  if (!requested.includes(".")) {
    return inst.name.slice(0, inst.name.length - inst.namespace.length - 1) === requested;
  }
  return instanceNameMatches(requested, inst.name, inst.namespace);
}

/** The outcome of building a table. */
export interface BuildResult {
  readonly table: DispatchTable;
  /** Handlers of the previous table that the new one does not use; close them once it is in force. */
  readonly retired: readonly BuiltHandler[];
}

/**
 * Builds a table from a snapshot, reusing handlers of `previous` whose resources are unchanged.
 * Never throws for bad config (problems are recorded); throws only on a bug.
 */
export function buildTable(
  snapshot: ConfigSnapshot,
  previous: DispatchTable | undefined,
  opts: DispatchOptions,
): BuildResult {
  const log = opts.logger;
  const problems: TableProblem[] = [];
  const handlers = new Map<string, BuiltHandler>();
  const build = adapterFactories(opts.pool);
  const handlerResources = mixerResources<HandlerSpec>(snapshot, "handler");
  const instances = new Map(
    mixerResources<InstanceSpec>(snapshot, "instance").map((
      r,
    ) => [`${r.metadata.namespace}/${r.metadata.name}`, r]),
  );
  const reused = new Set<BuiltHandler>();
  const fresh: Array<{ r: Resource<HandlerSpec>; key: string }> = [];
  for (const r of handlerResources) {
    const key = resourceKey(r);
    const old = previous?.handlers.get(key);
    if (old && old.resource === r) {
      handlers.set(key, old);
      reused.add(old);
    } else fresh.push({ r, key });
  }
  const retired = previous ? [...previous.handlers.values()].filter((h) => !reused.has(h)) : [];
  opts.pool.retiring(retired.flatMap((h) => (h.impl?.owner ? [h.impl.owner] : [])));
  for (const { r, key } of fresh) {
    const name = `${r.metadata.name}.${r.metadata.namespace}`;
    const env: AdapterEnv = {
      handler: name,
      namespace: r.metadata.namespace,
      logger: log.child({ handler: name }),
      clock: opts.clock,
      metrics: opts.metrics,
      mesh: opts.mesh,
    };
    const spec = r.spec;
    const adapter = spec.compiledAdapter ?? spec.adapter ?? "unknown";
    try {
      const impl = spec.compiledAdapter
        ? build[spec.compiledAdapter](spec.params, env)
        : createRemoteHandler(spec.connection!, spec.params, env);
      handlers.set(key, {
        key,
        name,
        adapter,
        templates: spec.compiledAdapter ? adapterDescriptor(spec.compiledAdapter)?.templates : undefined,
        resource: r,
        impl,
      });
    } catch (err) {
      const message = `handler ${name} (${adapter}) could not be built: ${errorMessage(err)}`;
      problems.push({ resource: `handler ${r.metadata.namespace}/${r.metadata.name}`, message });
      log.error("mixer handler could not be built", { handler: name, error: errorMessage(err) });
      handlers.set(key, { key, name, adapter, resource: r, error: message });
    }
  }

  const rules: RuleEntry[] = [];
  for (const r of mixerResources<RuleSpec>(snapshot, "rule")) {
    const label = `rule ${r.metadata.namespace}/${r.metadata.name}`;
    const problem = (message: string) => {
      problems.push({ resource: label, message });
      log.warn("mixer rule action dropped", { rule: label, problem: message });
    };
    let compiled: CompiledRule;
    try {
      compiled = compileRule(r);
    } catch (err) {
      problem(`rule dropped: ${errorMessage(err)}`);
      continue;
    }
    const phases = { check: [] as Action[], quota: [] as Action[], report: [] as Action[] };
    for (const [i, a] of (r.spec.actions ?? []).entries()) {
      const href = parseMixerRef(a.handler, r.metadata.namespace, (ns, n) => handlers.has(handlerKey(ns, n)));
      const handler = handlers.get(handlerKey(href.namespace, href.name));
      if (!handler) {
        problem(`actions[${i}]: handler ${href.namespace}/${href.name} not found`);
        continue;
      }
      const byPhase = {
        check: [] as CompiledInstance[],
        quota: [] as CompiledInstance[],
        report: [] as CompiledInstance[],
      };
      for (const ref of a.instances ?? []) {
        const iref = parseMixerRef(ref, r.metadata.namespace, (ns, n) => instances.has(`${ns}/${n}`));
        const ir = instances.get(`${iref.namespace}/${iref.name}`);
        if (!ir) {
          problem(`actions[${i}]: instance ${iref.namespace}/${iref.name} not found`);
          continue;
        }
        if (handler.templates && !handler.templates.includes(ir.spec.compiledTemplate)) {
          problem(
            `actions[${i}]: instance ${iref.namespace}/${iref.name} has template ${ir.spec.compiledTemplate}, ` +
              `which adapter ${handler.adapter} does not accept`,
          );
          continue;
        }
        let inst: CompiledInstance;
        try {
          inst = compileInstance(ir);
        } catch (err) {
          problem(`actions[${i}]: instance ${iref.namespace}/${iref.name}: ${errorMessage(err)}`);
          continue;
        }
        byPhase[phaseOf(inst.template)].push(inst);
      }
      for (const phase of ["check", "quota", "report"] as const) {
        if (byPhase[phase].length > 0) {
          phases[phase].push({ handler, instances: byPhase[phase], name: a.name });
        }
      }
    }
    rules.push({
      key: resourceKey(r),
      name: `${r.metadata.name}.${r.metadata.namespace}`,
      namespace: r.metadata.namespace,
      compiled,
      ...phases,
    });
  }
  const quotaSpecs = compileQuotaSpecs(snapshot, (resource, message) => {
    problems.push({ resource, message });
    log.warn("mixer quota spec problem", { resource, problem: message });
  });
  const table = createTable(snapshot.version, handlers, rules, quotaSpecs, problems, opts);
  return { table, retired };
}

function createTable(
  version: number,
  handlers: ReadonlyMap<string, BuiltHandler>,
  rules: readonly RuleEntry[],
  quotaSpecs: QuotaSpecs,
  problems: readonly TableProblem[],
  opts: DispatchOptions,
): DispatchTable {
  const log = opts.logger;
  const checkRules = rules.filter((r) =>
    r.check.length > 0 || r.compiled.requestHeaderOps.length > 0 || r.compiled.responseHeaderOps.length > 0
  );
  const quotaRules = rules.filter((r) => r.quota.length > 0);
  const reportRules = rules.filter((r) => r.report.length > 0);
  let lastInstanceLog = 0;
  const instanceError = (inst: CompiledInstance, message: string) => {
    const t = opts.clock.now();
    if (t - lastInstanceLog > 10_000) {
      lastInstanceLog = t;
      log.warn("mixer instance could not be evaluated", { instance: inst.name, error: message });
    }
  };

  const applies = (rule: RuleEntry, bag: Readonly<AttributeBag>, refs: Ref[]): boolean => {
    if (rule.namespace !== opts.mesh().rootNamespace) {
      refs.push({ name: "destination.service.namespace" }, { name: "destination.namespace" });
      const ns = bag["destination.service.namespace"] ?? bag["destination.namespace"];
      if (ns !== rule.namespace) return false;
    }
    const match = rule.compiled.match;
    if (!match) return true;
    for (const r of rule.compiled.matchRefs) refs.push(r);
    const r = evaluate(match, bag);
    return r.ok && r.value === true;
  };

  const instanceValue = (inst: CompiledInstance, bag: Readonly<AttributeBag>): InstanceValue | string => {
    const r = evalTree(inst.tree, bag);
    if (!r.ok) {
      instanceError(inst, r.message);
      return `instance ${inst.name}: ${r.message}`;
    }
    return { name: inst.name, template: inst.template, fields: r.value as Record<string, unknown>, bag };
  };

  const headerChanges = (
    ops: readonly CompiledHeaderOp[],
    bag: Readonly<AttributeBag>,
    out: HeaderChange[],
  ) => {
    for (const op of ops) {
      if (op.operation === "REMOVE") {
        out.push({ name: op.name, operation: "REMOVE", value: "" });
        continue;
      }
      for (const v of op.values) {
        const r = evaluate(v, bag);
        if (r.ok && r.value !== undefined && r.value !== null) {
          out.push({ name: op.name, operation: op.operation, value: String(r.value) });
        }
      }
    }
  };

  const handlerFailed = (h: BuiltHandler): RpcStatus => ({
    code: Codes.INTERNAL,
    message: h.error ?? `handler ${h.name} does not implement this template`,
  });

  return {
    version,
    handlers,
    problems,
    counts: { check: checkRules.length, quota: quotaRules.length, report: reportRules.length },

    async check(bag) {
      const refs: Ref[] = [];
      let status: RpcStatus = { code: Codes.OK, message: "" };
      let validDurationMs = opts.defaultValidDurationMs;
      let validUseCount = opts.defaultValidUseCount;
      let headerRules: RuleEntry[] | undefined;
      let outputs: Record<string, unknown> | undefined;
      for (const rule of checkRules) {
        if (!applies(rule, bag, refs)) continue;
        for (const action of rule.check) {
          const values: InstanceValue[] = [];
          let outcome: CheckOutcome | undefined;
          for (const inst of action.instances) {
            for (const r of inst.refs) refs.push(r);
            const v = instanceValue(inst, bag);
            if (typeof v === "string") {
              outcome = {
                status: { code: Codes.INVALID_ARGUMENT, message: v },
                validDurationMs: 0,
                validUseCount: 0,
              };
              break;
            }
            values.push(v);
          }
          if (!outcome) {
            const impl = action.handler.impl;
            if (!impl?.check) {
              outcome = { status: handlerFailed(action.handler), validDurationMs: 0, validUseCount: 0 };
            } else {
              try {
                const r = impl.check(values);
                outcome = r instanceof Promise ? await r : r;
              } catch (err) {
                outcome = {
                  status: {
                    code: Codes.INTERNAL,
                    message: `handler ${action.handler.name}: ${errorMessage(err)}`,
                  },
                  validDurationMs: 0,
                  validUseCount: 0,
                };
              }
            }
          }
          if (status.code === Codes.OK && outcome.status.code !== Codes.OK) status = outcome.status;
          if (outcome.validDurationMs < validDurationMs) validDurationMs = outcome.validDurationMs;
          if (outcome.validUseCount < validUseCount) validUseCount = outcome.validUseCount;
          if (action.name && outcome.output) (outputs ??= {})[`${action.name}.output`] = outcome.output;
        }
        if (rule.compiled.requestHeaderOps.length > 0 || rule.compiled.responseHeaderOps.length > 0) {
          (headerRules ??= []).push(rule);
        }
      }
      if (!headerRules || status.code !== Codes.OK) {
        return { status, validDurationMs, validUseCount, refs, requestHeaders: NONE, responseHeaders: NONE };
      }
      const requestHeaders: HeaderChange[] = [];
      const responseHeaders: HeaderChange[] = [];
      const withOutputs = outputs ? { ...bag, ...outputs } : bag;
      for (const rule of headerRules) {
        headerChanges(rule.compiled.requestHeaderOps, withOutputs, requestHeaders);
        headerChanges(rule.compiled.responseHeaderOps, withOutputs, responseHeaders);
      }
      return { status, validDurationMs, validUseCount, refs, requestHeaders, responseHeaders };
    },

    async quota(bag, name, args) {
      const refs: Ref[] = [];
      let matched = false;
      let decision: QuotaOutcome | undefined;
      for (const rule of quotaRules) {
        if (!applies(rule, bag, refs)) continue;
        for (const action of rule.quota) {
          for (const inst of action.instances) {
            if (!quotaNameMatches(name, inst)) continue;
            matched = true;
            for (const r of inst.refs) refs.push(r);
            const outcome = await allocate(action.handler, inst, bag, args);
            decision = decision === undefined ? outcome : combineQuota(decision, outcome);
          }
        }
      }
      if (!decision) {
        return {
          status: { code: Codes.OK, message: "" },
          granted: args.amount,
          validDurationMs: opts.defaultValidDurationMs,
          refs,
          matched,
        };
      }
      return { ...decision, refs, matched };
    },

    async quotaAll(bag, args, only) {
      const refs: Ref[] = [];
      const restrict = only !== undefined && only !== "" &&
        quotaRules.some((r) => r.quota.some((a) => a.instances.some((i) => quotaNameMatches(only, i))));
      const wanted = quotaSpecs.bindings > 0 ? quotaSpecs.requirements(bag) : undefined;
      const out: QuotaCharge[] = [];
      for (const rule of quotaRules) {
        if (!applies(rule, bag, refs)) continue;
        for (const action of rule.quota) {
          for (const inst of action.instances) {
            if (restrict && !quotaNameMatches(only!, inst)) continue;
            const charge = wanted ? chargeOf(wanted, inst) : 1;
            if (charge === 0) continue;
            const asked = { ...args, amount: charge * args.amount };
            out.push({ ...await allocate(action.handler, inst, bag, asked), amount: asked.amount });
          }
        }
      }
      return out;
    },

    async report(bags) {
      if (reportRules.length === 0) return;
      const byHandler = new Map<BuiltHandler, InstanceValue[]>();
      const refs: Ref[] = [];
      for (const bag of bags) {
        for (const rule of reportRules) {
          refs.length = 0;
          if (!applies(rule, bag, refs)) continue;
          for (const action of rule.report) {
            if (!action.handler.impl?.report) continue;
            let list = byHandler.get(action.handler);
            for (const inst of action.instances) {
              const v = instanceValue(inst, bag);
              if (typeof v === "string") continue;
              if (!list) byHandler.set(action.handler, list = []);
              list.push(v);
            }
          }
        }
      }
      await Promise.all(
        [...byHandler].map(async ([h, list]) => {
          try {
            await h.impl!.report!(list);
          } catch (err) {
            log.error("mixer report handler failed", { handler: h.name, error: errorMessage(err) });
          }
        }),
      );
    },
  };

  async function allocate(
    h: BuiltHandler,
    inst: CompiledInstance,
    bag: Readonly<AttributeBag>,
    args: QuotaArgs,
  ): Promise<QuotaOutcome> {
    const v = instanceValue(inst, bag);
    if (typeof v === "string") {
      return { status: { code: Codes.INVALID_ARGUMENT, message: v }, granted: 0, validDurationMs: 0 };
    }
    if (!h.impl?.quota) return { status: handlerFailed(h), granted: 0, validDurationMs: 0 };
    try {
      const r = h.impl.quota(v, args);
      return r instanceof Promise ? await r : r;
    } catch (err) {
      return {
        status: { code: Codes.INTERNAL, message: `handler ${h.name}: ${errorMessage(err)}` },
        granted: 0,
        validDurationMs: 0,
      };
    }
  }
}

/** The units per request the QuotaSpecs ask of `inst`; 0 when they do not name it. */
function chargeOf(wanted: readonly QuotaRequirement[], inst: CompiledInstance): number {
  let charge = 0;
  for (const q of wanted) if (quotaNameMatches(q.quota, inst)) charge = q.charge;
  return charge;
}

function combineQuota(a: QuotaOutcome, b: QuotaOutcome): QuotaOutcome {
  const tighter = b.granted < a.granted ? b : a;
  return {
    status: a.status.code !== Codes.OK ? a.status : b.status,
    granted: Math.min(a.granted, b.granted),
    validDurationMs: Math.min(a.validDurationMs, b.validDurationMs),
    limit: tighter.limit ?? a.limit ?? b.limit,
    remaining: Math.min(a.remaining ?? Infinity, b.remaining ?? Infinity) === Infinity
      ? undefined
      : Math.min(a.remaining ?? Infinity, b.remaining ?? Infinity),
    resetInMs: tighter.resetInMs,
  };
}

/** Closes handlers that left the table; errors are logged. */
export async function closeHandlers(
  handlers: readonly BuiltHandler[],
  logger: Logger,
  pool: MetricPool,
): Promise<void> {
  await Promise.all(
    handlers.map(async (h) => {
      try {
        await h.impl?.close();
      } catch (err) {
        logger.warn("mixer handler did not close cleanly", { handler: h.name, error: errorMessage(err) });
      }
      if (h.impl?.owner) pool.release(h.impl.owner);
    }),
  );
  pool.sweep();
}
