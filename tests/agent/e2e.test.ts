/**
 * End to end, on loopback: a real `meshd serve` (galley, pilot, citadel) and real `meshd agent`
 * processes. Token bootstrap, renewal over mutual TLS without the token, restart from the data
 * directory, SDS pushes, auto-registration into EDS and removal after the grace period, a
 * failing TCP probe taking the workload out of EDS, a refused registration told to the agent and
 * shown by `meshd proxy-status`, and a redeemed token ending the agent.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect as netConnect, createServer, type Server } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AggregatedDiscoveryService } from "#gen/envoy/service/discovery/v3/ads_pb.ts";
import {
  type DiscoveryRequest,
  DiscoveryRequestSchema,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { SecretDiscoveryService } from "#gen/envoy/service/secret/v3/sds_pb.ts";
import { SecretSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.ts";
import { createChannel } from "../../mod/shared/channel.ts";
import { eventually, type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";
import { type AgentProcess, meshdCli, startAgentProcess } from "./_agent_proc.ts";

const CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const TEST_PROXY = "sidecar~10.9.9.9~client.default~default.svc.cluster.local";

let dir: string;
let dataDir: string;
let meshd: MeshdProcess;
let tlsAddr: string;
let probeTarget: Server;
let probePort: number;
const proxyStream = createChannel<DiscoveryRequest>();
const agents: AgentProcess[] = [];

function config(probe: number): string {
  const group = (name: string, extra = "") =>
    `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: ${name}
  namespace: vms
spec:
  metadata:
    labels:
      app: ${name}
  template:
    serviceAccount: ratings-sa
    ports:
      http: 9080
${extra}`;
  const service = (name: string) =>
    `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ${name}
  namespace: vms
spec:
  hosts: [${name}.vms.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 9080
    name: http
    protocol: HTTP
  workloadSelector:
    labels:
      app: ${name}
`;
  return [
    group("ratings"),
    service("ratings"),
    group(
      "probed",
      `  probe:\n    periodSeconds: 1\n    timeoutSeconds: 1\n    tcpSocket:\n      port: ${probe}\n`,
    ),
    service("probed"),
  ].join("---\n");
}

function token(serviceAccount = "ratings-sa"): string {
  return meshdCli([
    "token",
    "create",
    `--data-dir=${dataDir}`,
    "--namespace=vms",
    `--service-account=${serviceAccount}`,
    "--ttl=10m",
    "--single-use",
  ]).trim();
}

/** Arguments for an agent with its own directories under `name`. */
function agentArgs(name: string, extra: string[] = []): string[] {
  const base = join(dir, name);
  mkdirSync(base, { recursive: true });
  return [
    `--ca-addr=${meshd.grpcAddr}`,
    `--ca-tls-addr=${tlsAddr}`,
    `--discovery-addr=${tlsAddr}`,
    "--namespace=vms",
    ...(extra.some((a) => a.startsWith("--service-account=")) ? [] : ["--service-account=ratings-sa"]),
    `--output-dir=${join(base, "out")}`,
    `--data-dir=${join(base, "data")}`,
    "--cert-ttl=20s",
    ...extra,
  ];
}

function agent(args: string[]): AgentProcess {
  const a = startAgentProcess(args);
  agents.push(a);
  return a;
}

const serial = (path: string) => new X509Certificate(readFileSync(path)).serialNumber;

/** The addresses pilot puts in EDS for `host`'s port 9080, for the test proxy. */
async function edsAddresses(host: string): Promise<string[]> {
  const res = await fetch(
    `http://${meshd.adminAddr}/debug/config_dump?proxyID=${encodeURIComponent(TEST_PROXY)}`,
  );
  if (!res.ok) return [];
  const dump = (await res.json()) as {
    endpoints: Array<
      {
        clusterName: string;
        endpoints?: Array<
          {
            lbEndpoints?: Array<
              { endpoint: { address: { socketAddress: { address: string; portValue: number } } } }
            >;
          }
        >;
      }
    >;
  };
  const cla = dump.endpoints.find((e) => e.clusterName === `outbound|9080||${host}`);
  return (cla?.endpoints ?? []).flatMap((l) => l.lbEndpoints ?? []).map((e) => {
    const a = e.endpoint.address.socketAddress;
    return `${a.address}:${a.portValue}`;
  });
}

interface Registration {
  workload: string;
  connections: number;
  healthy: boolean;
  message?: string;
  disconnectedAt?: string;
  state: string;
  code?: string;
  reason?: string;
  nodes: string[];
  identity?: string;
  refusedAt?: string;
}

