/**
 * The platform registries pilot reads (`--registry`, `MESHD_REGISTRY`): parsing the values,
 * building each adapter on demand, and combining their views with config under one rule for
 * host names declared more than once:
 *
 * - config (ServiceEntry) wins over every platform registry;
 * - among platform registries, the one listed first in `--registry` wins;
 * - a host a registry loses is left out of the push (its services and endpoints) and reported in
 *   that registry's `status().shadowed` and /debug/registryz.
 *
 * A registry's `state()` is read once per push, guarded: if it throws, the last view it gave is
 * used and the failure is reported, so one broken adapter never blocks a push or the others.
 *
 * @module
 */
import type { SettingSpec } from "../../cli/setting.ts";
import type { ConfigSnapshot } from "../../galley/mod.ts";
import type { ServiceEntrySpec } from "../../api/kinds/networking.ts";
import { resolveHost } from "../../api/mod.ts";
import type { Clock } from "../../shared/clock.ts";
import { contentVersion } from "../../shared/content_version.ts";
import { errorMessage, UsageError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import type { RegistryState, ServiceRegistry } from "../model/registry.ts";
import {
  type PlatformKind,
  type PlatformRegistry,
  registryDisplayName,
  type RegistryStatus,
} from "./platform.ts";

export { registryDisplayName };

/** The `--registry` setting of `meshd serve` (pilot). */
export const REGISTRY_SETTING: SettingSpec = {
  name: "registry",
  kind: { type: "list" },
  default: [],
  help:
    "platform service registries, earlier ones winning a host name: consul://HOST:PORT[?dc=DC&token-file=F], eureka://HOST:PORT/PATH, kubernetes (in-cluster) or kubernetes://?kubeconfig=F",
};

/** One parsed `--registry` value. */
export interface RegistryTarget {
  readonly kind: PlatformKind;
  /** The value as a URL (`kubernetes` alone reads as `kubernetes://`). */
  readonly url: URL;
  /** The value without credentials, naming the registry in logs, status and push reasons. */
  readonly name: string;
}

const KINDS: readonly PlatformKind[] = ["consul", "eureka", "kubernetes"];

/**
 * Reads one `--registry` value. Throws a UsageError naming the flag and the value when the
 * scheme is unknown, a server address is missing or malformed, or the value carries a password.
 */
export function parseRegistry(value: string): RegistryTarget {
  const bad = (why: string): never => {
    throw new UsageError(`--registry ${JSON.stringify(value)}: ${why}`);
  };
  const text = value.trim();
  if (text === "kubernetes") {
    return { kind: "kubernetes", url: new URL("kubernetes://"), name: "kubernetes" };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return bad(
      "not a registry URL; want consul://HOST:PORT, eureka://HOST:PORT/PATH, kubernetes or kubernetes://?kubeconfig=FILE",
    );
  }
  const kind = url.protocol.slice(0, -1) as PlatformKind;
  if (!KINDS.includes(kind)) {
    return bad(
      `unknown registry kind ${JSON.stringify(url.protocol.slice(0, -1))}; want consul, eureka or kubernetes`,
    );
  }
  if (!text.startsWith(`${kind}://`)) bad(`want ${kind}://...`);
  if (url.password !== "") {
    bad("credentials do not belong in the URL (they would show in process listings); use token-file=FILE");
  }
  if (url.hash !== "") bad("a registry URL has no #fragment");
  if (kind === "kubernetes") {
    if (url.host !== "") {
      bad("the API server comes from the pod's service account or from ?kubeconfig=FILE, not the URL's host");
    }
    if (url.pathname !== "" && url.pathname !== "/") bad("a kubernetes registry URL has no path");
    const kubeconfig = url.searchParams.get("kubeconfig");
    if (kubeconfig !== null && kubeconfig === "") bad("kubeconfig= needs a file path");
  } else {
    if (url.hostname === "") bad(`want ${kind}://HOST:PORT (no host given)`);
    if (kind === "consul" && url.pathname !== "" && url.pathname !== "/") {
      bad("a consul registry URL has no path; want consul://HOST:PORT[?dc=DC&token-file=FILE]");
    }
    for (const key of ["dc", "token-file"]) {
      if (url.searchParams.get(key) === "") bad(`${key}= needs a value`);
    }
  }
  return { kind, url, name: registryDisplayName(url) };
}

/** Reads every `--registry` value, in order. Throws a UsageError on a bad or repeated value. */
export function parseRegistries(values: readonly string[]): RegistryTarget[] {
  const targets = values.map(parseRegistry);
  const seen = new Set<string>();
  for (const t of targets) {
    if (seen.has(t.name)) throw new UsageError(`--registry ${JSON.stringify(t.name)}: given twice`);
    seen.add(t.name);
  }
  return targets;
}

/** What every adapter factory takes (mod/pilot/registry/{consul,eureka,kubernetes}.ts). */
export interface PlatformRegistryOptions {
  readonly url: URL;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly fetch?: typeof fetch;
}

/** An adapter factory. */
export type PlatformRegistryFactory = (opts: PlatformRegistryOptions) => PlatformRegistry;

/**
 * Loads the factory of one kind. Each adapter is its own file, imported only when a `--registry`
 * names it (the Kubernetes one is large and most daemons use none).
 */
async function loadFactory(kind: PlatformKind): Promise<PlatformRegistryFactory> {
  const file = `mod/pilot/registry/${kind}.ts`;
  let mod: Record<string, unknown>;
  switch (kind) {
    case "consul":
      mod = await import("./consul.ts");
      break;
    case "eureka":
      mod = await import("./eureka.ts");
      break;
    case "kubernetes":
      mod = await import("./kubernetes.ts");
      break;
  }
  const name = `create${kind[0]!.toUpperCase()}${kind.slice(1)}Registry`;
  const factory = mod[name];
  if (typeof factory !== "function") throw new Error(`${file} does not export ${name}()`);
  return factory as PlatformRegistryFactory;
}

/** Dependencies of {@link createPlatformRegistries}. */
export interface PlatformDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly fetch?: typeof fetch;
  /** Factories by kind, in place of the adapter files (for tests of the framework itself). */
  readonly factories?: Partial<Record<PlatformKind, PlatformRegistryFactory>>;
}

