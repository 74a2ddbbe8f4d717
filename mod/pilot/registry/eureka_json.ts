/**
 * Eureka's registry documents as a client reads them: the `applications` body of `GET /apps` and
 * `GET /apps/delta` (Netflix's REST operations page and its Jackson JSON codec), the local copy a
 * client keeps, deltas applied to that copy, and the apps hash code clients compare with the
 * server's to detect a copy that drifted.
 *
 * Both JSON dialects are read: the Jackson codec's (arrays everywhere, numeric ports) and the older
 * Jersey/Jettison one, where a list with one element is written as the element itself and numbers
 * as strings.
 *
 * @module
 */

/** One instance as meshd keeps it; only the fields the mesh reads. */
export interface EurekaInstance {
  /** Application name, upper-case as Eureka stores it. */
  readonly app: string;
  /** The instance id (instanceId, else the AWS instance-id, else hostName, as Eureka's getId). */
  readonly id: string;
  readonly hostName: string;
  readonly ipAddr: string;
  /** UP, DOWN, STARTING, OUT_OF_SERVICE or UNKNOWN. */
  readonly status: string;
  /** The plain port when enabled. */
  readonly port?: number;
  /** The secure port when enabled. */
  readonly securePort?: number;
  readonly vipAddress?: string;
  /** Metadata with string values, without Eureka's "@class" marker. */
  readonly metadata: Readonly<Record<string, string>>;
  /** AWS availability zone from an Amazon dataCenterInfo. */
  readonly availabilityZone?: string;
  /** Why the instance cannot be served, when a field it needs is missing or malformed. */
  readonly problem?: string;
}

/** A delta entry's action. */
export type EurekaAction = "ADDED" | "MODIFIED" | "DELETED";

/** An `applications` document. */
export interface EurekaApplications {
  readonly instances: readonly EurekaInstance[];
  /** `actionType` per instance (same order as `instances`); deltas carry one on each. */
  readonly actions: readonly (EurekaAction | undefined)[];
  /** `apps__hashcode`: the server's reconcile hash of its whole registry. */
  readonly hashCode?: string;
  /** `versions__delta`. */
  readonly version?: string;
}

/** A client's copy of the registry, keyed by {@link instanceKey}. */
export type EurekaCopy = ReadonlyMap<string, EurekaInstance>;

/** The key of an instance in a copy: application and id. */
export function instanceKey(i: Pick<EurekaInstance, "app" | "id">): string {
  return `${i.app}/${i.id}`;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A JSON list in either dialect: absent, empty string or null is empty; a lone object is one. */
function asList(v: unknown): unknown[] {
  if (v === undefined || v === null || v === "") return [];
  return Array.isArray(v) ? v : [v];
}

/** A string or number field as text; undefined when absent. */
function text(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return undefined;
}

/**
 * A port field: `{"$": 8080, "@enabled": "true"}` (either dialect, number or string) or a bare
 * number. Returns the port when enabled; `enabledByDefault` applies when "@enabled" is missing
 * (Eureka enables the plain port and disables the secure one unless told otherwise).
 */
function readPort(v: unknown, enabledByDefault: boolean, field: string): { port?: number; problem?: string } {
  if (v === undefined || v === null) return {};
  const raw = isObject(v) ? v["$"] : v;
  const enabledText = isObject(v) ? text(v["@enabled"]) : undefined;
  const enabled = enabledText === undefined ? enabledByDefault : enabledText.toLowerCase() === "true";
  if (!enabled) return {};
  const n = Number(text(raw));
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    return { problem: `${field}: want a port number 1-65535, got ${JSON.stringify(raw)}` };
  }
  return { port: n };
}

