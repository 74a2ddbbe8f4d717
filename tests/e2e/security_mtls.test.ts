/**
 * End to end, on loopback: proxyless gRPC under STRICT mutual TLS with certificates from the
 * real CA. A real `meshd serve` (pilot, citadel), three real node agents (`meshd agent`, one
 * per identity: the server `sa/echo`, clients `sa/good` and `sa/bad`) writing certificates
 * and grpc-bootstrap.json, an xDS-enabled grpc-js server (XdsServer, XdsServerCredentials, RBAC
 * on) and grpc-js-xds clients (XdsChannelCredentials), each its own process. Proves that:
 *
 * - a client with its mesh certificate reaches the server over mTLS (ISTIO_MUTUAL + STRICT);
 * - a plaintext client is refused by the STRICT server;
 * - an AuthorizationPolicy allowing only `sa/good` lets it through and denies `sa/bad`.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentProcess, meshdCli, startAgentProcess } from "../agent/_agent_proc.ts";
import { freePort } from "./_grpc.ts";
import { eventually, type MeshdProcess, startMeshd } from "./_meshd.ts";
import { type MtlsServer, runMtlsClient, startMtlsServer, strictEchoMesh } from "./_mtls.ts";

const NS = "sec";
const HOST = `echo.${NS}.svc.cluster.local`;

let root: string;
let dataDir: string;
let meshd: MeshdProcess;
let port: number;
let server: MtlsServer | undefined;
const agents: AgentProcess[] = [];
const bootstraps: Record<string, string> = {};

function configYaml(p: number): string {
  return `${strictEchoMesh(NS, p)}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: echo-allow-good
  namespace: ${NS}
spec:
  selector:
    matchLabels:
      app: echo
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/${NS}/sa/good]
`;
}

/** Starts an agent for `sa` (node IP `ip`) and resolves with its grpc-bootstrap.json path. */
async function agentFor(sa: string, ip: string, labels: string): Promise<string> {
  const base = join(root, `agent-${sa}`);
  mkdirSync(base, { recursive: true });
  const tokenFile = join(base, "token");
  writeFileSync(
    tokenFile,
    meshdCli([
      "token",
      "create",
      `--data-dir=${dataDir}`,
      `--namespace=${NS}`,
      `--service-account=${sa}`,
      "--ttl=1h",
    ]).trim(),
  );
  const tlsAddr = await meshd.addrOf("citadel TLS listening");
  const out = join(base, "out");
  const a = startAgentProcess([
    `--ca-addr=${meshd.grpcAddr}`,
    `--ca-tls-addr=${tlsAddr}`,
    // grpc-js-xds 1.14 has no `tls` channel_creds for the xDS server: plaintext xDS.
    `--discovery-addr=${meshd.grpcAddr}`,
    "--control-plane-auth=NONE",
    `--namespace=${NS}`,
    `--service-account=${sa}`,
    `--token-file=${tokenFile}`,
    `--instance-ip=${ip}`,
    `--workload-name=${sa}`,
    `--labels=${labels}`,
    `--output-dir=${out}`,
    `--data-dir=${join(base, "data")}`,
    "--cert-ttl=1h",
  ]);
  agents.push(a);
  await a.waitFor((l) => l.msg === "certificate issued" && l.via === "token", 20_000);
  const path = join(out, "grpc-bootstrap.json");
  expect(
    await eventually(() => {
      try {
        return JSON.parse(readFileSync(path, "utf8")) !== undefined;
      } catch {
        return false;
      }
    }, 10_000),
  ).toBe(true);
  const boot = JSON.parse(readFileSync(path, "utf8")) as {
    certificate_providers?: Record<string, { plugin_name: string }>;
  };
  // The translator names the provider instance "default" (mod/pilot/translate/grpc/tls.ts).
  expect(boot.certificate_providers?.default?.plugin_name).toBe("file_watcher");
  return path;
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "meshd-e2e-mtls-"));
  dataDir = join(root, "meshd-data");
  const dir = join(root, "config");
  mkdirSync(dir);
  port = await freePort();
  writeFileSync(join(dir, "mesh.yaml"), configYaml(port));
  meshd = await startMeshd({
    args: [
      "--modules=pilot,citadel",
      `--config-dir=${dir}`,
      `--data-dir=${dataDir}`,
      "--push-debounce=10ms",
    ],
  });
  const [serverBoot, good, bad] = await Promise.all([
    agentFor("echo", "127.0.0.1", "app=echo"),
    agentFor("good", "127.0.0.2", "app=good"),
    agentFor("bad", "127.0.0.3", "app=bad"),
  ]);
  bootstraps.server = serverBoot!;
  bootstraps.good = good!;
  bootstraps.bad = bad!;
  server = startMtlsServer(`127.0.0.1:${port}`, "echo-1", bootstraps.server, {
    GRPC_XDS_EXPERIMENTAL_RBAC: "true",
  });
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
  await Promise.all(agents.map((a) => a.stop()));
  await meshd?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

test("pilot serves the server an mTLS listener requiring client certificates, with RBAC", async () => {
  const node = (JSON.parse(readFileSync(bootstraps.server!, "utf8")) as { node: { id: string } }).node.id;
  const res = await fetch(`http://${meshd.adminAddr}/debug/config_dump?proxyID=${encodeURIComponent(node)}`);
  expect(res.status).toBe(200);
  const dump = (await res.json()) as {
    listeners: Array<{
      name: string;
      filterChains: Array<{
        name: string;
        filters: Array<{ typedConfig: { httpFilters: Array<{ name: string }> } }>;
        transportSocket?: { typedConfig: { requireClientCertificate?: boolean } };
      }>;
    }>;
  };
  const l = dump.listeners.find((x) => x.name === `xds.istio.io/grpc/lds/inbound/127.0.0.1:${port}`);
  expect(l?.filterChains[0]?.name).toBe("inbound-mtls");
  expect(l?.filterChains[0]?.transportSocket?.typedConfig.requireClientCertificate).toBe(true);
  expect(
    l?.filterChains[0]?.filters[0]?.typedConfig.httpFilters.map((f) => f.name).some((n) =>
      n.includes("rbac")
    ),
  )
    .toBe(true);
});

test("a mesh client with an allowed identity calls the STRICT server over mTLS", async () => {
  const r = await runMtlsClient(`xds:///${HOST}:${port}`, 3, bootstraps.good);
  expect(r).toMatchObject({ total: 3, ok: 3, byBackend: { "echo-1": 3 } });
}, 25_000);

test("a plaintext client is refused by the STRICT server", async () => {
  const r = await runMtlsClient(`127.0.0.1:${port}`, 1, undefined);
  expect(r.ok).toBe(0);
  expect(r.errors.UNAVAILABLE).toBe(1);
  expect(r.details.UNAVAILABLE).toContain("Failed to connect");
}, 25_000);

test("the AuthorizationPolicy denies a mesh client with another identity", async () => {
  const r = await runMtlsClient(`xds:///${HOST}:${port}`, 2, bootstraps.bad);
  expect(r.ok).toBe(0);
  expect(r.errors.PERMISSION_DENIED).toBe(2);
  // grpc-js-xds's RBAC filter (gRFC A41), not a transport failure.
  expect(r.details.PERMISSION_DENIED).toBe("Unauthorized RPC rejected");
}, 25_000);