/**
 * Builds one adapter per target, in order; each starts syncing in the background. A factory
 * refusing its URL (an unknown query parameter, a missing file) is a UsageError naming the value.
 */
export async function createPlatformRegistries(
  targets: readonly RegistryTarget[],
  deps: PlatformDeps,
): Promise<PlatformRegistry[]> {
  const built: PlatformRegistry[] = [];
  try {
    for (const t of targets) {
      const factory = deps.factories?.[t.kind] ?? await loadFactory(t.kind);
      try {
        built.push(factory({
          url: t.url,
          clock: deps.clock,
          logger: deps.logger.child({ registry: t.name }),
          ...(deps.fetch ? { fetch: deps.fetch } : {}),
        }));
      } catch (e) {
        throw new UsageError(`--registry ${JSON.stringify(t.name)}: ${errorMessage(e)}`);
      }
    }
  } catch (e) {
    await Promise.allSettled(built.map((r) => r.stop()));
    throw e;
  }
  return built;
}

/** Hosts declared by config's ServiceEntries, as pilot resolves them. */
export function configHosts(config: ConfigSnapshot): ReadonlySet<string> {
  const hosts = new Set<string>();
  for (const r of config.list<ServiceEntrySpec>("networking.istio.io", "ServiceEntry")) {
    for (const h of r.spec.hosts) hosts.add(resolveHost(h, r.metadata.namespace));
  }
  return hosts;
}

