/**
 * Onboarding a VM across machines (network namespaces, tests/netns/_harness.ts): the control
 * plane (`meshd serve` with default listeners) runs in machine 1 and VMs reach it at
 * 198.18.0.1. `meshd vm bundle` (the compiled binary, with default settings) makes a bundle
 * that carries the binary; machine 2 unpacks it and runs the agent as the bundle's systemd unit
 * does; it gets a certificate with the WorkloadGroup template's identity and shows up in
 * `meshd proxy-status`. A machine with a bundle that cannot work exits at once with one line.
 *
 * The machines share the host's file system, so the bundle is installed under a directory per
 * machine (`--install-dir`, the unit's STATE_DIRECTORY and RUNTIME_DIRECTORY) instead of /etc,
 * /var/lib and /run; everything else is as on a real machine.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseClusterEnv } from "../../mod/agent/settings.ts";
import { createTestNetwork, type Machine, netnsUnavailable, type TestNetwork } from "../netns/_harness.ts";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "./_meshd.ts";

const unavailable = netnsUnavailable();
if (unavailable !== undefined) {
  console.warn(`skipping the VM onboarding test across machines: ${unavailable}`);
}

const CONFIG = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: ratings, namespace: vms }
spec:
  metadata:
    labels: { app: ratings }
  template:
    serviceAccount: ratings-sa
    ports: { http: 9080 }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings, namespace: vms }
spec:
  hosts: [ratings.vms.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - { number: 9080, name: http, protocol: HTTP }
  workloadSelector:
    labels: { app: ratings }
`;

let net: TestNetwork;
let cp: Machine;
let dir: string;
let binary: string;
let dataDir: string;
let meshd: MeshdProcess;
const agents: Subprocess[] = [];

/** The build command of package.json (`npm run build`), writing to `outfile`. */
function buildCommand(outfile: string): string[] {
  const script = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    scripts: Record<string, string>;
  }).scripts.build!;
  const argv = script.split(/\s+/);
  expect(argv[0]).toBe("bun");
  argv[0] = process.execPath;
  argv[argv.indexOf("--outfile") + 1] = outfile;
  return argv;
}

/** Runs `meshd ARGS` (the built binary) in `machine`. */
function meshdIn(machine: Machine, args: readonly string[]) {
  return net.run(machine, [binary, ...args], { cwd: dir });
}

/** A machine's root: where the bundle is installed and the unit keeps its state. */
function machineRoot(m: Machine) {
  const root = join(dir, `machine${m.index}`);
  return {
    etc: join(root, "etc", "meshd"),
    state: join(root, "var", "lib", "meshd-agent"),
    runtime: join(root, "run", "meshd-agent"),
  };
}

/** Makes a bundle in the control plane's machine; returns the bundle's cluster.env values. */
async function makeBundle(target: Machine, extra: string[] = []): Promise<Record<string, string>> {
  const { etc } = machineRoot(target);
  const out = join(dir, `bundle-${target.index}.tar.gz`);
  const r = await meshdIn(cp, [
    "vm",
    "bundle",
    "--workload-group=vms/ratings",
    `--out=${out}`,
    `--data-dir=${dataDir}`,
    `--install-dir=${etc}`,
    ...extra,
  ]);
  expect({ code: r.exitCode, stderr: r.stderr }).toEqual({
    code: 0,
    stderr: expect.stringContaining("bundle for vms/ratings (spiffe://cluster.local/ns/vms/sa/ratings-sa)"),
  });
  expect(r.stderr).not.toContain("warning");
  mkdirSync(etc, { recursive: true });
  const untar = Bun.spawnSync(["tar", "-xzf", out, "-C", etc, "--strip-components=1"]);
  expect(untar.exitCode).toBe(0);
  const env = parseClusterEnv(readFileSync(join(etc, "cluster.env"), "utf8"), "cluster.env");
  return Object.fromEntries([...env].map(([k, v]) => [k, v.value]));
}

/** Starts the agent in `m` the way the installed unit's ExecStart does; collects its stderr. */
function startAgentAsUnit(m: Machine): { proc: Subprocess<"ignore", "pipe", "pipe">; stderr: () => string } {
  const { etc, state, runtime } = machineRoot(m);
  mkdirSync(state, { recursive: true, mode: 0o700 });
  mkdirSync(runtime, { recursive: true, mode: 0o750 });
  const unit = readFileSync(join(etc, "meshd-agent.service"), "utf8");
  const execStart = /^ExecStart=(.+)$/m.exec(unit)![1]!;
  const argv = execStart.split(" ").map((a) =>
    a.replaceAll("${STATE_DIRECTORY}", state).replaceAll("${RUNTIME_DIRECTORY}", runtime)
  );
  // The README installs the bundle's meshd as /usr/local/bin/meshd.
  expect(argv[0]).toBe("/usr/local/bin/meshd");
  argv[0] = join(etc, "meshd");
  const proc = net.exec(m, argv, { cwd: dir });
  agents.push(proc);
  let text = "";
  (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  return { proc, stderr: () => text };
}

/** The lines of an agent's stderr that report an error: JSON at level error, or plain text. */
function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.trim() !== "").filter((l) => {
    try {
      return (JSON.parse(l) as { level?: string }).level === "error";
    } catch {
      return true;
    }
  });
}

