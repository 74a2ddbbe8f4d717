/** Builds PushContexts from YAML for pilot's tests. */
import { createConfigStore } from "../../mod/galley/store.ts";
import { createPushContext, type PushContext } from "../../mod/pilot/model/push_context.ts";
import { type Proxy, proxyFromNode } from "../../mod/pilot/model/proxy.ts";
import { createLogger } from "../../mod/shared/logger.ts";

/** A PushContext over config given as YAML texts; throws if any document is rejected. */
export function pushFrom(...yaml: string[]): PushContext {
  const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
  store.sink("test").replace(yaml.map((content, i) => ({ origin: `input-${i}.yaml`, content })));
  const rejected = store.status().resources.filter((r) => r.state === "rejected").concat();
  const bad = [...rejected.flatMap((r) => r.errors), ...store.status().origins.flatMap((o) => o.errors)];
  if (bad.length > 0) throw new Error(`test config rejected:\n${bad.join("\n")}`);
  return createPushContext({ config: store.snapshot() });
}

/** A sidecar proxy in `namespace` at `ip` with labels. */
export function sidecar(
  ip: string,
  namespace: string,
  labels: Record<string, string> = {},
  name = "app",
): Proxy {
  return proxyFromNode({
    id: `sidecar~${ip}~${name}.${namespace}~${namespace}.svc.cluster.local`,
    metadata: { NAMESPACE: namespace, LABELS: labels },
  });
}

/**
 * One service, web.app (HTTP on 80, TCP on 9000), with one endpoint, 10.0.0.1, labelled app=web and
 * running as service account web: the workload of {@link webSidecar}.
 */
export const WEB_SERVICE = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: app }
spec:
  hosts: [web.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - { number: 80, name: http, protocol: HTTP }
    - { number: 9000, name: tcp, protocol: TCP }
  endpoints: [{ address: 10.0.0.1, labels: { app: web }, serviceAccount: web }]
`;

/** The sidecar of {@link WEB_SERVICE}'s endpoint. */
export const webSidecar = (): Proxy => sidecar("10.0.0.1", "app", { app: "web" });
