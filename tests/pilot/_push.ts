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
