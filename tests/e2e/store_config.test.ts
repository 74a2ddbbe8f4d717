/**
 * Config in etcd end to end: a real three-member etcd (Debian's etcd-server on loopback), two
 * `meshd serve --store etcd://...` replicas, `meshd config` run as a process against one of
 * them, and a real proxyless gRPC client (grpc-js-xds) connected to the other replica and
 * routed by it. Then the etcd leader dies, then a second member: the replicas keep serving and
 * writes are refused with UNAVAILABLE; the members come back and nothing is lost.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "bun";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type EtcdCluster, startEtcd } from "../store/_etcd.ts";
import { type Backend, startBackend } from "./_grpc_backend.ts";
import {
  destinationRuleYaml,
  meshYaml,
  nodeId,
  startClient,
  virtualServiceYaml,
  waitForSync,
  type XdsClientProcess,
} from "./_grpc.ts";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "./_meshd.ts";

interface Configz {
  version: number;
  resources: Array<{ key: string; origin: string; state: string; errors: string[] }>;
  origins: Array<{ origin: string; state: string; errors: string[] }>;
}

const toV = (subset: string) =>
  `- route:\n  - destination:\n      host: echo.test.svc.cluster.local\n      subset: ${subset}`;

describe("config in etcd served by two replicas", () => {
  const root = mkdtempSync(join(tmpdir(), "meshd-e2e-store-"));
  let etcd: EtcdCluster;
  let store: string;
  let a: MeshdProcess;
  let b: MeshdProcess;
  let v1: Backend;
  let v2: Backend;
  let client: XdsClientProcess;
  const node = nodeId("client-store");

  const file = (name: string, text: string) => {
    const p = join(root, name);
    writeFileSync(p, text);
    return p;
  };
  /** Runs `meshd config ...` as its own process, as an operator on replica A's machine would. */
  async function config(...args: string[]) {
    const proc = spawn([process.execPath, join(ROOT, "main.ts"), "config", ...args], {
      cwd: ROOT,
      env: { ...process.env, MESHD_STORE: store, MESHD_ETCD_TIMEOUT: "2s" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, out, err };
  }
  const configz = async (m: MeshdProcess) =>
    (await (await fetch(`http://${m.adminAddr}/debug/configz`)).json()) as Configz;
  const accepted = async (m: MeshdProcess) =>
    (await configz(m)).resources.filter((r) => r.state === "accepted").map((r) => r.key).sort();
  const ready = async (m: MeshdProcess) => (await fetch(`http://${m.adminAddr}/healthz/ready`)).status;
  const storez = async (m: MeshdProcess) =>
    (await (await fetch(`http://${m.adminAddr}/debug/storez`)).json()) as {
      available: boolean;
      config: { state: string; relists: number; revision: number };
    };
  const etcdKeys = async () =>
    (await etcd.ctl(["get", "/e2e/config/", "--prefix", "--keys-only"])).split("\n").filter(Boolean).sort();
  const routedTo = async () => (await client.calls({ n: 10 })).byBackend;

  beforeAll(async () => {
    etcd = await startEtcd(3);
    store = `etcd://${etcd.endpoints}/e2e`;
    v1 = await startBackend("echo-v1");
    v2 = await startBackend("echo-v2");
    const args = ["--modules=pilot", `--store=${store}`, "--etcd-timeout=2s", "--push-debounce=10ms"];
    [a, b] = await Promise.all([startMeshd({ args }), startMeshd({ args })]);
    mkdirSync(join(root, "client"));
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await Promise.all([v1?.close(), v2?.close()]);
    await etcd?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test(
    "config applied through one replica's CLI is served by the other, which routes its gRPC client",
    async () => {
      expect(await eventually(async () => (await ready(a)) === 200 && (await ready(b)) === 200)).toBe(true);
      const mesh = meshYaml([{ name: "echo-v1", port: v1.port, version: "v1" }, {
        name: "echo-v2",
        port: v2.port,
        version: "v2",
      }]);
      const r = await config(
        "apply",
        "-f",
        file("mesh.yaml", [mesh, destinationRuleYaml(), virtualServiceYaml(toV("v2"))].join("---\n")),
      );
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      expect(r.out.split("\n").filter(Boolean)).toHaveLength(5);
      expect(r.out).toContain("VirtualService test/echo created");
      expect(await eventually(async () => (await accepted(b)).length === 5)).toBe(true);
      client = startClient("grpc-js", b.grpcAddr, { dir: join(root, "client"), nodeId: node });
      // A grpc-js channel connects to its xDS server on its first call.
      await client.calls({ n: 1, deadlineMs: 10_000 });
      await waitForSync(b.adminAddr, node, 20_000);
      expect(await routedTo()).toEqual({ "echo-v2": 10 });
    },
    60_000,
  );

  test(
    "an apply that conflicts with someone else's change writes nothing and names the resource",
    async () => {
      const got = await config("get", "VirtualService", "test/echo");
      expect(got.code).toBe(0);
      // Someone else sends traffic to v1 meanwhile, through replica B's store.
      expect((await config("apply", "-f", file("other.yaml", virtualServiceYaml(toV("v1"))))).code).toBe(0);
      expect(await eventually(async () => JSON.stringify(await routedTo()) === '{"echo-v1":10}')).toBe(true);
      const before = await etcd.revision();
      // What was read still says v2: applying it now would undo the other change unseen.
      const stale = file("stale.yaml", got.out);
      const r = await config("apply", "-f", stale);
      expect(r.code).toBe(1);
      expect(r.err).toContain(
        `conflict: ${stale}:1: VirtualService test/echo was changed by someone else since it was read`,
      );
      expect(r.err).toContain(`nothing from ${stale} was written`);
      expect(await etcd.revision()).toBe(before);
    },
    30_000,
  );

  test("an invalid apply writes nothing and says file, line and field", async () => {
    const before = await etcd.revision();
    const bad = file(
      "bad.yaml",
      virtualServiceYaml(`- timeout: soon\n  route:\n  - destination:\n      host: x`),
    );
    const r = await config("apply", "-f", bad);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      new RegExp(`${bad}:\\d+:\\d+: VirtualService test/echo: spec\\.http\\[0\\]\\.timeout: `),
    );
    expect(r.err).toContain("nothing was written");
    expect(await etcd.revision()).toBe(before);
  }, 30_000);

  test("a key written straight into etcd that is invalid is rejected alone, naming its key", async () => {
    const key = "/e2e/config/networking.istio.io/VirtualService/test/broken";
    const doc = {
      apiVersion: "networking.istio.io/v1",
      kind: "VirtualService",
      metadata: { name: "broken", namespace: "test" },
      spec: { hosts: ["broken.test"], http: [{ timeout: "soon", route: [{ destination: { host: "x" } }] }] },
    };
    await etcd.ctl(["put", key], JSON.stringify(doc, null, 2));
    for (const m of [a, b]) {
      expect(await eventually(async () => (await configz(m)).resources.some((r) => r.origin === key))).toBe(
        true,
      );
      const r = (await configz(m)).resources.find((x) => x.origin === key)!;
      expect(r.state).toBe("rejected");
      expect(r.errors[0]).toMatch(
        new RegExp(`^${key}:\\d+:\\d+: VirtualService test/broken: spec\\.http\\[0\\]\\.timeout: `),
      );
      expect(await accepted(m)).toHaveLength(5);
    }
    await etcd.ctl(["del", key]);
  }, 30_000);

  test("a compaction loses nothing: the replicas keep every resource and see the next change", async () => {
    await etcd.ctl(["compact", String(await etcd.revision())]);
    expect((await config("apply", "-f", file("to-v2.yaml", virtualServiceYaml(toV("v2"))))).code).toBe(0);
    expect(await eventually(async () => JSON.stringify(await routedTo()) === '{"echo-v2":10}')).toBe(true);
    for (const m of [a, b]) expect(await accepted(m)).toHaveLength(5);
  }, 30_000);

  test(
    "without the leader, then without two of three members: replicas keep serving, writes are refused",
    async () => {
      const leader = await etcd.leader();
      await etcd.kill(leader);
      // Two members still make a quorum: after an election, writes go through.
      const extra = file("extra.yaml", virtualServiceYaml(toV("v2")).replaceAll("name: echo", "name: extra"));
      expect(await eventually(async () => (await config("apply", "-f", extra)).code === 0, 20_000)).toBe(
        true,
      );
      expect(await eventually(async () => (await accepted(b)).length === 6)).toBe(true);
      const versions = [(await configz(a)).version, (await configz(b)).version];
      await etcd.kill((leader + 1) % 3);
      const r = await config("apply", "-f", file("refused.yaml", virtualServiceYaml(toV("v1"))));
      expect(r.code).toBe(1);
      expect(r.err).toMatch(
        /^meshd config apply: UNAVAILABLE: etcd is unavailable \(get\): .*(no leader|no answer|cannot connect)/,
      );
      expect(r.err).toContain("nothing more was written");
      // The replicas notice, say so, and keep serving what they had.
      for (const m of [a, b]) {
        expect(await eventually(async () => (await storez(m)).config.state === "retrying", 30_000)).toBe(
          true,
        );
        expect(await ready(m)).toBe(200);
      }
      expect([(await configz(a)).version, (await configz(b)).version]).toEqual(versions);
      expect(await routedTo()).toEqual({ "echo-v2": 10 });
    },
    90_000,
  );

  test("members back: writes work again and no resource is lost", async () => {
    for (let i = 0; i < 3; i++) if (!etcd.members[i]!.running()) await etcd.restart(i);
    await etcd.healthy();
    expect(
      await eventually(
        async () =>
          (await config("apply", "-f", file("back.yaml", virtualServiceYaml(toV("v1"))))).code === 0,
        20_000,
      ),
    )
      .toBe(true);
    expect(await eventually(async () => JSON.stringify(await routedTo()) === '{"echo-v1":10}', 20_000)).toBe(
      true,
    );
    const keys = await etcdKeys();
    expect(keys).toHaveLength(6);
    for (const m of [a, b]) {
      expect(await eventually(async () => (await storez(m)).config.state === "watching", 20_000)).toBe(true);
      expect((await accepted(m)).map((k) => `/e2e/config/${k}`)).toEqual(keys);
    }
  }, 60_000);
});
