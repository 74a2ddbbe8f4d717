/**
 * What an adapter is to mixer's dispatcher: a factory that builds a handler from a `handler`
 * resource's params, and the handler's check, quota and report entry points.
 *
 * @module
 */
import type { MeshConfig } from "../../api/kinds/mesh_config.ts";
import type { Clock } from "../../shared/clock.ts";
import type { Logger } from "../../shared/logger.ts";
import type { MetricsRegistry } from "../../shared/metrics.ts";
import type { AttributeBag } from "../client/wire.ts";

/** A google.rpc.Status: a gRPC code (0 is OK) and a message. */
export interface RpcStatus {
  readonly code: number;
  readonly message: string;
}

/** The OK status. */
export const OK: RpcStatus = { code: 0, message: "" };

/** gRPC status codes used by mixer. */
export const Codes = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** One instance as a handler receives it: a template's fields, evaluated for one request. */
export interface InstanceValue {
  /** NAME.NAMESPACE of the instance resource. */
  readonly name: string;
  readonly template: string;
  /** The evaluated fields (CEL results as plain JS: strings, numbers, Dates, objects). */
  readonly fields: Readonly<Record<string, unknown>>;
  /** The attributes the instance was evaluated from (one object per request). */
  readonly bag?: Readonly<AttributeBag>;
}

/** A check adapter's decision. */
export interface CheckOutcome {
  readonly status: RpcStatus;
  /** How long the decision may be reused, in milliseconds. */
  readonly validDurationMs: number;
  /** How many times the decision may be reused. */
  readonly validUseCount: number;
  /** Values a rule's header operations read as ACTION_NAME.output.FIELD. */
  readonly output?: Readonly<Record<string, unknown>>;
}

/** What a quota allocation asks for. */
export interface QuotaArgs {
  /** Units wanted; at least 1. */
  readonly amount: number;
  /** Grant what is left rather than nothing when less than `amount` is left. */
  readonly bestEffort: boolean;
  /** Retries with the same id within the deduplication window get the first answer. */
  readonly deduplicationId?: string;
}

/** A quota adapter's answer. */
export interface QuotaOutcome {
  readonly status: RpcStatus;
  /** Units granted, 0 to amount. */
  readonly granted: number;
  /** How long the grant may be spent, in milliseconds. */
  readonly validDurationMs: number;
  /** The limit that applied: units per window. */
  readonly limit?: { readonly maxAmount: number; readonly windowMs: number };
  /** Units left in the window after this allocation, when the adapter knows. */
  readonly remaining?: number;
  /** Milliseconds until units come back (the window ends or its oldest slot ages out). */
  readonly resetInMs?: number;
}

/** Everything an adapter's handler gets from mixer. */
export interface AdapterEnv {
  /** The handler's name, NAME.NAMESPACE, for logs and metrics. */
  readonly handler: string;
  /** The handler's namespace: bare instance names in its params are resolved there. */
  readonly namespace: string;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics: MetricsRegistry;
  /** The mesh settings in force now (they change without rebuilding handlers). */
  mesh(): MeshConfig;
}

/**
 * A built handler. Each entry point is called only for the templates the adapter accepts.
 * Calls may overlap; a handler keeps its own state consistent (JS runs one call at a time between
 * awaits). Entry points never throw for a bad request: they answer a status.
 */
export interface Handler {
  check?(instances: readonly InstanceValue[]): CheckOutcome | Promise<CheckOutcome>;
  quota?(instance: InstanceValue, args: QuotaArgs): QuotaOutcome | Promise<QuotaOutcome>;
  report?(instances: readonly InstanceValue[]): void | Promise<void>;
  /** Releases timers, connections and files. Called once, after the handler left the table. */
  close(): void | Promise<void>;
  /** Identifies the handler to shared resources (the prometheus metric pool). */
  readonly owner?: object;
}

/** Builds a handler from its params. Throws with a message naming the problem. */
export type AdapterFactory = (params: unknown, env: AdapterEnv) => Handler;

/**
 * Whether a quota or metric name in a handler's params (`requestcount`,
 * `requestcount.istio-system`, or Istio's `requestcount.quota.istio-system`) names the instance
 * NAME.NAMESPACE. A bare name means the handler's namespace.
 */
export function instanceNameMatches(configured: string, instance: string, handlerNamespace: string): boolean {
  const parts = configured.split(".");
  const ns = parts.length === 1
    ? handlerNamespace
    : parts.length === 2
    ? parts[1]!
    : parts[parts.length - 1]!;
  return `${parts[0]}.${ns}` === instance;
}

/** A dimension value as text: IPs dotted, timestamps ISO, maps JSON. */
export function dimensionText(v: unknown): string {
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) {
    if (v.length === 4) return v.join(".");
    const groups: string[] = [];
    for (let i = 0; i + 1 < v.length; i += 2) groups.push(((v[i]! << 8) | v[i + 1]!).toString(16));
    return groups.join(":");
  }
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "object" && v !== null) return JSON.stringify(v);
  return String(v);
}

/**
 * Makes a CEL result JSON-friendly: Dates as ISO text, IPs as text, bigints as numbers (or text
 * when too large), Maps as objects.
 */
export function jsonFriendly(v: unknown): unknown {
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return dimensionText(v);
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(jsonFriendly);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), jsonFriendly(x)]));
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = jsonFriendly(x);
    return out;
  }
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  return v;
}
