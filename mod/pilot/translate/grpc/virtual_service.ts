/**
 * Which VirtualService routes a host for a proxy, and which of its HTTP routes apply to the
 * proxy on a port.
 */
import type { HTTPMatchRequest, HTTPRoute, VirtualServiceSpec } from "../../../galley/kinds/networking.ts";
import { hostCovers } from "../../../galley/kinds/networking.ts";
import type { Resource } from "../../../galley/resource.ts";
import type { Proxy } from "../../model/proxy.ts";
import { type PushContext, resolveHost } from "../../model/push_context.ts";
import { labelsMatch } from "../../model/service.ts";

/**
 * The VirtualService bound to "mesh" that routes `hostname` for `proxy`: one naming the host
 * exactly wins over wildcards, a longer wildcard over a shorter; ties go to the order
 * PushContext gives (the proxy's namespace first, then by namespace and name).
 */
export function virtualServiceFor(
  push: PushContext,
  proxy: Proxy,
  hostname: string,
): Resource<VirtualServiceSpec> | undefined {
  let best: { vs: Resource<VirtualServiceSpec>; score: number } | undefined;
  for (const vs of push.virtualServices(proxy, "mesh")) {
    if (!vs.spec.http || vs.spec.http.length === 0) continue;
    for (const h of vs.spec.hosts ?? []) {
      const host = resolveHost(h, vs.metadata.namespace);
      if (!hostCovers(host, hostname)) continue;
      const score = host === hostname ? Number.MAX_SAFE_INTEGER : host.length;
      if (!best || score > best.score) best = { vs, score };
    }
  }
  return best?.vs;
}

/** An HTTP route that applies, with the matches that apply (undefined: it matches everything). */
export interface ApplicableRoute {
  readonly route: HTTPRoute;
  /** Index of the route in the VirtualService's http list. */
  readonly index: number;
  readonly matches?: readonly HTTPMatchRequest[];
}

function matchApplies(m: HTTPMatchRequest, proxy: Proxy, port: number): boolean {
  if (m.port !== undefined && m.port !== port) return false;
  if (m.sourceLabels && !labelsMatch(m.sourceLabels, proxy.labels)) return false;
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== proxy.namespace) return false;
  if (m.gateways && m.gateways.length > 0 && !m.gateways.includes("mesh")) return false;
  return true;
}

/**
 * The HTTP routes of `vs` that apply to `proxy` calling `port`, in order. A route whose every
 * match is for another port, other source labels or namespace, or a gateway is left out.
 */
export function applicableRoutes(vs: VirtualServiceSpec, proxy: Proxy, port: number): ApplicableRoute[] {
  const out: ApplicableRoute[] = [];
  (vs.http ?? []).forEach((route, index) => {
    if (!route.match || route.match.length === 0) {
      out.push({ route, index });
      return;
    }
    const matches = route.match.filter((m) => matchApplies(m, proxy, port));
    if (matches.length > 0) out.push({ route, index, matches });
  });
  return out;
}
