/**
 * /debug/endpointz?host=H: a service's endpoints in pilot's current push, from every registry
 * (WorkloadEntries in config, auto-registered VMs, platform registries), with health and the
 * resource each came from. The console's services page reads it so that what it shows is what
 * pilot serves, not only what the config declares.
 *
 * @module
 */
import type { DebugHandler } from "../runtime/module.ts";
import type { PushContext } from "./model/push_context.ts";

/** The handler over the push `push()` gives. */
export function endpointzHandler(push: () => PushContext): DebugHandler {
  return {
    path: "endpointz",
    description:
      "a service's endpoints in the current push, from every registry, with health and source: ?host=HOST",
    handle(req) {
      const host = new URL(req.url).searchParams.get("host");
      if (!host) return Response.json({ error: "host: missing (give ?host=HOST)" }, { status: 400 });
      const p = push();
      const svc = p.services.find((s) => s.hostname === host);
      if (svc === undefined) {
        return Response.json({ error: `host: no service ${host} in push ${p.version}` }, { status: 404 });
      }
      const endpoints = svc.ports.flatMap((port) =>
        p.endpoints(svc, port.number).map((e) => ({
          address: e.address,
          port: e.port,
          servicePort: port.number,
          healthy: e.healthy,
          labels: e.labels,
          ...(e.locality !== undefined ? { locality: e.locality } : {}),
          ...(e.serviceAccount !== undefined ? { serviceAccount: e.serviceAccount } : {}),
          source: e.source,
        }))
      );
      return Response.json({ host, pushVersion: p.version, endpoints });
    },
  };
}
