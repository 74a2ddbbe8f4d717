/**
 * Virtual hosts: the names a service answers to from a proxy's point of view (its FQDN, the
 * short forms within the proxy's DNS domain, its VIPs, each with and without the port), and the
 * catch-all host for everything else (`allow_any` or `block_all`).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type VirtualHost, VirtualHostSchema } from "#gen/envoy/config/route/v3/route_components_pb.ts";
import type { Service } from "../model/service.ts";
import { PASSTHROUGH_CLUSTER } from "./cluster_name.ts";
import { zeroDuration } from "./conversion.ts";
import type { OutboundPolicy } from "./proxy_scope.ts";

/** Name of the catch-all virtual host that passes unknown hosts through. */
export const ALLOW_ANY_VHOST = "allow_any";
/** Name of the catch-all virtual host that refuses unknown hosts (502). */
export const BLOCK_ALL_VHOST = "block_all";

/**
 * The shorter names of `host` within the proxy's DNS domain, as Istio generates them: for
 * reviews.bookinfo.svc.cluster.local seen from bookinfo.svc.cluster.local, "reviews",
 * "reviews.bookinfo.svc.cluster", "reviews.bookinfo.svc" and "reviews.bookinfo"; from another
 * namespace, only the forms that keep the namespace. Nothing when they share no suffix.
 */
export function alternateHostNames(host: string, proxyDomain: string): string[] {
  const h = host.split(".").reverse();
  const d = proxyDomain.split(".").reverse();
  let shared = 0;
  while (shared < h.length - 1 && shared < d.length && h[shared] === d[shared]) shared++;
  if (shared === 0) return [];
  const unique = h.slice(shared).reverse().join(".");
  const suffix = h.slice(0, shared).reverse().join(".");
  const out = [unique];
  for (let i = suffix.length - 1; i > 0; i--) {
    if (suffix[i] === ".") out.push(`${unique}.${suffix.slice(0, i)}`);
  }
  return out;
}

/**
 * Every domain a service's port answers to: the host name, its alternate short names and its
 * single-address VIPs, each alone and with `:port`.
 */
export function serviceDomains(service: Service, port: number, proxyDomain: string): string[] {
  const names = [
    service.hostname,
    ...alternateHostNames(service.hostname, proxyDomain),
    ...service.addresses.filter((a) => !a.includes("/") || a.endsWith("/32") || a.endsWith("/128"))
      .map((a) => a.split("/")[0]!),
  ];
  return names.flatMap((n) => [n, `${n}:${port}`]);
}

/**
 * The catch-all virtual host ("*"): with ALLOW_ANY it passes requests to PassthroughCluster
 * (or the egress proxy's cluster) with no timeout; with REGISTRY_ONLY it answers 502.
 */
export function catchAllVirtualHost(policy: OutboundPolicy, egressCluster?: string): VirtualHost {
  if (policy.mode === "ALLOW_ANY") {
    return create(VirtualHostSchema, {
      name: ALLOW_ANY_VHOST,
      domains: ["*"],
      includeRequestAttemptCount: true,
      routes: [{
        name: ALLOW_ANY_VHOST,
        match: { pathSpecifier: { case: "prefix", value: "/" } },
        action: {
          case: "route",
          value: {
            clusterSpecifier: { case: "cluster", value: egressCluster ?? PASSTHROUGH_CLUSTER },
            timeout: zeroDuration(),
            maxStreamDuration: { grpcTimeoutHeaderMax: zeroDuration() },
          },
        },
      }],
    });
  }
  return create(VirtualHostSchema, {
    name: BLOCK_ALL_VHOST,
    domains: ["*"],
    includeRequestAttemptCount: true,
    routes: [{
      name: BLOCK_ALL_VHOST,
      match: { pathSpecifier: { case: "prefix", value: "/" } },
      action: { case: "directResponse", value: { status: 502 } },
    }],
  });
}
