/**
 * Workload auto-registration and health, pilot's side (Istio's WorkloadGroup auto-registration,
 * without writing WorkloadEntries back to a config store: the registrations live in memory as a
 * ServiceRegistry whose workloads ServiceEntries select like WorkloadEntries).
 *
 * - An xDS client whose node metadata carries `AUTO_REGISTER_GROUP` ("NAME" in the node's
 *   NAMESPACE, or "NAMESPACE/NAME") is registered as a workload of that WorkloadGroup: the
 *   group's template with the proxy's first IP as address and labels merged as Istio merges them
 *   (template < group metadata < node LABELS), locality from the node when it has one. The
 *   workload is named as Istio names the WorkloadEntry it would create (`GROUP-IP`), and that
 *   entry's annotations (the group's name, the group's `metadata.annotations`, the health-check
 *   mark) are shown by `/debug/registrationz`.
 * - Every connection of the same workload (Envoy, the agent's own stream, proxyless apps:
 *   same group, namespace and IP) keeps it registered; `graceMs` after the last one closes it
 *   is removed, unless one reconnected meanwhile.
 * - A group missing from config registers nothing until it appears (Envoy's connection is not
 *   ended: config may arrive later); the group's later edits apply at once.
 * - Health travels on the ADS stream as `type.googleapis.com/istio.v1.HealthInformation`
 *   requests. Pilot answers the subscription with the group's probe (one
 *   google.protobuf.Struct resource named "NAMESPACE/NAME", holding the probe in Istio's JSON;
 *   none without a probe) and pushes it again when it changes. A request answering that
 *   response without `error_detail` reports healthy, with `error_detail` unhealthy (its message
 *   kept). A workload of a group with a probe is unhealthy until it reports healthy for the
 *   probe currently in force, and unhealthy workloads leave EDS.
 *
 * - Identity: a connection that presents a client certificate (the TLS gRPC port) registers only
 *   when the certificate is trusted and its SPIFFE ID is in the group's namespace (and has the
 *   template's service account, when the template names one); the workload then takes the
 *   certificate's service account, whatever the node metadata says. A connection without one
 *   (the plaintext port) registers only with `--auto-register-require-identity=false`.
 * - Refusals reach the agent: a stream that subscribes to the health type (the agent's own
 *   registration stream) while its registration is refused ends with PERMISSION_DENIED (identity,
 *   service account) or FAILED_PRECONDITION (the group is not in config), the message naming the
 *   group, the identity and what was expected; on a config change that refuses a registered
 *   workload, its stream ends the same way. Other streams of the workload (Envoy's) keep their
 *   config. Refusals stay visible in `/debug/registrationz` after their streams end
 *   (refusal_log.ts).
 *
 * @module
 */
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { anyPack, StructSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { SettingSpec } from "../cli/setting.ts";
import type { ReadinessProbe, WorkloadEntrySpec, WorkloadGroupSpec } from "../api/kinds/networking.ts";
import type { ConfigReadiness, ConfigStore } from "../galley/mod.ts";
import type { DebugHandler } from "../runtime/module.ts";
import { certificateIdentity, type WorkloadIdentity } from "../citadel/mod.ts";
import { certificateNames, parseCertificate } from "../citadel/mod.ts";
import type { Clock, Timer } from "../shared/clock.ts";
import type { Logger } from "../shared/logger.ts";
import type { ResourceProvider, XdsClient, XdsObserver, XdsResource } from "../xds/mod.ts";
import { contentVersion, setVersion } from "../shared/content_version.ts";
import { type Proxy, proxyFromNode } from "./model/proxy.ts";
import type { RegistryState, ServiceRegistry, Workload } from "./model/registry.ts";
import { createRefusalLog, type Refusal, type RefusalCode } from "./refusal_log.ts";
import type { SharedRegistration, SharedRegistrations } from "./shared_registrations.ts";

/** Istio's health information type URL; the agent (mod/agent/registration.ts) speaks it too. */
export const HEALTH_TYPE_URL = "type.googleapis.com/istio.v1.HealthInformation";

/** The setting for the grace period (joins pilot's settings). */
export const AUTO_REGISTER_GRACE_SETTING: SettingSpec = {
  name: "auto-register-grace",
  kind: { type: "duration" },
  default: 10_000,
  help: "how long an auto-registered workload stays after its last xDS connection closed",
};

/** The setting that lets connections without a certificate register (joins pilot's settings). */
export const AUTO_REGISTER_REQUIRE_IDENTITY_SETTING: SettingSpec = {
  name: "auto-register-require-identity",
  kind: { type: "bool" },
  default: true,
  help: "auto-register only xDS connections that present a mesh certificate in the group's namespace",
};

const NETWORKING = "networking.istio.io";

/** Options for createAutoRegistry. */
export interface AutoRegistryOptions {
  readonly store: Pick<ConfigStore, "snapshot" | "subscribe">;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Time a workload stays registered after its last connection closed. */
  readonly graceMs: number;
  /** Whether a connection without a client certificate may register (default: it may not). */
  readonly requireIdentity?: boolean;
  /** Where to add the provider and observer (the shared ADS server). */
  readonly ads?: { addProvider(p: ResourceProvider): void; addObserver(o: XdsObserver): void };
  /** Registers the /debug/registrationz handler. */
  readonly debug?: (h: DebugHandler) => void;
  /**
   * Galley's readiness: while config is still loading no probe is sent (a group not loaded yet
   * must not read as "no probe"). Absent: always ready.
   */
  readonly configReady?: ConfigReadiness;
  /** Most refusals kept after their streams ended (default 256). */
  readonly maxRefusals?: number;
  /** How long a refusal is kept after its last connection closed (default one hour). */
  readonly keepRefusalsMs?: number;
  /**
   * With `--store`: where registrations are shared with the other replicas (this replica's are
   * published there, the others' served next to them).
   */
  readonly shared?: SharedRegistrations;
  /** This replica's id, shown with its registrations when they are shared. */
  readonly replica?: string;
}

/** How far a workload's registration is: in the registry, waiting for config, or refused. */
export type RegistrationState = "REGISTERED" | "PENDING" | "REFUSED";

/** One registered workload, or a refused attempt, as debug pages show it. */
export interface RegistrationStatus {
  readonly workload: string;
  /** "NAMESPACE/NAME" of the group. */
  readonly group: string;
  readonly address: string;
  readonly connections: number;
  /** REGISTERED: in EDS when healthy; PENDING: config still loading; REFUSED: left out (reason). */
  readonly state: RegistrationState;
  /** Why it is PENDING or REFUSED. */
  readonly reason?: string;
  /** The gRPC status the agent's stream ended with, when REFUSED. */
  readonly code?: RefusalCode;
  /** Node ids of its connections (the last ones while none is open). */
  readonly nodes: readonly string[];
  /** The SPIFFE ID the last connection proved with its certificate. */
  readonly identity?: string;
  /** When it was last refused (ISO), for refusals kept after the registration ended. */
  readonly refusedAt?: string;
  /** Whether the group exists in config (otherwise nothing is registered yet). */
  readonly groupFound: boolean;
  /** The annotations of its WorkloadEntry ({@link autoRegisteredAnnotations}), when the group is found. */
  readonly annotations?: Readonly<Record<string, string>>;
  readonly hasProbe: boolean;
  readonly healthy: boolean;
  /** The last unhealthy report's message. */
  readonly message?: string;
  /** When the last connection closed (ISO), while in the grace period. */
  readonly disconnectedAt?: string;
  /** With `--store`: the replica that holds the workload's stream. */
  readonly replica?: string;
}

/** The auto-registration registry. */
export interface AutoRegistry extends ServiceRegistry {
  /** Serves HEALTH_TYPE_URL. */
  readonly provider: ResourceProvider;
  /** Follows connections, disconnections and health reports. */
  readonly observer: XdsObserver;
  /** Every registration, sorted by workload name. */
  registrations(): RegistrationStatus[];
  /**
   * Refused attempts that have no registration (any more), sorted by node id: bounded in count,
   * each kept for a while after its last connection closed.
   */
  refusals(): RegistrationStatus[];
  /** Cancels grace timers and stops following config. */
  close(): void;
}

interface Health {
  /** The version of the probe response the report answered. */
  readonly version: string;
  readonly healthy: boolean;
  readonly message?: string;
}

interface Registration {
  readonly key: string;
  readonly namespace: string;
  readonly group: string;
  readonly ip: string;
  proxy: Proxy;
  /** The identity the last connection proved with its certificate. */
  identity?: WorkloadIdentity;
  /** Open connections: connection id to node id. */
  readonly connections: Map<string, string>;
  /** Node ids of the open connections, or of the last ones while none is open. */
  nodes: readonly string[];
  disconnectedAt?: number;
  grace?: Timer;
  health?: Health;
}

/** The distinct node ids of a registration's open connections, sorted. */
function nodeIds(r: Registration): string[] {
  return [...new Set(r.connections.values())].sort();
}

/** "NS/NAME" or "NAME" (in the proxy's namespace). */
function groupRef(ref: string, proxyNs: string): { namespace: string; name: string } {
  const slash = ref.indexOf("/");
  return slash < 0
    ? { namespace: proxyNs, name: ref }
    : { namespace: ref.slice(0, slash), name: ref.slice(slash + 1) };
}

/** Istio's name of the WorkloadEntry of an auto-registered workload. */
export function autoRegisteredName(group: string, ip: string): string {
  return `${group}-${ip.replaceAll(":", "-")}`;
}

/** Istio's annotation naming the WorkloadGroup of an auto-registered WorkloadEntry. */
export const AUTO_REGISTRATION_GROUP_ANNOTATION = "istio.io/autoRegistrationGroup";
/** Istio's annotation on a WorkloadEntry whose health the workload's agent reports. */
export const HEALTH_CHECKS_ANNOTATION = "proxy.istio.io/health-checks-enabled";

/**
 * The annotations of the WorkloadEntry auto-registered for group `name`, as Istio writes them:
 * the group's name, then the group's `metadata.annotations` (which win), then the health-check
 * mark when the group has a probe.
 */
export function autoRegisteredAnnotations(name: string, group: WorkloadGroupSpec): Record<string, string> {
  return {
    [AUTO_REGISTRATION_GROUP_ANNOTATION]: name,
    ...group.metadata?.annotations,
    ...(group.probe ? { [HEALTH_CHECKS_ANNOTATION]: "true" } : {}),
  };
}

function locality(node: XdsClient["node"]): string | undefined {
  const l = node.locality;
  if (!l || (!l.region && !l.zone && !l.subZone)) return undefined;
  return [l.region, l.zone, l.subZone].join("/").replace(/\/+$/, "");
}

/** The status a refused stream ends with: the message names the group and the reason. */
export function refusalError(group: string, refusal: Refusal): ConnectError {
  return new ConnectError(
    `auto-registration into WorkloadGroup ${group} refused: ${refusal.reason}`,
    refusal.code === "FAILED_PRECONDITION" ? Code.FailedPrecondition : Code.PermissionDenied,
  );
}

/** The version pilot's single probe resource gets, and so the version of its response. */
function probeResource(groupKey: string, probe: ReadinessProbe): XdsResource {
  const json = JSON.stringify(probe);
  return {
    name: groupKey,
    version: contentVersion(json),
    resource: anyPack(StructSchema, fromJson(StructSchema, probe as unknown as JsonObject)),
  };
}

/**
 * The identity a connection proved, undefined when it presented no certificate, or why its
 * certificate proves nothing.
 */
export function connectionIdentity(c: XdsClient): WorkloadIdentity | { problem: string } | undefined {
  const peer = c.peer;
  if (!peer) return undefined;
  if (!peer.authorized) {
    return { problem: `client certificate is not trusted: ${peer.authorizationError ?? "no reason given"}` };
  }
  let uris: string[];
  try {
    uris = certificateNames(parseCertificate(peer.der)).uris;
  } catch {
    return { problem: "client certificate cannot be parsed" };
  }
  const id = certificateIdentity(uris);
  return typeof id === "string" ? { problem: id } : id;
}

/** Creates the registry, and attaches it to `ads` and `debug` when given. */
export function createAutoRegistry(o: AutoRegistryOptions): AutoRegistry {
  const log = o.logger;
  const regs = new Map<string, Registration>();
  const byConnection = new Map<string, Registration>();
  const listeners = new Set<() => void>();
  const providerListeners = new Set<(t: ReadonlySet<string>, c?: (c: XdsClient) => boolean) => void>();
  const probeCache = new Map<string, XdsResource>();
  /** The node each registration last connected with (for its locality). */
  const nodes = new Map<Registration, XdsClient["node"]>();
  let epoch = 0;
  let cached: { key: string; state: RegistryState } | undefined;
  const refusalLog = createRefusalLog({
    now: () => o.clock.now(),
    max: o.maxRefusals,
    keepMs: o.keepRefusalsMs,
  });
  /** Open connections refused before they registered (identity), with their group. */
  const refusedConnections = new Map<string, { group: string; refusal: Refusal }>();
  const configLoaded = () => o.configReady?.now() ?? true;

  const changed = () => {
    epoch++;
    for (const l of listeners) l();
    publish();
  };

  /** The store's path of a registration: NAMESPACE/GROUP/NAME. */
  const sharedPath = (r: Registration) => `${r.namespace}/${r.group}/${autoRegisteredName(r.group, r.ip)}`;

  /** Hands this replica's registrations to the store (with `--store`). */
  function publish(): void {
    if (!o.shared) return;
    const held = new Map<string, SharedRegistration>();
    const kept = new Set<string>();
    for (const r of regs.values()) {
      // In its grace the entry stays as written (the agent may hold it at another replica now);
      // a connected registration that config refuses or lacks a group for is taken out.
      if (r.connections.size === 0) {
        kept.add(sharedPath(r));
        continue;
      }
      const w = workloadOf(r);
      if (w) {
        held.set(sharedPath(r), {
          replica: o.replica ?? "",
          group: `${r.namespace}/${r.group}`,
          workload: w,
        });
      }
    }
    o.shared.publish(held, kept);
  }
  const groupOf = (r: Registration) =>
    o.store.snapshot().get<WorkloadGroupSpec>(NETWORKING, "WorkloadGroup", r.namespace, r.group);

  function probeOf(r: Registration): XdsResource | undefined {
    const g = groupOf(r);
    if (!g?.spec.probe) return undefined;
    const key = `${r.namespace}/${r.group}`;
    const json = JSON.stringify(g.spec.probe);
    const hit = probeCache.get(key);
    if (hit && hit.version === contentVersion(json)) return hit;
    const res = probeResource(key, g.spec.probe);
    probeCache.set(key, res);
    return res;
  }

  function healthOf(r: Registration): { healthy: boolean; message?: string } {
    const probe = probeOf(r);
    if (!probe) return { healthy: true };
    const h = r.health;
    if (!h || h.version !== setVersion([probe])) {
      return { healthy: false, message: "no health report for the current probe yet" };
    }
    return h.healthy ? { healthy: true } : { healthy: false, message: h.message };
  }

  /** Why a registration is refused by the group in config now (undefined: it is not). */
  function refusalOf(r: Registration, g = groupOf(r)): Refusal | undefined {
    if (!g) {
      if (!configLoaded()) return undefined;
      return {
        code: "FAILED_PRECONDITION",
        reason:
          `there is no such WorkloadGroup in config${r.identity ? ` (identity ${r.identity.uri})` : ""}; ` +
          "create it, or correct the agent's --workload-group",
      };
    }
    const sa = g.spec.template?.serviceAccount;
    if (r.identity && sa && sa !== r.identity.serviceAccount) {
      return {
        code: "PERMISSION_DENIED",
        reason: `identity ${r.identity.uri} has service account ${r.identity.serviceAccount}, ` +
          `but the group's template wants ${sa}`,
      };
    }
    return undefined;
  }

  /** Groups whose service-account mismatch was logged, by registration (to log it once). */
  const mismatchLogged = new WeakSet<Registration>();

  function workloadOf(r: Registration): Workload | undefined {
    const g = groupOf(r);
    if (!g) return undefined;
    const t: WorkloadEntrySpec = g.spec.template ?? {};
    if (refusalOf(r, g)) {
      if (!mismatchLogged.has(r)) {
        mismatchLogged.add(r);
        log.warn("auto-registered workload left out: its identity has another service account", {
          workload: autoRegisteredName(r.group, r.ip),
          identity: r.identity?.uri,
          serviceAccount: t.serviceAccount,
        });
      }
      return undefined;
    }
    const serviceAccount = r.identity?.serviceAccount ?? t.serviceAccount ?? r.proxy.serviceAccount;
    const loc = locality(nodes.get(r)!);
    return {
      key: `${NETWORKING}/WorkloadEntry/${r.namespace}/${autoRegisteredName(r.group, r.ip)}`,
      namespace: r.namespace,
      spec: {
        ...t,
        address: r.ip,
        labels: { ...t.labels, ...g.spec.metadata?.labels, ...r.proxy.labels },
        ...(serviceAccount ? { serviceAccount } : {}),
        ...(loc ? { locality: loc } : {}),
        ...(r.proxy.network && !t.network ? { network: r.proxy.network } : {}),
      },
      healthy: healthOf(r).healthy,
    };
  }

  function connected(c: XdsClient): void {
    let proxy: Proxy;
    try {
      proxy = proxyFromNode(c.node);
    } catch {
      return;
    }
    if (!proxy.autoRegisterGroup) return;
    const ref = groupRef(proxy.autoRegisterGroup, proxy.namespace);
    if (!proxy.ip) {
      log.warn("cannot auto-register a proxy without an IP address", {
        node: c.node.id,
        group: proxy.autoRegisterGroup,
      });
      return;
    }
    const identity = connectionIdentity(c);
    const group = `${ref.namespace}/${ref.name}`;
    const refuse = (reason: string) => {
      log.warn("auto-registration refused", { node: c.node.id, group, reason });
      const refusal: Refusal = { code: "PERMISSION_DENIED", reason };
      refusedConnections.set(c.connectionId, { group, refusal });
      refusalLog.record({
        ...refusal,
        node: c.node.id,
        group,
        workload: autoRegisteredName(ref.name, proxy.ip),
        address: proxy.ip,
        ...(identity && !("problem" in identity) ? { identity: identity.uri } : {}),
      }, c.connectionId);
    };
    if (identity === undefined && (o.requireIdentity ?? true)) {
      refuse(
        "the connection presented no client certificate; connect to the TLS port with the workload " +
          "certificate (or run pilot with --auto-register-require-identity=false)",
      );
      return;
    }
    if (identity && "problem" in identity) {
      refuse(identity.problem);
      return;
    }
    if (identity && identity.namespace !== ref.namespace) {
      refuse(`identity ${identity.uri} is not in the group's namespace ${ref.namespace}`);
      return;
    }
    refusalLog.forget(c.node.id);
    const key = `${ref.namespace}/${ref.name}/${proxy.ip}`;
    let r = regs.get(key);
    const fresh = r === undefined;
    if (!r) {
      r = {
        key,
        namespace: ref.namespace,
        group: ref.name,
        ip: proxy.ip,
        proxy,
        connections: new Map(),
        nodes: [],
      };
      regs.set(key, r);
    }
    const before = JSON.stringify([
      r.proxy.labels,
      r.proxy.serviceAccount,
      r.identity?.uri,
      locality(nodes.get(r) ?? c.node),
    ]);
    r.proxy = proxy;
    r.identity = identity;
    nodes.set(r, c.node);
    r.grace?.cancel();
    r.grace = undefined;
    r.disconnectedAt = undefined;
    r.connections.set(c.connectionId, c.node.id);
    r.nodes = nodeIds(r);
    byConnection.set(c.connectionId, r);
    const g = groupOf(r);
    log.info(fresh ? "workload auto-registered" : "auto-registered workload reconnected", {
      workload: autoRegisteredName(r.group, r.ip),
      group: `${r.namespace}/${r.group}`,
      node: c.node.id,
      ...(g ? {} : { note: "the WorkloadGroup is not in config yet; registered once it is" }),
    });
    const after = JSON.stringify([proxy.labels, proxy.serviceAccount, identity?.uri, locality(c.node)]);
    if (fresh || before !== after) changed();
  }

  function disconnected(c: XdsClient): void {
    if (refusedConnections.delete(c.connectionId)) refusalLog.closed(c.connectionId);
    const r = byConnection.get(c.connectionId);
    if (!r) return;
    byConnection.delete(c.connectionId);
    r.connections.delete(c.connectionId);
    if (r.connections.size > 0) {
      r.nodes = nodeIds(r);
      return;
    }
    r.disconnectedAt = o.clock.now();
    r.grace?.cancel();
    r.grace = o.clock.setTimer(o.graceMs, () => {
      if (r.connections.size > 0 || regs.get(r.key) !== r) return;
      regs.delete(r.key);
      // A refused registration that ends stays visible as a refusal.
      const refusal = refusalOf(r);
      if (refusal) {
        for (const node of r.nodes) {
          refusalLog.record({
            ...refusal,
            node,
            group: `${r.namespace}/${r.group}`,
            workload: autoRegisteredName(r.group, r.ip),
            address: r.ip,
            ...(r.identity ? { identity: r.identity.uri } : {}),
          });
        }
      }
      nodes.delete(r);
      log.info("auto-registered workload removed after its grace period", {
        workload: autoRegisteredName(r.group, r.ip),
        group: `${r.namespace}/${r.group}`,
      });
      changed();
    });
  }

  function reported(c: XdsClient, typeUrl: string, version: string, message?: string): void {
    if (typeUrl !== HEALTH_TYPE_URL) return;
    const r = byConnection.get(c.connectionId);
    if (!r) return;
    const was = healthOf(r);
    r.health = message === undefined ? { version, healthy: true } : { version, healthy: false, message };
    const now = healthOf(r);
    if (was.healthy !== now.healthy) {
      log.info(now.healthy ? "auto-registered workload healthy" : "auto-registered workload unhealthy", {
        workload: autoRegisteredName(r.group, r.ip),
        ...(now.healthy ? {} : { reason: now.message }),
      });
      changed();
    }
  }

  const observer: XdsObserver = {
    connected,
    disconnected,
    acked: (c, t, v) => reported(c, t, v),
    nacked: (c, t, v, m) => reported(c, t, v, m || "unhealthy"),
  };

  const provider: ResourceProvider = {
    typeUrls: [HEALTH_TYPE_URL],
    ready: configLoaded,
    resources(client) {
      const refused = refusedConnections.get(client.connectionId);
      if (refused) throw refusalError(refused.group, refused.refusal);
      const r = byConnection.get(client.connectionId);
      const refusal = r && refusalOf(r);
      if (refusal) throw refusalError(`${r.namespace}/${r.group}`, refusal);
      const probe = r ? probeOf(r) : undefined;
      return probe ? new Map([[probe.name, probe]]) : new Map();
    },
    watch(l) {
      providerListeners.add(l);
      return () => providerListeners.delete(l);
    },
  };

  const pushProbes = () => {
    if (byConnection.size === 0 && refusedConnections.size === 0) return;
    const which = (c: XdsClient) =>
      byConnection.has(c.connectionId) || refusedConnections.has(c.connectionId);
    for (const l of providerListeners) l(new Set([HEALTH_TYPE_URL]), which);
  };
  const unsubscribe = o.store.subscribe(pushProbes);
  const unsubscribeShared = o.shared && o.store.subscribe(publish);
  const unwatchShared = o.shared?.watch(() => {
    epoch++;
    for (const l of listeners) l();
  });
  o.configReady?.promise.then(pushProbes);

  const registry: AutoRegistry = {
    name: "autoregister",
    provider,
    observer,
    state() {
      const key = `${o.store.snapshot().version}|${epoch}`;
      if (cached?.key === key) return cached.state;
      const workloads = [...regs.values()].map(workloadOf).filter((w): w is Workload => w !== undefined);
      const local = new Set(workloads.map((w) => w.key));
      for (const e of o.shared?.others().values() ?? []) {
        if (!local.has(e.workload.key)) workloads.push(e.workload);
      }
      workloads.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      cached = { key, state: { services: [], endpoints: [], workloads } };
      return cached.state;
    },
    watch(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    registrations() {
      return [...regs.values()].map((r): RegistrationStatus => {
        const h = healthOf(r);
        const refusal = refusalOf(r);
        const g = groupOf(r);
        return {
          workload: autoRegisteredName(r.group, r.ip),
          group: `${r.namespace}/${r.group}`,
          address: r.ip,
          connections: r.connections.size,
          state: refusal ? "REFUSED" : configLoaded() ? "REGISTERED" : "PENDING",
          ...(refusal ?? (configLoaded() ? {} : { reason: "pilot's config is still loading" })),
          nodes: r.nodes,
          ...(r.identity ? { identity: r.identity.uri } : {}),
          groupFound: g !== undefined,
          ...(g ? { annotations: autoRegisteredAnnotations(r.group, g.spec) } : {}),
          hasProbe: probeOf(r) !== undefined,
          healthy: h.healthy,
          ...(h.message ? { message: h.message } : {}),
          ...(r.disconnectedAt !== undefined
            ? { disconnectedAt: new Date(r.disconnectedAt).toISOString() }
            : {}),
          ...(o.shared ? { replica: o.replica ?? "" } : {}),
        };
      }).sort((a, b) => (a.workload < b.workload ? -1 : a.workload > b.workload ? 1 : 0));
    },
    refusals() {
      const snapshot = o.store.snapshot();
      return refusalLog.list().map((e): RegistrationStatus => {
        const slash = e.group.indexOf("/");
        const found = snapshot.get<WorkloadGroupSpec>(
          NETWORKING,
          "WorkloadGroup",
          e.group.slice(0, slash),
          e.group.slice(slash + 1),
        );
        return {
          workload: e.workload,
          group: e.group,
          address: e.address,
          connections: e.openConnections,
          state: "REFUSED",
          code: e.code,
          reason: e.reason,
          nodes: [e.node],
          ...(e.identity ? { identity: e.identity } : {}),
          refusedAt: new Date(e.at).toISOString(),
          groupFound: found !== undefined,
          hasProbe: found?.spec.probe !== undefined,
          healthy: false,
        };
      });
    },
    close() {
      unsubscribe();
      unsubscribeShared?.();
      unwatchShared?.();
      for (const r of regs.values()) r.grace?.cancel();
    },
  };
  /** Workloads registered at other replicas and not at this one (with `--store`). */
  function heldElsewhere(): RegistrationStatus[] {
    const local = new Set([...regs.values()].map(sharedPath));
    return [...o.shared?.others() ?? []].filter(([path]) => !local.has(path)).map(([, e]) => ({
      workload: e.workload.key.slice(e.workload.key.lastIndexOf("/") + 1),
      group: e.group,
      address: e.workload.spec.address ?? "",
      connections: 0,
      state: "REGISTERED" as const,
      nodes: [],
      groupFound: true,
      hasProbe: false,
      healthy: e.workload.healthy,
      replica: e.replica,
    })).sort((a, b) => (a.workload < b.workload ? -1 : a.workload > b.workload ? 1 : 0));
  }

  o.ads?.addProvider(provider);
  o.ads?.addObserver(observer);
  o.debug?.({
    path: "registrationz",
    description:
      "auto-registered workloads and refused attempts: group, address, nodes, state (REGISTERED, PENDING, REFUSED with the reason), the WorkloadEntry's annotations, probe and health",
    handle: () => Response.json([...registry.registrations(), ...registry.refusals(), ...heldElsewhere()]),
  });
  return registry;
}
