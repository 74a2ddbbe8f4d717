/**
 * Walks over the parts of a VirtualService several analyzers read: every destination with its
 * field path, every gateway reference, and the gateways a VirtualService is bound to.
 *
 * @module
 */

import type { Destination, VirtualServiceSpec } from "../../api/kinds/networking.ts";

/** A destination of a route or mirror, and where it is written. */
export interface DestinationRef {
  readonly destination: Destination;
  /** Dotted path of the destination object, e.g. "spec.http[0].route[1].destination". */
  readonly field: string;
}

/** Every destination in a VirtualService: HTTP, TLS and TCP routes and HTTP mirrors. */
export function destinationsOf(vs: VirtualServiceSpec): DestinationRef[] {
  const out: DestinationRef[] = [];
  (vs.http ?? []).forEach((h, i) => {
    (h.route ?? []).forEach((r, j) =>
      out.push({ destination: r.destination, field: `spec.http[${i}].route[${j}].destination` })
    );
    if (h.mirror) out.push({ destination: h.mirror, field: `spec.http[${i}].mirror` });
    (h.mirrors ?? []).forEach((m, j) =>
      out.push({ destination: m.destination, field: `spec.http[${i}].mirrors[${j}].destination` })
    );
  });
  (vs.tls ?? []).forEach((t, i) => {
    (t.route ?? []).forEach((r, j) =>
      out.push({ destination: r.destination, field: `spec.tls[${i}].route[${j}].destination` })
    );
  });
  (vs.tcp ?? []).forEach((t, i) => {
    (t.route ?? []).forEach((r, j) =>
      out.push({ destination: r.destination, field: `spec.tcp[${i}].route[${j}].destination` })
    );
  });
  return out;
}

/** The reserved gateway name for the sidecars of the mesh. */
export const MESH_GATEWAY = "mesh";

/** A gateway named by a VirtualService, and where. */
export interface GatewayRef {
  /** As written: "mesh", "name", "namespace/name" or the legacy "name.namespace[.svc...]". */
  readonly ref: string;
  readonly field: string;
}

/** Every gateway reference: `spec.gateways` and the `gateways` of HTTP, TLS and TCP matches. */
export function gatewayRefsOf(vs: VirtualServiceSpec): GatewayRef[] {
  const out: GatewayRef[] = [];
  (vs.gateways ?? []).forEach((ref, i) => out.push({ ref, field: `spec.gateways[${i}]` }));
  const fromMatches = (
    section: string,
    rules: readonly { readonly match?: readonly { readonly gateways?: readonly string[] }[] }[],
  ) => {
    rules.forEach((rule, i) => {
      (rule.match ?? []).forEach((m, j) => {
        (m.gateways ?? []).forEach((ref, k) =>
          out.push({ ref, field: `spec.${section}[${i}].match[${j}].gateways[${k}]` })
        );
      });
    });
  };
  fromMatches("http", vs.http ?? []);
  fromMatches("tls", vs.tls ?? []);
  fromMatches("tcp", vs.tcp ?? []);
  return out;
}

/**
 * The namespace and name of a gateway reference written in `namespace`, as Istio resolves it:
 * "ns/name"; the legacy "name.ns" (anything after the namespace, such as ".svc.cluster.local",
 * is ignored); or a bare name in the VirtualService's own namespace.
 */
export function parseGatewayRef(ref: string, namespace: string): { namespace: string; name: string } {
  const slash = ref.indexOf("/");
  if (slash >= 0) return { namespace: ref.slice(0, slash), name: ref.slice(slash + 1) };
  const parts = ref.split(".");
  if (parts.length >= 2) return { namespace: parts[1]!, name: parts[0]! };
  return { namespace, name: ref };
}

/**
 * The gateways a VirtualService is bound to, as "mesh" or "namespace/name" keys: its
 * `spec.gateways`, or just the mesh when it names none.
 */
export function boundGateways(vs: VirtualServiceSpec, namespace: string): string[] {
  const refs = vs.gateways ?? [];
  if (refs.length === 0) return [MESH_GATEWAY];
  return refs.map((ref) => {
    if (ref === MESH_GATEWAY) return MESH_GATEWAY;
    const g = parseGatewayRef(ref, namespace);
    return `${g.namespace}/${g.name}`;
  });
}