/** One registry's view after the collision rule. */
export interface CombinedState {
  /** The view pushed: the registry's own state object when it lost nothing. */
  readonly state: RegistryState;
  /** Hosts left out because config or an earlier registry declares them, sorted. */
  readonly shadowed: readonly string[];
}

/**
 * Applies the collision rule to platform registries' states, given in `--registry` order:
 * a registry's services and endpoints whose host config or an earlier registry declares are
 * dropped and reported. Workloads are kept (only config selects them). Pure.
 */
export function applyCollisionRule(
  declaredByConfig: ReadonlySet<string>,
  states: readonly RegistryState[],
): CombinedState[] {
  const claimed = new Set(declaredByConfig);
  return states.map((state) => {
    const own = new Set(state.services.map((s) => s.hostname));
    const lost = [...own].filter((h) => claimed.has(h)).sort();
    for (const h of own) claimed.add(h);
    if (lost.length === 0) return { state, shadowed: [] };
    const gone = new Set(lost);
    return {
      state: {
        services: state.services.filter((s) => !gone.has(s.hostname)),
        endpoints: state.endpoints.filter((e) => !gone.has(e.hostname)),
        workloads: state.workloads,
      },
      shadowed: lost,
    };
  });
}

/** A state's content in parts: what besides endpoints it declares, and its endpoints per host. */
interface StateDigest {
  /** A hash of the whole state. */
  readonly version: string;
  /** A hash of its services and workloads. */
  readonly shape: string;
  /** A hash of each host name's endpoints, in the state's order. */
  readonly hosts: ReadonlyMap<string, string>;
}

const digests = new WeakMap<RegistryState, StateDigest>();

/** The state's digest, computed once per state object (states are immutable). */
function digestOf(state: RegistryState): StateDigest {
  let d = digests.get(state);
  if (d !== undefined) return d;
  const byHost = new Map<string, RegistryState["endpoints"][number][]>();
  for (const e of state.endpoints) {
    const list = byHost.get(e.hostname);
    if (list) list.push(e);
    else byHost.set(e.hostname, [e]);
  }
  const hosts = new Map<string, string>();
  for (const [host, list] of byHost) hosts.set(host, contentVersion(JSON.stringify(list)));
  const shape = contentVersion(JSON.stringify([state.services, state.workloads]));
  const parts = [shape];
  for (const [host, v] of hosts) parts.push(`${host}=${v}`);
  d = { version: contentVersion(parts.join("\n")), shape, hosts };
  digests.set(state, d);
  return d;
}

/** A content hash of a state, computed once per state object (states are immutable). */
export function stateVersion(state: RegistryState): string {
  return digestOf(state).version;
}

/**
 * The host names whose endpoints differ between two lists of states (the same registries, in
 * order), when nothing else differs: undefined when a registry was added or removed or its
 * services or workloads changed. Endpoints that only moved within a state count as changed.
 */
export function endpointChanges(
  before: readonly RegistryState[],
  after: readonly RegistryState[],
): ReadonlySet<string> | undefined {
  if (before.length !== after.length) return undefined;
  const changed = new Set<string>();
  for (let i = 0; i < after.length; i++) {
    if (before[i] === after[i]) continue;
    const a = digestOf(before[i]!);
    const b = digestOf(after[i]!);
    if (a.shape !== b.shape) return undefined;
    for (const [host, v] of b.hosts) if (a.hosts.get(host) !== v) changed.add(host);
    for (const host of a.hosts.keys()) if (!b.hosts.has(host)) changed.add(host);
  }
  return changed;
}

/** The registries' part of a push's version, from each state's cached hash. */
export function registriesVersion(states: readonly RegistryState[]): string {
  return contentVersion(states.map(stateVersion).join(","));
}

/** What pilot reads from its platform registries per push. */
export interface PlatformRegistrySet {
  /** The platform registries, in `--registry` order (for watching). */
  readonly registries: readonly PlatformRegistry[];
  /**
   * The registries' states after the collision rule against `config`, in order. Never throws: a
   * registry whose `state()` throws contributes its last good view.
   */
  states(config: ConfigSnapshot): RegistryState[];
  /** Each registry's status with what the last `states()` call shadowed, for /debug/registryz. */
  statuses(): RegistryStatus[];
  /** Stops every registry. */
  stop(): Promise<void>;
}

