/**
 * The mesh as the console pages read it, built once per config version: pilot's PushContext over
 * galley's current snapshot (services, endpoints, policies), the workloads that are VMs, and the
 * mTLS mode in force for each service's namespace.
 *
 * @module
 */
import type { ConfigSnapshot } from "../galley/mod.ts";
import { createPushContext, type PushContext } from "../pilot/mod.ts";
import type { ConsoleSource } from "./source.ts";

/** What the pages need from the config. */
export interface MeshModel {
  readonly version: number;
  readonly push: PushContext;
  /** "name.namespace" of every workload declared by a WorkloadEntry (VMs and bare metal). */
  readonly vms: ReadonlySet<string>;
  /** The peer-authentication mode for workloads of `namespace` without labels: STRICT, PERMISSIVE, DISABLE. */
  mtlsMode(namespace: string): string;
}

const EMPTY_SNAPSHOT: ConfigSnapshot = {
  version: 0,
  resources: new Map(),
  list: () => [],
  get: () => undefined,
};

/** Builds the model of `snapshot` (pure). */
export function buildModel(snapshot: ConfigSnapshot): MeshModel {
  const push = createPushContext({ config: snapshot });
  const vms = new Set<string>();
  for (const r of snapshot.list("networking.istio.io", "WorkloadEntry")) {
    vms.add(`${r.metadata.name}.${r.metadata.namespace ?? "default"}`);
  }
  const modes = new Map<string, string>();
  return {
    version: snapshot.version,
    push,
    vms,
    mtlsMode(namespace) {
      let m = modes.get(namespace);
      if (m === undefined) {
        m = "PERMISSIVE";
        for (const pa of push.peerAuthentications({ namespace, labels: {} })) {
          const mode = (pa.spec as { mtls?: { mode?: string } }).mtls?.mode;
          if (mode !== undefined && mode !== "UNSET") m = mode;
        }
        modes.set(namespace, m);
      }
      return m;
    },
  };
}

/** A function giving the model of the store's current snapshot, rebuilt only when it changed. */
export function modelCache(src: ConsoleSource): () => MeshModel {
  let last: MeshModel | undefined;
  let lastSnap: ConfigSnapshot | undefined;
  return () => {
    const snap = src.config?.snapshot() ?? EMPTY_SNAPSHOT;
    if (last === undefined || snap !== lastSnap) {
      last = buildModel(snap);
      lastSnap = snap;
    }
    return last;
  };
}
