/** Config and proxies for the gRPC translation's tests. */
import { type Proxy, proxyFromNode } from "../../../mod/pilot/model/proxy.ts";

/** The echo service: ServiceEntry echo.test.svc.cluster.local:9000 selecting app=echo in "test". */
export const ECHO = "echo.test.svc.cluster.local";

/** A ServiceEntry selecting workloads labelled app=NAME in NAMESPACE. */
export function serviceEntry(
  name: string,
  namespace: string,
  host: string,
  ports = "[{ number: 9000, name: grpc, protocol: GRPC }]",
): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  hosts: [${host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: ${ports}
  workloadSelector: { labels: { app: ${name} } }
`;
}

/** A WorkloadEntry for app=APP at ADDRESS with more labels and fields. */
export function workloadEntry(
  name: string,
  namespace: string,
  app: string,
  address: string,
  opts: { version?: string; port?: number; locality?: string; weight?: number } = {},
): string {
  return `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  address: ${address}
  labels: { app: ${app}${opts.version ? `, version: ${opts.version}` : ""} }
${opts.port ? `  ports: { grpc: ${opts.port} }\n` : ""}${
    opts.locality ? `  locality: ${opts.locality}\n` : ""
  }${opts.weight ? `  weight: ${opts.weight}\n` : ""}`;
}

/** The echo service with a v1 and a v2 workload. */
export const MESH = [
  serviceEntry("echo", "test", ECHO),
  workloadEntry("echo-v1", "test", "echo", "10.0.0.1", { version: "v1", port: 7001 }),
  workloadEntry("echo-v2", "test", "echo", "10.0.0.2", { version: "v2", port: 7002 }),
];

/** A DestinationRule for echo with subsets v1 and v2 and an optional trafficPolicy (YAML at 2 spaces). */
export function destinationRule(trafficPolicy = "", subsetPolicy = ""): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: test }
spec:
  host: ${ECHO}
${trafficPolicy ? `  trafficPolicy:\n${trafficPolicy.replace(/^/gm, "    ")}\n` : ""}  subsets:
  - name: v1
    labels: { version: v1 }
${subsetPolicy ? `    trafficPolicy:\n${subsetPolicy.replace(/^/gm, "      ")}\n` : ""}  - name: v2
    labels: { version: v2 }
`;
}

/** A VirtualService for echo with http routes (a YAML list at column 0). */
export function virtualService(http: string, namespace = "test", host = ECHO): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: echo, namespace: ${namespace} }
spec:
  hosts: [${host}]
  http:
${http.trim().replace(/^/gm, "  ")}
`;
}

/** A proxyless gRPC client in `namespace` at `ip`. */
export function grpcProxy(namespace = "test", ip = "10.9.9.9", labels: Record<string, string> = {}): Proxy {
  return proxyFromNode({
    id: `sidecar~${ip}~client.${namespace}~${namespace}.svc.cluster.local`,
    metadata: { GENERATOR: "grpc", NAMESPACE: namespace, LABELS: labels },
  });
}