beforeAll(async () => {
  if (unavailable !== undefined) return;
  net = createTestNetwork({ machines: 3 });
  cp = net.machines[0]!;
  dir = mkdtempSync(join(tmpdir(), "meshd-vm-onboarding-"));
  dataDir = join(dir, "cp-data");
  mkdirSync(join(dir, "config"));
  writeFileSync(join(dir, "config", "ratings.yaml"), CONFIG);
  binary = join(dir, "meshd");
  const build = Bun.spawn(buildCommand(binary), { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const buildErr = await new Response(build.stderr).text();
  expect({ exit: await build.exited, buildErr }).toEqual({ exit: 0, buildErr: expect.any(String) });
  // The control plane with its default listeners (in its own machine, nothing collides).
  meshd = await startMeshd({
    command: ["ip", "netns", "exec", cp.netns, process.execPath, resolve(ROOT, "main.ts")],
    args: [
      `--config-dir=${join(dir, "config")}`,
      `--data-dir=${dataDir}`,
      "--grpc-addr=0.0.0.0:15010",
      "--grpc-tls-addr=0.0.0.0:15012",
      "--admin-addr=127.0.0.1:15014",
      "--webhook-addr=0.0.0.0:15017",
    ],
    timeoutMs: 30_000,
  });
  await meshd.addrOf("citadel TLS listening");
  const ready = await eventually(
    async () => {
      const r = await net.run(cp, [
        process.execPath,
        "-e",
        "const r = await fetch('http://127.0.0.1:15014/healthz/ready'); process.exit(r.status === 200 ? 0 : 1)",
      ]);
      return r.exitCode === 0;
    },
    30_000,
    200,
  );
  expect(ready).toBe(true);
}, 120_000);

afterAll(async () => {
  for (const a of agents) a.kill("SIGTERM");
  await Promise.all(agents.map((a) => a.exited));
  await meshd?.stop();
  net?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(unavailable !== undefined)("VM onboarding across machines", () => {
  test(
    "a bundle made with default settings gets the VM a certificate and a registration over 198.18.0.1",
    async () => {
      const vm = net.machines[1]!;
      const env = await makeBundle(vm);
      expect(env).toMatchObject({
        PILOT_ADDRESS: "198.18.0.1:15012",
        CA_ADDR: "198.18.0.1:15012",
        SERVICE_ACCOUNT: "ratings-sa",
        ISTIO_META_WORKLOAD_GROUP: "ratings",
      });
      const { etc, runtime } = machineRoot(vm);
      // What an operator checks first: the CA's certificate verifies for the address VMs dial.
      const s = await net.run(vm, [
        "openssl",
        "s_client",
        "-connect",
        "198.18.0.1:15012",
        "-verify_ip",
        "198.18.0.1",
        "-CAfile",
        join(etc, "root-cert.pem"),
        "-verify_return_error",
        "-alpn",
        "h2",
        "-brief",
      ]);
      expect(s.stderr).toContain("Verification: OK");
      expect(s.exitCode).toBe(0);

      const agent = startAgentAsUnit(vm);
      const chain = join(runtime, "certs", "cert-chain.pem");
      const issued = await eventually(() => existsSync(chain), 30_000, 100);
      expect({ issued, stderr: issued ? "" : agent.stderr() }).toEqual({ issued: true, stderr: "" });
      expect(new X509Certificate(readFileSync(chain)).subjectAltName).toBe(
        "URI:spiffe://cluster.local/ns/vms/sa/ratings-sa",
      );
      let status = "";
      const listed = await eventually(
        async () => {
          status = (await meshdIn(cp, ["proxy-status"])).stdout;
          return status.split("\n").some((l) => l.includes("198.18.0.2") && l.includes("REGISTERED"));
        },
        30_000,
        250,
      );
      expect({ listed, status }).toEqual({ listed: true, status: expect.any(String) });
      expect(agent.proc.exitCode).toBeNull();
    },
    90_000,
  );

  test(
    "a VM given a bundle whose token was redeemed exits at once with one line naming the setting",
    async () => {
      const vm2 = net.machines[1]!;
      const bad = net.machines[2]!;
      // The same bundle installed on a second machine (its paths moved to that machine's root).
      const [from, to] = [machineRoot(vm2).etc, machineRoot(bad).etc];
      mkdirSync(to, { recursive: true });
      expect(Bun.spawnSync(["cp", "-a", `${from}/.`, to]).exitCode).toBe(0);
      for (const f of ["cluster.env", "meshd-agent.service"]) {
        writeFileSync(join(to, f), readFileSync(join(to, f), "utf8").replaceAll(from, to));
      }
      const agent = startAgentAsUnit(bad);
      const exited = await eventually(() => agent.proc.exitCode !== null, 30_000, 100);
      expect({ exited, stderr: agent.stderr() }).toEqual({ exited: true, stderr: expect.any(String) });
      expect(agent.proc.exitCode).not.toBe(0);
      const lines = errorLines(agent.stderr());
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/redeemed/);
      expect(lines[0]).toMatch(/--token-file|TOKEN_FILE/);
    },
    60_000,
  );

  test(
    "a VM given a bundle that points at the plaintext port exits at once with one line naming the setting",
    async () => {
      const bad = net.machines[2]!;
      rmSync(join(dir, `machine${bad.index}`), { recursive: true, force: true });
      const env = await makeBundle(bad, ["--discovery-addr=198.18.0.1:15010"]);
      expect(env.PILOT_ADDRESS).toBe("198.18.0.1:15010");
      const agent = startAgentAsUnit(bad);
      const exited = await eventually(() => agent.proc.exitCode !== null, 30_000, 100);
      expect({ exited, stderr: agent.stderr() }).toEqual({ exited: true, stderr: expect.any(String) });
      expect(agent.proc.exitCode).not.toBe(0);
      const lines = errorLines(agent.stderr());
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/plaintext/);
      expect(lines[0]).toMatch(/--discovery-addr|PILOT_ADDRESS|--ca-tls-addr|CA_ADDR/);
    },
    60_000,
  );
});
