/**
 * Clients failing over between replicas, end to end: a real three-member etcd, three
 * `meshd serve --store ... --ca-kek-file ...` replicas (pilot and citadel), a `meshd agent`
 * process whose --discovery-addr lists every replica's 15012 with the victim first, and real
 * grpc-js-xds clients whose bootstrap lists every replica (the gRPC target meshd's bootstraps
 * write), one of three with the victim first, calling a backend in a loop. The victim is killed
 * with SIGKILL: the agent registers again at a survivor by itself and renews its certificate
 * there, its workload never leaves the survivors' registries for longer than the grace, the
 * clients reconnect to survivors and get config applied after the kill, and no call fails.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { xdsServerUris } from "../../mod/agent/bootstrap.ts";
import { type AgentProcess, startAgentProcess } from "../agent/_agent_proc.ts";
import { ratingsGroupYaml } from "../agent/_workload_group.ts";
import { type EtcdCluster, startEtcd } from "../store/_etcd.ts";
import { type Backend, startBackend } from "./_grpc_backend.ts";
import {
  type CallsSummary,
  destinationRuleYaml,
  meshYaml,
  nodeId,
  startClient,
  syncz,
  virtualServiceYaml,
  waitForSync,
  type XdsClientProcess,
} from "./_grpc.ts";
import { eventually, type MeshdProcess, runMeshdCommand, startMeshd } from "./_meshd.ts";

const GRACE_MS = 6000;
const WORKLOAD = "ratings-10.0.0.7";

const GROUP = ratingsGroupYaml();

/** A replica with its plaintext (15010) and TLS (15012) gRPC addresses. */
interface Replica {
  readonly meshd: MeshdProcess;
  readonly grpcAddr: string;
  readonly tlsAddr: string;
}

interface Reg {
  workload: string;
  replica?: string;
  connections: number;
  state: string;
}

