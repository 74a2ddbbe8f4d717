/**
 * bench/loadgen/xds_load.c, the C load generator of bench/ha.ts, against a real meshd: its
 * sidecars send the DiscoveryRequests bench/xds_client.ts's do (read off the wire by a TCP relay
 * in front of meshd, compared sidecar by sidecar with one of the same app), meshd's /debug/syncz
 * sees them as fully served, it reports the protocol's events, and it refuses commands it does
 * not understand.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { fromBinary, toJson } from "@bufbuild/protobuf";
import { NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { DiscoveryRequestSchema } from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildXdsLoad } from "../../bench/ha.ts";
import { clientCommand, type Clients, routingYaml, spawnClients, writeConfigDir } from "../../bench/xds.ts";
import { type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";

const PER_CLIENT = 20;

interface TypeSync {
  state: string;
  ackedVersion?: string;
  resources: number;
}
interface ProxySync {
  proxy: string;
  types: Record<string, TypeSync>;
}

const nodeId = (i: number) => {
  const ip = `10.${100 + ((i >> 16) & 127)}.${(i >> 8) & 255}.${i & 255}`;
  return `sidecar~${ip}~bench-${i}.bench~bench.svc.cluster.local`;
};

/** A TCP relay to `target` that keeps the bytes each accepted connection sent. */
interface Tap {
  addr: string;
  sent: Buffer[][];
  close(): void;
}

