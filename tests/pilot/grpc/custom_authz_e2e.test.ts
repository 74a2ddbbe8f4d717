/**
 * End to end, on loopback: AuthorizationPolicy CUSTOM on a real xDS-enabled grpc-js server
 * (`XdsServer`, RBAC on) configured by a real `meshd serve`. gRPC has no ext_authz, so the calls
 * a CUSTOM rule matches must be refused (never let through, as they were when CUSTOM was
 * ignored), next to a DENY and an ALLOW policy, whose filters the server must accept alongside
 * (gRPC refuses two HTTP filters of one name). A plain grpc-js client makes the calls.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { freePort } from "../../e2e/_grpc.ts";
import { loadEcho } from "../../e2e/_grpc_backend.ts";
import { eventually, type MeshdProcess, startMeshd } from "../../e2e/_meshd.ts";
import { type MtlsServer, startMtlsServer } from "../../e2e/_mtls.ts";

const NS = "gx";

function configYaml(port: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo, namespace: ${NS} }
spec:
  hosts: [echo.${NS}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: ${port}, name: grpc, protocol: GRPC }]
  workloadSelector: { labels: { app: echo } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: echo-1, namespace: ${NS} }
spec:
  address: 127.0.0.1
  labels: { app: echo }
  ports: { grpc: ${port} }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: admin-ext, namespace: ${NS} }
spec:
  selector: { matchLabels: { app: echo } }
  action: CUSTOM
  provider: { name: ext-authz }
  rules:
    - when: [{ key: "request.headers[x-admin]", values: ["yes"] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-flagged, namespace: ${NS} }
spec:
  selector: { matchLabels: { app: echo } }
  action: DENY
  rules:
    - when: [{ key: "request.headers[x-deny]", values: ["1"] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-all, namespace: ${NS} }
spec:
  selector: { matchLabels: { app: echo } }
  action: ALLOW
  rules: [{}]
`;
}

let root: string;
let meshd: MeshdProcess;
let server: MtlsServer | undefined;
let port: number;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "meshd-grpc-custom-"));
  const dir = join(root, "config");
  mkdirSync(dir);
  port = await freePort();
  writeFileSync(join(dir, "mesh.yaml"), configYaml(port));
  meshd = await startMeshd({ args: ["--modules=pilot", `--config-dir=${dir}`, "--push-debounce=10ms"] });
  const bootstrap = join(root, "grpc-bootstrap.json");
  writeFileSync(
    bootstrap,
    JSON.stringify({
      xds_servers: [{
        server_uri: meshd.grpcAddr,
        channel_creds: [{ type: "insecure" }],
        server_features: ["xds_v3"],
      }],
      node: {
        id: `proxyless~127.0.0.1~echo-1.${NS}~${NS}.svc.cluster.local`,
        metadata: { GENERATOR: "grpc", NAMESPACE: NS, LABELS: { app: "echo" } },
        locality: {},
      },
      server_listener_resource_name_template: "xds.istio.io/grpc/lds/inbound/%s",
    }),
  );
  server = startMtlsServer(`127.0.0.1:${port}`, "echo-1", bootstrap, { GRPC_XDS_EXPERIMENTAL_RBAC: "true" });
  const serving = await eventually(
    () => server!.events.some((e) => e.serving === true) || server!.proc.exitCode !== null,
    20_000,
  );
  if (!serving || !server.events.some((e) => e.serving === true)) {
    throw new Error(
      `xDS server not serving: ${JSON.stringify(server.events)}\nstderr:\n${server.stderr().slice(-5000)}`,
    );
  }
}, 45_000);

afterAll(async () => {
  await server?.stop();
  await meshd?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** One call with `headers`; resolves with the status code name ("OK" on success). */
function call(headers: Record<string, string>): Promise<string> {
  const Echo = (loadEcho() as unknown as { meshd: { test: { Echo: grpc.ServiceClientConstructor } } }).meshd
    .test.Echo;
  const client = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as
    & grpc.Client
    & {
      Call(req: unknown, md: grpc.Metadata, o: grpc.CallOptions, cb: grpc.requestCallback<unknown>): void;
    };
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  return new Promise((done) =>
    client.Call({ message: "hi" }, md, { deadline: Date.now() + 5000 }, (err) => {
      client.close();
      done(err ? grpc.status[(err as grpc.ServiceError).code] ?? String(err.code) : "OK");
    })
  );
}

test("the server refuses calls a CUSTOM rule matches and serves the others", async () => {
  expect(await call({})).toBe("OK");
  expect(await call({ "x-admin": "yes" })).toBe("PERMISSION_DENIED");
  expect(await call({ "x-admin": "no" })).toBe("OK");
  expect(await call({ "x-deny": "1" })).toBe("PERMISSION_DENIED");
}, 20_000);
