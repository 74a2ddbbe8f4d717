/**
 * VirtualService destinations against the service registry: the host must be declared by a
 * ServiceEntry the VirtualService's namespace can see, and the port must pick one of its ports.
 *
 * @module
 */

import { hostsOverlap, isVisibleFrom } from "../../api/mod.ts";
import type { VirtualServiceSpec } from "../../api/kinds/networking.ts";
import { didYouMean } from "../../shared/suggest.ts";
import type { AnalysisContext, MeshService } from "./_context.ts";
import { defineAnalyzer } from "./_define.ts";
import { destinationsOf } from "./_routes.ts";

function entryName(s: MeshService): string {
  return `${s.namespace}/${s.entry.metadata.name}`;
}

function hostNotFoundReason(ctx: AnalysisContext, host: string, namespace: string): string {
  const resolved = ctx.resolveHost(host, namespace);
  const shown = resolved === host ? `"${host}"` : `"${host}" (${resolved})`;
  const hidden = ctx.services.filter((s) =>
    hostsOverlap(s.host, resolved) && !isVisibleFrom(s.visibility, namespace)
  );
  if (hidden.length > 0) {
    return `referenced host ${shown} is declared by ServiceEntry ${
      entryName(hidden[0]!)
    } but not exported to namespace ${namespace}`;
  }
  const visible = ctx.services.filter((s) => isVisibleFrom(s.visibility, namespace) && !s.host.includes("*"));
  const guess = didYouMean(resolved, visible.map((s) => s.host));
  return `referenced host ${shown} not found: no ServiceEntry declares it${guess}`;
}

/** MSH0101: every destination host is a ServiceEntry host visible from the VirtualService. */
export const destinationHostNotFound = defineAnalyzer({
  code: "MSH0101",
  istioCode: "IST0101",
  name: "DestinationHostNotFound",
  severity: "error",
  description:
    "A VirtualService routes or mirrors to a host that no ServiceEntry visible from its namespace declares.",
}, (ctx, report) => {
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    const ns = vs.metadata.namespace;
    for (const d of destinationsOf(vs.spec)) {
      if (ctx.servicesFor(d.destination.host, ns).length > 0) continue;
      report(vs, `${d.field}.host`, hostNotFoundReason(ctx, d.destination.host, ns));
    }
  }
});

/** The distinct port numbers of the services a destination refers to, sorted. */
function portNumbers(services: readonly MeshService[]): number[] {
  return [...new Set(services.flatMap((s) => s.ports.map((p) => p.number)))].sort((a, b) => a - b);
}

/** MSH0104: a destination's port.number is one the service exposes. */
export const destinationPortNotFound = defineAnalyzer({
  code: "MSH0104",
  istioCode: "IST0101",
  istioNote: "istioctl reports a missing host:port as ReferencedResourceNotFound.",
  name: "DestinationPortNotFound",
  severity: "error",
  description: "A VirtualService destination names a port its service does not expose.",
}, (ctx, report) => {
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    for (const d of destinationsOf(vs.spec)) {
      const port = d.destination.port?.number;
      if (port === undefined) continue;
      const services = ctx.servicesFor(d.destination.host, vs.metadata.namespace);
      const ports = portNumbers(services);
      if (ports.length === 0 || ports.includes(port)) continue;
      report(
        vs,
        `${d.field}.port.number`,
        `port ${port} is not a port of ${services[0]!.host} (ServiceEntry ${
          entryName(services[0]!)
        } exposes ${ports.join(", ")})`,
      );
    }
  }
});

/** MSH0112: a destination whose service has several ports must say which one. */
export const destinationPortSelectorRequired = defineAnalyzer({
  code: "MSH0112",
  istioCode: "IST0112",
  name: "DestinationPortSelectorRequired",
  severity: "error",
  description: "A VirtualService routes to a service that exposes several ports without naming one.",
}, (ctx, report) => {
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    for (const d of destinationsOf(vs.spec)) {
      if (d.destination.port?.number !== undefined) continue;
      const services = ctx.servicesFor(d.destination.host, vs.metadata.namespace);
      const ports = portNumbers(services);
      if (ports.length < 2) continue;
      report(
        vs,
        d.field,
        `${services[0]!.host} exposes ports ${
          ports.join(", ")
        }; set port.number to say which one this destination means`,
      );
    }
  }
});
