/**
 * What a node proxy's resources leave out or approximate of what a sidecar would get from the
 * same config, per resource and field (node_proxy_cluster.ts and node_proxy_listener.ts say why):
 * it carries every protocol as TCP, so it has no request to hash or route on, cannot originate
 * TLS for the application, write PROXY headers, or ask an external authorizer. A VirtualService's
 * `http` rules (on HTTP ports) and `tls` rules (on TLS and HTTPS ports), which a sidecar would
 * apply there, are not: such connections go to the service's own cluster (its `tcp` rules are
 * applied, node_proxy_route.ts). Pure; sorted by resource then field.
 *
 * @module
 */
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { byString } from "./conversion.ts";
import { planCustomAuthz } from "./ext_authz.ts";
import { nodeProxyPlans } from "./node_proxy_cluster.ts";
import { routesByHttp, routesByTls } from "./node_proxy_route.ts";
import { reachableServices } from "./proxy_scope.ts";
import { virtualServiceFor } from "./route_plan.ts";

/** One thing a node proxy cannot express (the shape of grpc/unsupported.ts's gaps). */
export interface NodeProxyUnsupported {
  /** `cluster NAME`, `inbound listener` or `outbound HOST:PORT`. */
  readonly resource: string;
  /** The config field, relative to the merged traffic policy or to the AuthorizationPolicy. */
  readonly field: string;
  readonly reason: string;
}

/** The gaps of a node proxy's configuration (see the module notes). */
export function nodeProxyUnsupported(push: PushContext, proxy: Proxy): NodeProxyUnsupported[] {
  const out: NodeProxyUnsupported[] = [];
  for (const plan of nodeProxyPlans(push, proxy)) {
    const resource = `cluster ${plan.name}`;
    const { loadBalancer, tls, proxyProtocol } = plan.policy;
    if (loadBalancer?.consistentHash) {
      out.push({
        resource,
        field: "loadBalancer.consistentHash",
        reason: "an L4 node proxy has no request to hash; LEAST_REQUEST is used",
      });
    }
    if (tls?.mode === "SIMPLE" || tls?.mode === "MUTUAL") {
      out.push({
        resource,
        field: "tls.mode",
        reason:
          `the node proxy does not originate ${tls.mode} TLS; bytes go to the endpoint as the application sent them`,
      });
    }
    if (proxyProtocol) {
      out.push({ resource, field: "proxyProtocol", reason: "the node proxy sends no PROXY protocol header" });
    }
  }
  out.push(...unsupportedRoutes(push, proxy));
  for (const p of planCustomAuthz(push, proxy, "tcp").providers) {
    out.push({
      resource: "inbound listener",
      field: `AuthorizationPolicy CUSTOM provider ${JSON.stringify(p.provider)}`,
      reason: "the node proxy cannot ask an external authorizer; its CUSTOM rules deny (fail closed)",
    });
  }
  return out.sort((a, b) => byString(a.resource, b.resource) || byString(a.field, b.field));
}

/** The `http` and `tls` rules a sidecar would apply to a service port and a node proxy does not. */
function unsupportedRoutes(push: PushContext, proxy: Proxy): NodeProxyUnsupported[] {
  const out: NodeProxyUnsupported[] = [];
  const virtualServices = push.virtualServices(proxy, "mesh");
  for (const s of reachableServices(push, proxy)) {
    const vs = virtualServiceFor(s.hostname, virtualServices);
    if (!vs) continue;
    const name = `VirtualService ${vs.metadata.namespace}/${vs.metadata.name}`;
    for (const port of s.ports) {
      const resource = `outbound ${s.hostname}:${port.number}`;
      if (routesByHttp(port) && (vs.spec.http ?? []).length > 0) {
        out.push({
          resource,
          field: `${name} http`,
          reason: "the node proxy carries HTTP as TCP; connections go to the service's own cluster",
        });
      }
      if (routesByTls(port) && (vs.spec.tls ?? []).length > 0) {
        out.push({
          resource,
          field: `${name} tls`,
          reason: "the node proxy does not read SNI; connections go to the service's own cluster",
        });
      }
    }
  }
  return out;
}