/** `meshd proxy-status ARGS` against the test's meshd. */
const proxyStatus = (...args: string[]) =>
  meshdCli(["proxy-status", `--admin-addr=${meshd.adminAddr}`, ...args]);

async function registrations(): Promise<Registration[]> {
  return (await (await fetch(`http://${meshd.adminAddr}/debug/registrationz`)).json()) as Registration[];
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshd-agent-e2e-"));
  dataDir = join(dir, "meshd-data");
  mkdirSync(join(dir, "config"));
  probeTarget = createServer((s) => s.end());
  await new Promise<void>((r) => probeTarget.listen(0, "127.0.0.1", () => r()));
  probePort = (probeTarget.address() as AddressInfo).port;
  writeFileSync(join(dir, "config", "mesh.yaml"), config(probePort));
  meshd = await startMeshd({
    args: [
      `--config-dir=${join(dir, "config")}`,
      `--data-dir=${dataDir}`,
      "--grpc-tls-addr=127.0.0.1:0",
      "--auto-register-grace=2s",
      "--workload-cert-ttl=1m",
      "--max-workload-cert-ttl=1m",
      "--push-debounce=50ms",
    ],
  });
  tlsAddr = await meshd.addrOf("citadel TLS listening");
  expect(
    await eventually(
      async () => (await fetch(`http://${meshd.adminAddr}/healthz/ready`)).status === 200,
      15_000,
    ),
  )
    .toBe(true);
  // A test proxy, so /debug/config_dump shows the EDS pilot computes for a sidecar.
  const ads = createClient(
    AggregatedDiscoveryService,
    createGrpcTransport({ baseUrl: `http://${meshd.grpcAddr}` }),
  );
  proxyStream.push(
    create(DiscoveryRequestSchema, {
      node: { id: TEST_PROXY, metadata: { NAMESPACE: "default" } },
      typeUrl: CDS,
    }),
  );
  (async () => {
    try {
      for await (const res of ads.streamAggregatedResources(proxyStream)) {
        proxyStream.push(
          create(DiscoveryRequestSchema, {
            typeUrl: CDS,
            responseNonce: res.nonce,
            versionInfo: res.versionInfo,
          }),
        );
      }
    } catch {
      // ends with meshd
    }
  })();
}, 30_000);

afterAll(async () => {
  proxyStream.close();
  await Promise.all(agents.map((a) => a.stop()));
  await meshd?.stop();
  probeTarget?.close();
  rmSync(dir, { recursive: true, force: true });
}, 20_000);