function readMetadata(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObject(v)) return out;
  for (const [k, val] of Object.entries(v)) {
    if (k === "@class") continue;
    const s = text(val);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

const ACTIONS: readonly string[] = ["ADDED", "MODIFIED", "DELETED"];

/** Reads one instance object; `field` names it in messages. */
function readInstance(
  v: unknown,
  appName: string,
  field: string,
): { instance: EurekaInstance; action?: EurekaAction } {
  if (!isObject(v)) {
    return {
      instance: {
        app: appName,
        id: field,
        hostName: "",
        ipAddr: "",
        status: "UNKNOWN",
        metadata: {},
        problem: `${field}: want an object`,
      },
    };
  }
  const dc = isObject(v["dataCenterInfo"]) ? v["dataCenterInfo"] : {};
  const dcMeta = isObject(dc["metadata"]) ? dc["metadata"] : {};
  const hostName = text(v["hostName"]) ?? "";
  const app = (text(v["app"]) ?? appName).toUpperCase();
  const id = text(v["instanceId"]) || text(dcMeta["instance-id"]) || hostName;
  const ipAddr = text(v["ipAddr"]) ?? "";
  const port = readPort(v["port"], true, `${field}.port`);
  const securePort = readPort(v["securePort"], false, `${field}.securePort`);
  const problems = [
    id === "" ? `${field}: no instanceId or hostName` : undefined,
    ipAddr === "" ? `${field}.ipAddr: want an address` : undefined,
    port.problem,
    securePort.problem,
  ].filter((p): p is string => p !== undefined);
  const action = text(v["actionType"]);
  const zone = text(dcMeta["availability-zone"]);
  const vip = text(v["vipAddress"]);
  return {
    instance: {
      app,
      id: id || field,
      hostName,
      ipAddr,
      status: (text(v["status"]) ?? "UNKNOWN").toUpperCase(),
      ...(port.port !== undefined ? { port: port.port } : {}),
      ...(securePort.port !== undefined ? { securePort: securePort.port } : {}),
      ...(vip ? { vipAddress: vip } : {}),
      metadata: readMetadata(v["metadata"]),
      ...(zone ? { availabilityZone: zone } : {}),
      ...(problems.length > 0 ? { problem: problems.join("; ") } : {}),
    },
    ...(action !== undefined && ACTIONS.includes(action) ? { action: action as EurekaAction } : {}),
  };
}

/**
 * Reads an `{"applications": {...}}` body. Throws (naming `where` and the field) when the document
 * itself is not one; an instance with a bad field is kept with its `problem` set, so it still
 * counts in the hash code but is not served.
 */
export function parseApplications(body: unknown, where: string): EurekaApplications {
  if (!isObject(body) || !isObject(body["applications"])) {
    throw new Error(`${where}: want a JSON object with an "applications" object`);
  }
  const doc = body["applications"];
  const instances: EurekaInstance[] = [];
  const actions: (EurekaAction | undefined)[] = [];
  asList(doc["application"]).forEach((a, ai) => {
    const field = `applications.application[${ai}]`;
    if (!isObject(a)) throw new Error(`${where}: ${field}: want an object`);
    const name = (text(a["name"]) ?? "").toUpperCase();
    asList(a["instance"]).forEach((inst, ii) => {
      const r = readInstance(inst, name, `${field}.instance[${ii}]`);
      instances.push(r.instance);
      actions.push(r.action);
    });
  });
  const hashCode = text(doc["apps__hashcode"]);
  const version = text(doc["versions__delta"]);
  return {
    instances,
    actions,
    ...(hashCode !== undefined ? { hashCode } : {}),
    ...(version !== undefined ? { version } : {}),
  };
}

/** A copy holding exactly the instances of a full `apps` document. */
export function copyFromFull(doc: EurekaApplications): EurekaCopy {
  const out = new Map<string, EurekaInstance>();
  for (const i of doc.instances) out.set(instanceKey(i), i);
  return out;
}

/**
 * Applies a delta to a copy as Eureka clients do: ADDED and MODIFIED put the instance (replacing
 * one with the same id), DELETED removes it. Entries without an action are treated as MODIFIED.
 * Returns a new copy; the input is not changed.
 */
export function applyDelta(copy: EurekaCopy, delta: EurekaApplications): EurekaCopy {
  const out = new Map(copy);
  delta.instances.forEach((i, n) => {
    if (delta.actions[n] === "DELETED") out.delete(instanceKey(i));
    else out.set(instanceKey(i), i);
  });
  return out;
}

/**
 * Eureka's reconcile hash code of a registry: each status with its instance count, statuses in
 * sorted order, each part followed by "_" (for example "DOWN_1_UP_3_"; "" when empty).
 */
export function reconcileHashCode(instances: Iterable<Pick<EurekaInstance, "status">>): string {
  const counts = new Map<string, number>();
  for (const i of instances) counts.set(i.status, (counts.get(i.status) ?? 0) + 1);
  return [...counts.keys()].sort().map((s) => `${s}_${counts.get(s)}_`).join("");
}
