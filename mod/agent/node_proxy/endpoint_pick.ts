/**
 * Endpoint choice for the node proxy's outbound connections: among a cluster's healthy endpoints
 * that are not ejected and not already tried for this connection, the lowest locality priority
 * that has any, then by the cluster's policy with the endpoints' weights (smooth weighted
 * round robin, weighted random, or fewest open connections per weight). Connect failures count
 * per endpoint; with outlier detection, `consecutiveErrors` in a row eject the endpoint for
 * `baseEjectionMs` times the number of times it was ejected. When every candidate is ejected the
 * ejection is ignored (Envoy's panic), so a cluster is never emptied by its own detector.
 *
 * @module
 */
import type { Clock } from "../../shared/clock.ts";
import type { Endpoint, UpstreamCluster } from "./view.ts";

/** The key of an endpoint within a cluster. */
export function endpointKey(e: Pick<Endpoint, "address" | "port">): string {
  return e.address.includes(":") ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

interface EndpointState {
  failures: number;
  ejections: number;
  ejectedUntil: number;
  active: number;
  /** Smooth weighted round robin's running weight. */
  current: number;
}

/** Chooses endpoints and learns from connect results. One per node proxy; state per cluster. */
export interface EndpointPicker {
  /** An endpoint of `cluster` not in `tried` (endpoint keys), or undefined when none is left. */
  pick(cluster: UpstreamCluster, tried?: ReadonlySet<string>): Endpoint | undefined;
  /** Records a connect attempt's outcome (counts toward ejection; success resets the count). */
  report(cluster: UpstreamCluster, e: Endpoint, ok: boolean): void;
  /** A connection to `e` opened (`+1`) or closed (`-1`), for LEAST_REQUEST. */
  track(cluster: UpstreamCluster, e: Endpoint, delta: 1 | -1): void;
  /** Whether `e` is ejected now. */
  ejected(cluster: UpstreamCluster, e: Endpoint): boolean;
}

/** Creates a picker; `random` gives uniform numbers in [0, 1). */
export function createEndpointPicker(o: { clock: Clock; random?: () => number }): EndpointPicker {
  const random = o.random ?? Math.random;
  const states = new Map<string, Map<string, EndpointState>>();
  const stateOf = (c: UpstreamCluster, e: Endpoint): EndpointState => {
    let byKey = states.get(c.name);
    if (!byKey) states.set(c.name, byKey = new Map());
    const k = endpointKey(e);
    let s = byKey.get(k);
    if (!s) byKey.set(k, s = { failures: 0, ejections: 0, ejectedUntil: 0, active: 0, current: 0 });
    return s;
  };
  const isEjected = (c: UpstreamCluster, e: Endpoint) => stateOf(c, e).ejectedUntil > o.clock.now();

  return {
    pick(cluster, tried = new Set()) {
      const open = cluster.endpoints.filter((e) => e.healthy && !tried.has(endpointKey(e)));
      if (open.length === 0) return undefined;
      const live = open.filter((e) => !isEjected(cluster, e));
      const pool = lowestPriority(live.length > 0 ? live : open);
      switch (cluster.lbPolicy) {
        case "RANDOM":
          return weightedRandom(pool, random());
        case "LEAST_REQUEST":
          return leastLoaded(pool, (e) => stateOf(cluster, e).active, random());
        default:
          return smoothRoundRobin(pool, (e) => stateOf(cluster, e));
      }
    },
    report(cluster, e, ok) {
      const s = stateOf(cluster, e);
      if (ok) {
        s.failures = 0;
        return;
      }
      s.failures++;
      const od = cluster.outlier;
      if (od && od.consecutiveErrors > 0 && s.failures >= od.consecutiveErrors) {
        s.ejections++;
        s.failures = 0;
        s.ejectedUntil = o.clock.now() + od.baseEjectionMs * s.ejections;
      }
    },
    track(cluster, e, delta) {
      const s = stateOf(cluster, e);
      s.active = Math.max(0, s.active + delta);
    },
    ejected: isEjected,
  };
}

/** The endpoints of the lowest priority present. */
function lowestPriority(list: readonly Endpoint[]): Endpoint[] {
  const min = Math.min(...list.map((e) => e.priority));
  return list.filter((e) => e.priority === min);
}

const weightOf = (e: Endpoint) => Math.max(1, e.weight);

/** Weighted random choice; `r` in [0, 1). */
export function weightedRandom(list: readonly Endpoint[], r: number): Endpoint {
  const total = list.reduce((n, e) => n + weightOf(e), 0);
  let at = r * total;
  for (const e of list) {
    at -= weightOf(e);
    if (at < 0) return e;
  }
  return list[list.length - 1]!;
}

/** Smooth weighted round robin (each pick adds every weight, takes the largest, subtracts the total). */
function smoothRoundRobin(list: readonly Endpoint[], state: (e: Endpoint) => { current: number }): Endpoint {
  const total = list.reduce((n, e) => n + weightOf(e), 0);
  let best = list[0]!;
  let bestCurrent = -Infinity;
  for (const e of list) {
    const s = state(e);
    s.current += weightOf(e);
    if (s.current > bestCurrent) {
      best = e;
      bestCurrent = s.current;
    }
  }
  state(best).current -= total;
  return best;
}

/** The endpoint with the fewest open connections per unit of weight; ties by weighted random. */
function leastLoaded(list: readonly Endpoint[], active: (e: Endpoint) => number, r: number): Endpoint {
  const load = (e: Endpoint) => active(e) / weightOf(e);
  const min = Math.min(...list.map(load));
  return weightedRandom(list.filter((e) => load(e) === min), r);
}