async function tap(target: string): Promise<Tap> {
  const i = target.lastIndexOf(":");
  const sent: Buffer[][] = [];
  const server: Server = createServer((client) => {
    const chunks: Buffer[] = [];
    sent.push(chunks);
    const upstream = createConnection({ host: target.slice(0, i), port: Number(target.slice(i + 1)) });
    client.on("data", (b: Buffer) => {
      chunks.push(Buffer.from(b));
      upstream.write(b);
    });
    upstream.on("data", (b: Buffer) => client.write(b));
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return { addr: `127.0.0.1:${port}`, sent, close: () => server.close() };
}

const SHORT: Record<string, string> = {
  "type.googleapis.com/envoy.config.cluster.v3.Cluster": "CDS",
  "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": "EDS",
  "type.googleapis.com/envoy.config.listener.v3.Listener": "LDS",
  "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": "RDS",
};

/**
 * The DiscoveryRequests of every stream a client sent through the tap, by node id (from the
 * stream's first request): HTTP/2 DATA frames joined per stream, split into gRPC messages.
 */
function requestsByNode(sent: Buffer[][]): Map<string, Array<Record<string, unknown>>> {
  const out = new Map<string, Array<Record<string, unknown>>>();
  for (const chunks of sent) {
    const b = Buffer.concat(chunks);
    const data = new Map<number, Buffer[]>();
    for (let p = 24; p + 9 <= b.length;) {
      const len = b.readUIntBE(p, 3);
      const [type, flags, sid] = [b[p + 3]!, b[p + 4]!, b.readUInt32BE(p + 5) & 0x7fffffff];
      let payload = b.subarray(p + 9, p + 9 + len);
      if (type === 0) {
        if (flags & 0x8) payload = payload.subarray(1, payload.length - payload[0]!);
        data.set(sid, [...(data.get(sid) ?? []), payload]);
      }
      p += 9 + len;
    }
    for (const parts of data.values()) {
      const d = Buffer.concat(parts);
      const reqs: Array<Record<string, unknown>> = [];
      let id = "";
      for (let p = 0; p + 5 <= d.length; p += 5 + d.readUInt32BE(p + 1)) {
        const m = fromBinary(DiscoveryRequestSchema, d.subarray(p + 5, p + 5 + d.readUInt32BE(p + 1)));
        if (m.node) id = m.node.id;
        reqs.push({
          type: SHORT[m.typeUrl] ?? m.typeUrl,
          version: m.versionInfo,
          names: m.resourceNames,
          nonce: m.responseNonce !== "",
          node: m.node ? toJson(NodeSchema, m.node) : undefined,
        });
      }
      out.set(id, reqs);
    }
  }
  return out;
}

/** A sidecar's requests with its node id replaced by "NODE", to compare with another's. */
const anonymous = (reqs: Array<Record<string, unknown>> | undefined, id: string) =>
  JSON.parse(JSON.stringify(reqs ?? []).replaceAll(id, "NODE"));

let configDir: string;
let bundleDir: string;
let meshd: MeshdProcess;
let exe: string;

beforeAll(async () => {
  exe = await buildXdsLoad();
  configDir = writeConfigDir(5);
  bundleDir = mkdtempSync(join(tmpdir(), "meshd-xds-load-test-"));
  meshd = await startMeshd({ args: ["--modules=pilot", `--config-dir=${configDir}`], timeoutMs: 30_000 });
}, 60_000);

afterAll(async () => {
  await meshd?.stop();
  rmSync(configDir, { recursive: true, force: true });
  rmSync(bundleDir, { recursive: true, force: true });
});

async function syncz(): Promise<Map<string, ProxySync>> {
  const res = await fetch(`http://${meshd.adminAddr}/debug/syncz`);
  const list = (await res.json()) as ProxySync[];
  return new Map(list.map((p) => [p.proxy, p]));
}

/** What meshd knows of a sidecar, without what differs between any two sidecars of one app. */
function served(p: ProxySync | undefined): Record<string, Omit<TypeSync, "state"> & { state: string }> {
  const out: Record<string, Omit<TypeSync, "state"> & { state: string }> = {};
  for (const [t, s] of Object.entries(p?.types ?? {})) {
    out[t] = { state: s.state, ackedVersion: s.ackedVersion, resources: s.resources };
  }
  return out;
}

/**
 * syncz once every sidecar of both clients is SYNCED on all four types and each C sidecar is
 * served as its TypeScript twin is. A client reports "full" once every type was ACKed once, while
 * RDS may still grow with the route names LDS brings; this waits for that to settle (bounded).
 */
async function settled(): Promise<Map<string, ProxySync>> {
  let seen = await syncz();
  const done = () =>
    Array.from({ length: PER_CLIENT }, (_, i) => i).every((i) => {
      const mine = served(seen.get(nodeId(i)));
      return Object.keys(mine).length === 4 &&
        Object.values(mine).every((s) => s.state === "SYNCED") &&
        Bun.deepEquals(mine, served(seen.get(nodeId(i + PER_CLIENT))));
    });
  for (let k = 0; k < 200 && !done(); k++) {
    await Bun.sleep(50);
    seen = await syncz();
  }
  return seen;
}

test(
  "xds_load.c is served like bench/xds_client.ts: same types, ACKed versions and resources per app, and the same events",
  async () => {
    let c: Clients | undefined;
    let ts: Clients | undefined;
    const relay = await tap(meshd.grpcAddr);
    try {
      c = spawnClients(PER_CLIENT, 1, [exe], 5);
      ts = spawnClients(PER_CLIENT, 1, clientCommand("bun", bundleDir), 5);
      c.start(relay.addr);
      // Sidecars 20..39: the same apps (i mod 10) as the C client's 0..19.
      ts.start(relay.addr, { offset: PER_CLIENT });
      const [[opened], [full]] = await Promise.all([c.all("opened", 30_000), c.all("full", 30_000)]);
      await ts.all("full", 30_000);
      expect(opened!.t as number).toBeGreaterThan(Date.now() - 60_000);
      expect(full!.t as number).toBeGreaterThanOrEqual(full!.tFirst as number);

      let seen = await settled();
      for (let i = 0; i < PER_CLIENT; i++) {
        const mine = served(seen.get(nodeId(i)));
        expect(Object.keys(mine).sort()).toEqual(["CDS", "EDS", "LDS", "RDS"]);
        for (const s of Object.values(mine)) expect(s.state).toBe("SYNCED");
        expect(mine).toEqual(served(seen.get(nodeId(i + PER_CLIENT))));
      }

      // A route change: both report every sidecar's ACK of the new RDS version.
      for (const x of [c, ts]) x.children[0]!.send({ cmd: "arm", id: "r1", type: "RDS", mode: "changed" });
      await Promise.all([c.all("armed", 10_000, "r1"), ts.all("armed", 10_000, "r1")]);
      writeFileSync(join(configDir, "routing.yaml"), routingYaml(70, "1"));
      const [[conv]] = await Promise.all([
        c.all("converged", 30_000, "r1"),
        ts.all("converged", 30_000, "r1"),
      ]);
      expect(conv!.tLastAck as number).toBeGreaterThanOrEqual(conv!.tFirstRecv as number);
      seen = await settled();
      for (let i = 0; i < PER_CLIENT; i++) {
        expect(served(seen.get(nodeId(i)))).toEqual(served(seen.get(nodeId(i + PER_CLIENT))));
      }

      // On the wire: each C sidecar sent what the TypeScript sidecar of the same app sent.
      const reqs = requestsByNode(relay.sent);
      expect(reqs.size).toBe(2 * PER_CLIENT);
      const first = reqs.get(nodeId(0))!;
      expect(first.slice(0, 2).map((r) => r.type)).toEqual(["CDS", "LDS"]);
      expect((first[0]!.node as { metadata: unknown }).metadata).toEqual({
        NAMESPACE: "bench",
        LABELS: { app: "bench-app-0", version: "v1" },
      });
      expect(first.filter((r) => r.type === "EDS").at(-1)!.names).not.toEqual([]);
      for (let i = 0; i < PER_CLIENT; i++) {
        const mine = anonymous(reqs.get(nodeId(i)), nodeId(i));
        expect(mine.length).toBeGreaterThanOrEqual(8);
        expect(mine).toEqual(anonymous(reqs.get(nodeId(i + PER_CLIENT)), nodeId(i + PER_CLIENT)));
      }

      // stats: the responses counted since the arm, and sidecar 0's frames, each one gRPC message.
      c.children[0]!.send({ cmd: "stats", id: "r1" });
      const [stats] = await c.all("stats", 10_000, "r1");
      expect((stats!.responses as Record<string, number>).RDS).toBeGreaterThanOrEqual(PER_CLIENT);
      const frames = (stats!.frames as string[]).map((f) => Buffer.from(f, "base64"));
      expect(frames.length).toBeGreaterThan(0);
      for (const f of frames) {
        expect(f[0]).toBe(0);
        expect(f.readUInt32BE(1)).toBe(f.length - 5);
      }
      expect(stats).toMatchObject({ converged: PER_CLIENT, opened: PER_CLIENT, full: PER_CLIENT, closed: 0 });

      // failover to an address no sidecar is on: done at once.
      c.children[0]!.send({ cmd: "failover", id: "none", addr: "127.0.0.1:1" });
      const [moved] = await c.all("failover", 10_000, "none");
      expect(moved).toMatchObject({ moved: 0, byAddr: { [relay.addr]: PER_CLIENT } });
    } finally {
      await c?.stop();
      await ts?.stop();
      relay.close();
    }
  },
  120_000,
);

test("xds_load.c without addresses to fail over to: a broken connection leaves its streams closed, with errors", async () => {
  const c = spawnClients(3, 1, [exe], 2);
  try {
    // Nothing listens on port 1.
    c.start("127.0.0.1:1");
    let status: Record<string, unknown> = {};
    for (let k = 0; k < 100 && status.closed !== 3; k++) {
      c.children[0]!.send({ cmd: "status" });
      status = (await c.all("status", 5000))[0]!;
      if (status.closed !== 3) await Bun.sleep(50);
    }
    expect(status).toMatchObject({ ev: "status", opened: 0, full: 0, closed: 3 });
    const errors = status.errors as string[];
    expect(errors.some((e) => e.includes("connect 127.0.0.1:1"))).toBe(true);
    expect(errors.filter((e) => e.startsWith("stream "))).toHaveLength(3);
  } finally {
    await c.stop();
  }
});

async function run(lines: string[]): Promise<{ code: number; err: string; out: string }> {
  const p = Bun.spawn([exe], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  for (const l of lines) p.stdin.write(l + "\n");
  await p.stdin.end();
  const [code, out, err] = await Promise.all([
    p.exited,
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
  ]);
  return { code, out, err };
}

test("xds_load.c refuses what it does not understand, naming it on stderr", async () => {
  expect(await run(['{"cmd":"status"}'])).toEqual({
    code: 0,
    err: "",
    out: '{"ev":"status","opened":0,"full":0,"closed":0,"errors":[]}\n',
  });
  const unknown = await run(['{"cmd":"reload"}']);
  expect(unknown.code).toBe(2);
  expect(unknown.err).toContain('unknown command "reload"');
  const notJson = await run(["start please"]);
  expect(notJson.code).toBe(2);
  expect(notJson.err).toContain("command not understood (not a JSON object)");
  const nested = await run(['{"cmd":"start","opts":{"count":1}}']);
  expect(nested.code).toBe(2);
  expect(nested.err).toContain("nested objects");
  const missing = await run(['{"cmd":"start","addr":"127.0.0.1:1","perConn":1}']);
  expect(missing.code).toBe(2);
  expect(missing.err).toContain("command start: field count: a number is required");
  const badType = await run(['{"cmd":"arm","id":"a","type":"SDS"}']);
  expect(badType.code).toBe(2);
  expect(badType.err).toContain("field type: want CDS, EDS, LDS or RDS");
});