describe("meshd agent against meshd serve", () => {
  test(
    "bootstraps with a token, then renews over mTLS after the token is deleted; SDS pushes the new certificate",
    async () => {
      const tokenFile = join(dir, "a", "token");
      mkdirSync(join(dir, "a"), { recursive: true });
      writeFileSync(tokenFile, token());
      const a = agent(agentArgs("a", [`--token-file=${tokenFile}`, "--instance-ip=127.0.0.6"]));
      await a.waitFor((l) => l.msg === "certificate issued" && l.via === "token");
      const out = join(dir, "a", "out");
      const chain = join(out, "cert-chain.pem");
      expect(new X509Certificate(readFileSync(chain)).subjectAltName).toBe(
        "URI:spiffe://cluster.local/ns/vms/sa/ratings-sa",
      );
      expect(statSync(join(out, "key.pem")).mode & 0o777).toBe(0o600);
      expect(readFileSync(join(out, "root-cert.pem"), "utf8")).toBe(
        readFileSync(join(dataDir, "ca", "root-cert.pem"), "utf8"),
      );
      expect(readFileSync(join(dir, "a", "data", "cert-chain.pem"), "utf8")).toBe(
        readFileSync(chain, "utf8"),
      );
      expect((await fetch(`http://${await a.adminAddr()}/healthz/ready`)).status).toBe(200);
      rmSync(tokenFile);

      // SDS: default and ROOTCA now, and the renewed certificate when it comes.
      const sds = createClient(
        SecretDiscoveryService,
        createGrpcTransport({
          baseUrl: "http://localhost",
          nodeOptions: { createConnection: () => netConnect(join(out, "sds.sock")) } as never,
        }),
      );
      const req = createChannel<DiscoveryRequest>();
      req.push(create(DiscoveryRequestSchema, {
        node: { id: "sidecar~127.0.0.6~a.vms~vms.svc.cluster.local" },
        typeUrl: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        resourceNames: ["default", "ROOTCA"],
      }));
      const names = new Set<string>();
      const chains = new Set<string>();
      const first = serial(chain);
      const deadline = AbortSignal.timeout(25_000);
      for await (const res of sds.streamSecrets(req, { signal: deadline })) {
        for (const any of res.resources) {
          const s = anyUnpack(any, SecretSchema)!;
          names.add(s.name);
          if (s.type.case === "tlsCertificate") {
            chains.add(
              new X509Certificate(Buffer.from(s.type.value.certificateChain!.specifier.value as Uint8Array))
                .serialNumber,
            );
          }
        }
        req.push(create(DiscoveryRequestSchema, {
          typeUrl: res.typeUrl,
          resourceNames: ["default", "ROOTCA"],
          responseNonce: res.nonce,
          versionInfo: res.versionInfo,
        }));
        if (chains.size >= 2) break;
      }
      req.close();
      expect([...names].sort()).toEqual(["ROOTCA", "default"]);
      expect(chains.size).toBe(2);
      const renewed = a.logs.find((l) => l.msg === "certificate issued" && l.via === "mtls");
      expect(renewed).toBeDefined();
      expect(serial(chain)).not.toBe(first);
      expect(a.logs.some((l) => l.msg === "certificate request failed; retrying")).toBe(false);
    },
    60_000,
  );

  test(
    "restarted with its output directory wiped and no token, it serves the stored certificate and renews over mTLS",
    async () => {
      const a = agents[0]!;
      expect(await a.stop()).toBe(0);
      rmSync(join(dir, "a", "out"), { recursive: true });
      const stored = serial(join(dir, "a", "data", "cert-chain.pem"));
      const b = agent(agentArgs("a", ["--instance-ip=127.0.0.6"]));
      await b.waitFor((l) => l.msg === "loaded the stored certificate");
      const admin = await b.adminAddr();
      if (!b.logs.some((l) => l.msg === "certificate issued")) {
        expect(serial(join(dir, "a", "out", "cert-chain.pem"))).toBe(stored);
      }
      expect((await fetch(`http://${admin}/healthz/ready`)).status).toBe(200);
      await b.waitFor((l) => l.msg === "certificate issued" && l.via === "mtls", 20_000);
      expect(b.logs.some((l) => l.via === "token")).toBe(false);
      expect(await eventually(() => serial(join(dir, "a", "out", "cert-chain.pem")) !== stored, 5000)).toBe(
        true,
      );
    },
    45_000,
  );

  test("--ca-addr as a list: a replica that refuses connections is passed over for the next", async () => {
    // A port nothing listens on: bound, then closed.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const dead = `127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((r) => closed.close(() => r()));
    const tokenFile = join(dir, "list", "token");
    mkdirSync(join(dir, "list"), { recursive: true });
    writeFileSync(tokenFile, token());
    const args = agentArgs("list", [`--token-file=${tokenFile}`, "--instance-ip=127.0.0.8"])
      .filter((a) => !a.startsWith("--ca-addr="));
    const a = agent([`--ca-addr=${dead},${meshd.grpcAddr}`, ...args]);
    await a.waitFor((l) => l.msg === "certificate issued" && l.via === "token");
    expect(a.logs.some((l) => l.msg === "CA replica unreachable; trying the next" && l.addr === dead)).toBe(
      true,
    );
    expect(new X509Certificate(readFileSync(join(dir, "list", "out", "cert-chain.pem"))).subjectAltName).toBe(
      "URI:spiffe://cluster.local/ns/vms/sa/ratings-sa",
    );
    expect(await a.stop()).toBe(0);
  }, 45_000);

  test(
    "with --workload-group the workload enters EDS, and leaves it the grace period after the agent stops",
    async () => {
      const tokenFile = join(dir, "g", "token");
      mkdirSync(join(dir, "g"), { recursive: true });
      writeFileSync(tokenFile, token());
      const g = agent(
        agentArgs("g", [
          `--token-file=${tokenFile}`,
          "--workload-group=ratings",
          "--workload-name=g",
          "--instance-ip=127.0.0.7",
          "--labels=version=v7",
        ]),
      );
      await g.waitFor((l) => l.msg === "registered with pilot");
      expect(
        await eventually(
          async () => (await edsAddresses("ratings.vms.svc.cluster.local")).includes("127.0.0.7:9080"),
          10_000,
        ),
      )
        .toBe(true);
      const node = "sidecar~127.0.0.7~g.vms~vms.svc.cluster.local";
      expect(await registrations()).toContainEqual(
        expect.objectContaining({
          workload: "ratings-127.0.0.7",
          connections: 1,
          healthy: true,
          state: "REGISTERED",
          nodes: [node],
          identity: "spiffe://cluster.local/ns/vms/sa/ratings-sa",
        }),
      );
      // proxy-status lists the agent, and shows it in detail by its node id.
      const status = proxyStatus();
      expect(status).toContain("VM AGENT");
      expect(status).toMatch(
        new RegExp(
          `${
            node.replaceAll(".", "\\.")
          }\\s+vms/ratings\\s+REGISTERED\\s+ratings-127\\.0\\.0\\.7\\s+127\\.0\\.0\\.7\\s+HEALTHY \\(no probe\\)`,
        ),
      );
      const detail = proxyStatus(node);
      expect(detail).toMatch(/^REGISTRATION\s+REGISTERED$/m);
      expect(detail).toMatch(/^WORKLOAD ENTRY\s+ratings-127\.0\.0\.7$/m);
      expect(detail).toMatch(/^IDENTITY\s+spiffe:\/\/cluster\.local\/ns\/vms\/sa\/ratings-sa$/m);
      expect(JSON.parse(proxyStatus("-o", "json", node))).toMatchObject({
        proxies: [],
        agents: [{ workload: "ratings-127.0.0.7", state: "REGISTERED", nodes: [node] }],
      });
      expect(existsSync(join(dir, "g", "out", "envoy-bootstrap.json"))).toBe(true);

      const stoppedAt = Date.now();
      expect(await g.stop()).toBe(0);
      expect(
        await eventually(
          async () =>
            (await registrations()).some((r) => r.workload === "ratings-127.0.0.7" && r.disconnectedAt),
          5000,
        ),
      ).toBe(true);
      if (Date.now() - stoppedAt < 1500) {
        expect(await edsAddresses("ratings.vms.svc.cluster.local")).toContain("127.0.0.7:9080");
      }
      expect(
        await eventually(
          async () => !(await edsAddresses("ratings.vms.svc.cluster.local")).includes("127.0.0.7:9080"),
          10_000,
        ),
      )
        .toBe(true);
      expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(2000);
      expect((await registrations()).some((r) => r.workload === "ratings-127.0.0.7")).toBe(false);
    },
    45_000,
  );

  test(
    "an onboarding bundle from meshd vm bundle is all a VM needs: token over TLS, then registration",
    async () => {
      const etc = join(dir, "vm-etc");
      meshdCli([
        "vm",
        "bundle",
        "--workload-group=vms/ratings",
        `--out=${join(dir, "bundle.tar.gz")}`,
        `--data-dir=${dataDir}`,
        `--admin-addr=${meshd.adminAddr}`,
        `--discovery-addr=${tlsAddr}`,
        `--install-dir=${etc}`,
        "--token-ttl=10m",
      ]);
      mkdirSync(etc);
      const untar = Bun.spawnSync([
        "tar",
        "-xzf",
        join(dir, "bundle.tar.gz"),
        "-C",
        etc,
        "--strip-components=1",
      ]);
      expect(untar.exitCode).toBe(0);
      const base = join(dir, "vm");
      const v = agent([
        `--cluster-env=${join(etc, "cluster.env")}`,
        `--output-dir=${join(base, "out")}`,
        `--data-dir=${join(base, "data")}`,
        "--instance-ip=127.0.0.9",
      ]);
      await v.waitFor((l) => l.msg === "certificate issued" && l.via === "token");
      await v.waitFor((l) => l.msg === "registered with pilot");
      expect(
        await eventually(
          async () => (await edsAddresses("ratings.vms.svc.cluster.local")).includes("127.0.0.9:9080"),
          10_000,
        ),
      )
        .toBe(true);
      // The token was single use: a second agent with the same bundle and no stored certificate is refused.
      const w = agent([
        `--cluster-env=${join(etc, "cluster.env")}`,
        `--output-dir=${join(dir, "vm2", "out")}`,
        `--data-dir=${join(dir, "vm2", "data")}`,
        "--instance-ip=127.0.0.10",
      ]);
      expect(await w.exited(15_000)).toBe(1);
      const errors = w.logs.filter((l) => l.level === "error");
      expect(errors.length).toBe(1);
      expect(String(errors[0]!.err)).toContain(
        `refused the token in --token-file (TOKEN_FILE) ${
          join(etc, "token")
        }: this single-use token was already redeemed`,
      );
      expect(w.logs.some((l) => l.msg === "certificate request failed; retrying")).toBe(false);
      await v.stop();
    },
    45_000,
  );

  test(
    "a registration the WorkloadGroup refuses is told to the agent, shown by proxy-status, and kept after it ends",
    async () => {
      // The group's template wants ratings-sa; this machine's identity is other-sa.
      const tokenFile = join(dir, "r", "token");
      mkdirSync(join(dir, "r"), { recursive: true });
      writeFileSync(tokenFile, token("other-sa"));
      const node = "sidecar~127.0.0.11~refused.vms~vms.svc.cluster.local";
      const r = agent(
        agentArgs("r", [
          `--token-file=${tokenFile}`,
          "--service-account=other-sa",
          "--workload-group=ratings",
          "--workload-name=refused",
          "--instance-ip=127.0.0.11",
        ]),
      );
      const refused = await r.waitFor((l) => l.msg === "registration refused by pilot; retrying slowly");
      const reason = "auto-registration into WorkloadGroup vms/ratings refused: identity " +
        "spiffe://cluster.local/ns/vms/sa/other-sa has service account other-sa, but the group's template wants ratings-sa";
      expect(refused).toMatchObject({ level: "error", code: "PermissionDenied", reason });
      expect(r.logs.some((l) => l.msg === "registered with pilot")).toBe(false);
      const ready = await fetch(`http://${await r.adminAddr()}/healthz/ready`);
      expect(ready.status).toBe(503);
      expect(await ready.text()).toContain(`registration refused: ${reason}`);

      expect(await registrations()).toContainEqual(expect.objectContaining({
        workload: "ratings-127.0.0.11",
        state: "REFUSED",
        code: "PERMISSION_DENIED",
        nodes: [node],
        identity: "spiffe://cluster.local/ns/vms/sa/other-sa",
      }));
      expect(await edsAddresses("ratings.vms.svc.cluster.local")).not.toContain("127.0.0.11:9080");
      const status = proxyStatus();
      const row = status.split("\n").find((l) => l.startsWith(node));
      expect(row).toContain("vms/ratings");
      expect(row).toContain(
        "REFUSED: identity spiffe://cluster.local/ns/vms/sa/other-sa has service account other-sa",
      );
      expect(row).toContain("ratings-127.0.0.11");
      const detail = proxyStatus(node);
      expect(detail).toMatch(/^VM AGENT\s+sidecar~127\.0\.0\.11~refused\.vms~vms\.svc\.cluster\.local$/m);
      expect(detail).toMatch(/^STATUS\s+PERMISSION_DENIED$/m);
      expect(detail).toMatch(/^IDENTITY\s+spiffe:\/\/cluster\.local\/ns\/vms\/sa\/other-sa$/m);

      // The agent stops: after the grace period the refusal is still there, with when it happened.
      expect(await r.stop()).toBe(0);
      expect(
        await eventually(
          async () =>
            (await registrations()).some((x) =>
              x.workload === "ratings-127.0.0.11" && x.state === "REFUSED" && x.refusedAt !== undefined &&
              x.connections === 0
            ),
          10_000,
        ),
      ).toBe(true);
      expect(proxyStatus(node)).toMatch(/^REFUSED AT\s+\d{4}-/m);
    },
    45_000,
  );

  test("a failing TCP probe takes the workload out of EDS, and a passing one brings it back", async () => {
    const tokenFile = join(dir, "p", "token");
    mkdirSync(join(dir, "p"), { recursive: true });
    writeFileSync(tokenFile, token());
    const p = agent(
      agentArgs("p", [`--token-file=${tokenFile}`, "--workload-group=probed", "--instance-ip=127.0.0.8"]),
    );
    await p.waitFor((l) => l.msg === "workload healthy");
    const host = "probed.vms.svc.cluster.local";
    expect(await eventually(async () => (await edsAddresses(host)).includes("127.0.0.8:9080"), 10_000)).toBe(
      true,
    );

    await new Promise<void>((r) => probeTarget.close(() => r()));
    await p.waitFor((l) => l.msg === "workload unhealthy");
    expect(await eventually(async () => !(await edsAddresses(host)).includes("127.0.0.8:9080"), 10_000)).toBe(
      true,
    );
    const reg = (await registrations()).find((r) => r.workload === "probed-127.0.0.8")!;
    expect(reg.healthy).toBe(false);
    expect(reg.message).toContain(`TCP 127.0.0.1:${probePort}`);

    probeTarget = createServer((s) => s.end());
    await new Promise<void>((r) => probeTarget.listen(probePort, "127.0.0.1", () => r()));
    expect(await eventually(async () => (await edsAddresses(host)).includes("127.0.0.8:9080"), 10_000)).toBe(
      true,
    );
    await p.stop();
  }, 45_000);
});