const EMPTY: RegistryState = { services: [], endpoints: [], workloads: [] };

/** Wraps built platform registries for pilot's pushes and debug output. */
export function createPlatformRegistrySet(
  registries: readonly PlatformRegistry[],
  opts: { logger: Logger; clock: Clock },
): PlatformRegistrySet {
  const lastGood = new Map<PlatformRegistry, RegistryState>();
  const readError = new Map<PlatformRegistry, { message: string; at: number }>();
  let shadowed = new Map<PlatformRegistry, readonly string[]>();
  const hostsOf = new WeakMap<ConfigSnapshot, ReadonlySet<string>>();

  const read = (r: PlatformRegistry): RegistryState => {
    try {
      const s = r.state();
      lastGood.set(r, s);
      readError.delete(r);
      return s;
    } catch (e) {
      const message = `state() failed: ${errorMessage(e)}`;
      if (readError.get(r)?.message !== message) {
        opts.logger.warn("registry view unreadable; keeping its last good view", {
          registry: r.name,
          error: message,
        });
      }
      readError.set(r, { message, at: opts.clock.now() });
      return lastGood.get(r) ?? EMPTY;
    }
  };

  const statusOf = (r: PlatformRegistry): RegistryStatus => {
    let base: RegistryStatus;
    try {
      base = r.status();
    } catch (e) {
      const view = lastGood.get(r) ?? EMPTY;
      base = {
        name: r.name,
        kind: r.kind,
        address: r.name,
        synced: lastGood.has(r),
        stale: true,
        lastError: `status() failed: ${errorMessage(e)}`,
        lastErrorMs: opts.clock.now(),
        services: view.services.length,
        endpoints: view.endpoints.length,
      };
    }
    const err = readError.get(r);
    const lost = shadowed.get(r) ?? [];
    return {
      ...base,
      ...(err ? { stale: true, lastError: err.message, lastErrorMs: err.at } : {}),
      shadowed: [...new Set([...(base.shadowed ?? []), ...lost])].sort(),
    };
  };

  return {
    registries,
    states(config) {
      let hosts = hostsOf.get(config);
      if (!hosts) hostsOf.set(config, hosts = configHosts(config));
      const combined = applyCollisionRule(hosts, registries.map(read));
      const next = new Map<PlatformRegistry, readonly string[]>();
      combined.forEach((c, i) => {
        const r = registries[i]!;
        const before = shadowed.get(r) ?? [];
        if (c.shadowed.join(",") !== before.join(",") && c.shadowed.length > 0) {
          opts.logger.info("registry hosts shadowed by config or an earlier --registry", {
            registry: r.name,
            hosts: c.shadowed.slice(0, 20),
            count: c.shadowed.length,
          });
        }
        next.set(r, c.shadowed);
      });
      shadowed = next;
      return combined.map((c) => c.state);
    },
    statuses: () => registries.map(statusOf),
    async stop() {
      await Promise.allSettled(registries.map((r) => r.stop()));
    },
  };
}

/**
 * Watches every registry in `list` for the debounce, guarding against a `watch` that throws
 * (the registry is then read on other pushes only). Returns the registries as the debounce
 * wants them.
 */
export function guardedWatchers(
  list: readonly ServiceRegistry[],
  logger: Logger,
): Pick<ServiceRegistry, "name" | "watch">[] {
  return list.map((r) => ({
    name: r.name,
    watch(listener: () => void) {
      try {
        return r.watch(listener);
      } catch (e) {
        logger.warn("registry cannot be watched; its changes wait for other pushes", {
          registry: r.name,
          error: errorMessage(e),
        });
        return () => {};
      }
    },
  }));
}