describe("agents and proxyless clients fail over between replicas", () => {
  const root = mkdtempSync(join(tmpdir(), "meshd-e2e-failover-"));
  const kekFile = join(root, "kek");
  let etcd: EtcdCluster;
  let replicas: Replica[] = [];
  let v1: Backend;
  let v2: Backend;
  let agent: AgentProcess | undefined;
  const clients: XdsClientProcess[] = [];
  const store = () => `--store=etcd://${etcd.endpoints}/fo`;

  async function applyConfig(name: string, yaml: string): Promise<void> {
    const file = join(root, name);
    writeFileSync(file, yaml);
    const r = await runMeshdCommand(["config", "apply", "-f", file, store()]);
    if (r.code !== 0) throw new Error(`meshd config apply ${name}: ${r.stderr}`);
  }
  const registrationz = async (r: Replica) =>
    (await (await fetch(`http://${r.meshd.adminAddr}/debug/registrationz`)).json()) as Reg[];

  beforeAll(async () => {
    etcd = await startEtcd(3);
    const kek = await runMeshdCommand(["ca", "kek", "create", `--out=${kekFile}`]);
    if (kek.code !== 0) throw new Error(kek.stderr);
    v1 = await startBackend("echo-v1");
    v2 = await startBackend("echo-v2");
    await applyConfig(
      "mesh.yaml",
      [
        meshYaml([{ name: "echo-v1", port: v1.port, version: "v1" }, {
          name: "echo-v2",
          port: v2.port,
          version: "v2",
        }]),
        destinationRuleYaml(),
        GROUP,
      ].join("---\n"),
    );
    const args = [
      "--modules=pilot,citadel",
      store(),
      `--ca-kek-file=${kekFile}`,
      "--etcd-timeout=2s",
      `--auto-register-grace=${GRACE_MS / 1000}s`,
      "--push-debounce=10ms",
      "--shutdown-grace=1s",
    ];
    const ms = await Promise.all([0, 1, 2].map(() => startMeshd({ args, timeoutMs: 60_000 })));
    const tls = (m: MeshdProcess) => m.logs.find((l) => l.msg === "citadel TLS listening")?.addr as string;
    for (const m of ms) {
      expect(await eventually(() => tls(m) !== undefined || m.proc.exitCode !== null, 60_000)).toBe(true);
      if (tls(m) === undefined) {
        throw new Error(`replica did not open 15012: ${JSON.stringify(m.logs.slice(-5))}`);
      }
    }
    replicas = ms.map((meshd) => ({ meshd, grpcAddr: meshd.grpcAddr, tlsAddr: tls(meshd) }));
  }, 120_000);
  afterAll(async () => {
    await agent?.stop();
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(replicas.map((r) => r.meshd.proc.exitCode === null ? r.meshd.stop() : undefined));
    await v1?.close();
    await v2?.close();
    await etcd?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test(
    "kill -9 of the replica holding the agent and a third of the clients: nobody is restarted, no call fails",
    async () => {
      const [victim, s1, s2] = replicas as [Replica, Replica, Replica];
      const survivors = [s1, s2];

      // The agent: its first certificate with a token over the victim's 15010, then mutual TLS to
      // the replicas' 15012, the victim first, for registration and renewals.
      const token = await runMeshdCommand([
        "token",
        "create",
        "--namespace=vms",
        "--service-account=ratings-sa",
        "--ttl=10m",
        "--single-use",
        store(),
        `--ca-kek-file=${kekFile}`,
      ]);
      expect(token.code).toBe(0);
      const tokenFile = join(root, "token");
      writeFileSync(tokenFile, token.stdout.trim());
      const base = join(root, "agent");
      mkdirSync(base);
      agent = startAgentProcess([
        `--ca-addr=${victim.grpcAddr}`,
        `--discovery-addr=${replicas.map((r) => r.tlsAddr).join(",")}`,
        "--namespace=vms",
        "--service-account=ratings-sa",
        "--workload-group=ratings",
        "--workload-name=vm-7",
        "--instance-ip=10.0.0.7",
        `--token-file=${tokenFile}`,
        `--output-dir=${join(base, "out")}`,
        `--data-dir=${join(base, "data")}`,
        "--cert-ttl=20s",
      ]);
      const first = await agent.waitFor((l) => l.msg === "registered with pilot", 60_000);
      expect(first.addr).toBe(victim.tlsAddr);
      for (const s of survivors) {
        expect(
          await eventually(async () => (await registrationz(s)).some((r) => r.workload === WORKLOAD), 30_000),
        )
          .toBe(true);
      }

      // Three clients, each listing every replica; the first one starts with the victim.
      const orders = [[victim, s1, s2], [s1, s2, victim], [s2, victim, s1]];
      for (const [i, order] of orders.entries()) {
        const dir = join(root, `client-${i}`);
        mkdirSync(dir);
        const uris = xdsServerUris(order.map((r) => r.grpcAddr).join(","));
        expect(uris).toHaveLength(1);
        clients.push(startClient("grpc-js", uris[0]!, { dir, nodeId: nodeId(`client-${i}`) }));
      }
      for (const [i, c] of clients.entries()) {
        const s = await c.calls({ n: 1, deadlineMs: 20_000 }, 60_000);
        expect(s.ok).toBe(1);
        await waitForSync(orders[i]![0]!.meshd.adminAddr, nodeId(`client-${i}`), 30_000);
      }

      // Calls in a loop on every client, counted, until the checks below are done.
      let calling = true;
      const totals: CallsSummary = {
        total: 0,
        ok: 0,
        byBackend: {},
        errors: {},
        details: {},
        latenciesMs: [],
      };
      const loops = clients.map(async (c) => {
        for (let batch = 0; calling && batch < 5000; batch++) {
          const s = await c.calls({ n: 10, concurrency: 2, deadlineMs: 5000 }, 60_000);
          totals.total += s.total;
          totals.ok += s.ok;
          for (const [code, n] of Object.entries(s.errors)) {
            totals.errors[code] = (totals.errors[code] ?? 0) + n;
          }
          Object.assign(totals.details, s.details);
          for (const [b, n] of Object.entries(s.byBackend)) {
            totals.byBackend[b] = (totals.byBackend[b] ?? 0) + n;
          }
        }
      });

      // How long each survivor goes without the workload at any one time, polled every 100 ms.
      let polling = true;
      const longestGapMs = [0, 0];
      const missingSince: Array<number | undefined> = [undefined, undefined];
      const poller = (async () => {
        while (polling) {
          for (const [i, s] of survivors.entries()) {
            const present = (await registrationz(s)).some((r) => r.workload === WORKLOAD);
            const now = Date.now();
            const since = missingSince[i];
            if (present && since !== undefined) {
              longestGapMs[i] = Math.max(longestGapMs[i]!, now - since);
              missingSince[i] = undefined;
            } else if (!present && since === undefined) missingSince[i] = now;
          }
          await Bun.sleep(100);
        }
      })();

      await Bun.sleep(500);
      const callsBeforeKill = totals.total;
      const logsBeforeKill = agent.logs.length;
      const killedAt = Date.now();
      victim.meshd.proc.kill("SIGKILL");
      await victim.meshd.proc.exited;

      // The agent registers at the next replica in its list by itself.
      const again = await agent.waitFor(
        (l) => l.msg === "registered with pilot" && l.addr !== victim.tlsAddr,
        60_000,
      );
      expect(again.addr).toBe(s1.tlsAddr);
      const reregisteredMs = Date.now() - killedAt;
      expect(agent.proc.exitCode).toBeNull();

      // The victim's client reconnects to a survivor.
      const onSurvivor = async (node: string) => {
        for (const s of survivors) {
          if ((await syncz(s.meshd.adminAddr)).some((p) => p.proxy === node)) return true;
        }
        return false;
      };
      expect(await eventually(() => onSurvivor(nodeId("client-0")), 60_000)).toBe(true);

      // Config applied after the kill reaches every client: all calls go to v2.
      await applyConfig(
        "route-v2.yaml",
        virtualServiceYaml(
          `- route:\n  - destination:\n      host: echo.test.svc.cluster.local\n      subset: v2`,
        ),
      );
      for (const c of clients) {
        expect(
          await eventually(async () => {
            const s = await c.calls({ n: 10, deadlineMs: 5000 });
            return s.ok === 10 && s.byBackend["echo-v2"] === 10;
          }, 60_000),
        ).toBe(true);
      }

      // The agent renews its certificate after the kill, at a survivor's CA.
      await agent.waitFor(
        (l) => l.msg === "certificate issued" && agent!.logs.indexOf(l) >= logsBeforeKill,
        60_000,
      );
      const caFailover = agent.logs.slice(logsBeforeKill).find((l) =>
        l.msg === "CA replica unreachable; trying the next"
      );
      expect(caFailover?.addr).toBe(victim.tlsAddr);

      // Past the grace, so a workload lost by both survivors would have shown as missing.
      await Bun.sleep(GRACE_MS + 1000);
      calling = false;
      await Promise.all(loops);
      polling = false;
      await poller;

      console.log(
        `failover: agent registered again after ${reregisteredMs} ms; longest absence at the survivors: ` +
          `${longestGapMs.join(", ")} ms; calls ${totals.total} (${
            totals.total - callsBeforeKill
          } after the kill), ` +
          `failed ${totals.total - totals.ok} ${JSON.stringify(totals.details)}`,
      );
      expect(totals.total - callsBeforeKill).toBeGreaterThan(0);
      expect(totals.errors).toEqual({});
      expect(totals.ok).toBe(totals.total);
      expect(missingSince).toEqual([undefined, undefined]);
      for (const g of longestGapMs) expect(g).toBeLessThan(GRACE_MS);
      for (const s of survivors) {
        const reg = (await registrationz(s)).find((r) => r.workload === WORKLOAD);
        expect(reg?.state).toBe("REGISTERED");
      }
    },
    300_000,
  );
});
