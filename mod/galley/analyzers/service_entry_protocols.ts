/**
 * ServiceEntries that declare the same host and port with different protocols, where both are
 * visible to a common namespace (exportTo). A proxy builds one listener and one cluster per host
 * and port, so only one of the protocols can apply, and which one is undefined.
 *
 * @module
 */

import { visibilitiesOverlap } from "../../api/mod.ts";
import type { MeshService } from "./_context.ts";
import { defineAnalyzer } from "./_define.ts";

function entryName(s: MeshService): string {
  return `${s.namespace}/${s.entry.metadata.name}`;
}

/** A port's protocol as compared: upper case, unset and "" alike. */
function protocolOf(protocol: string | undefined): string {
  return (protocol ?? "").toUpperCase();
}

/** MSH0177: one host and port has one protocol across the ServiceEntries that declare it. */
export const conflictingServiceEntryProtocol = defineAnalyzer({
  code: "MSH0177",
  istioCode: "IST0177",
  name: "ConflictingServiceEntryProtocol",
  severity: "warning",
  description: "ServiceEntries visible to a common namespace declare the same host and port with " +
    "different protocols.",
}, (ctx, report) => {
  const services = ctx.services;
  const reported = new Set<string>();
  for (const s of services) {
    s.ports.forEach((p, i) => {
      const mine = protocolOf(p.protocol);
      const rivals = services.filter((o) =>
        o.entry !== s.entry && o.host === s.host && visibilitiesOverlap(o.visibility, s.visibility) &&
        o.ports.some((q) => q.number === p.number && protocolOf(q.protocol) !== mine)
      );
      if (rivals.length === 0) return;
      const key = `${entryName(s)} ${s.host} ${p.number}`;
      if (reported.has(key)) return;
      reported.add(key);
      const theirs = rivals.map((o) => {
        const q = o.ports.find((x) => x.number === p.number && protocolOf(x.protocol) !== mine)!;
        return `${protocolOf(q.protocol) || "unset"} in ServiceEntry ${entryName(o)}`;
      });
      report(
        s.entry,
        `spec.ports[${i}]`,
        `host ${s.host} port ${p.number} is ${mine || "unset"} here but ${theirs.join(", ")}; ` +
          "a proxy uses one protocol per host and port, and which one is undefined",
      );
    });
  }
});
