/**
 * ServiceEntry ports that only an address can route. A sidecar tells HTTP services apart by
 * Host header and TLS services by SNI, but opaque TCP protocols carry no name: without
 * `addresses` the proxy can only listen on 0.0.0.0:PORT, which captures every connection to
 * that port, for any destination, and sends it to this entry (or collides with another entry
 * that does the same).
 *
 * @module
 */

import type { ServiceEntrySpec } from "../../api/kinds/networking.ts";
import { defineAnalyzer } from "./_define.ts";

/** Protocols routed by destination address only; an unset protocol is TCP. */
const ADDRESS_ROUTED = new Set(["", "TCP", "MONGO", "MYSQL", "REDIS"]);

/** MSH0134: ServiceEntries with TCP-family ports declare addresses. */
export const serviceEntryAddressesRequired = defineAnalyzer({
  code: "MSH0134",
  istioCode: "IST0134",
  name: "ServiceEntryAddressesRequired",
  severity: "warning",
  description: "A ServiceEntry has a TCP-family port (TCP, MONGO, MYSQL, REDIS or unset) " +
    "but no addresses to route it by.",
}, (ctx, report) => {
  for (const se of ctx.ofKind<ServiceEntrySpec>("ServiceEntry")) {
    if ((se.spec.addresses ?? []).length > 0) continue;
    (se.spec.ports ?? []).forEach((p, i) => {
      const protocol = (p.protocol ?? "").toUpperCase();
      if (!ADDRESS_ROUTED.has(protocol)) return;
      report(
        se,
        `spec.ports[${i}]`,
        `port ${p.number} (${
          protocol || "unset, so TCP"
        }) can only be routed by destination address, but the entry has no addresses; ` +
          `sidecars would capture every connection to port ${p.number} for it. Add addresses (a VIP or CIDR)`,
      );
    });
  }
});
