/**
 * Node proxy benchmark: what the node proxy costs an application's TCP traffic, measured side by
 * side in one run across two network-namespace machines (the test mesh of
 * tests/e2e/_node_proxy_mesh.ts: control plane in machine 1, `meshd agent --node-proxy` in A and
 * B). A load program in A talks to a load server in B either through both node proxies (run as
 * uid 65534, so A's capture takes its connections to the mesh service's virtual IP; HBONE to B's
 * 15008) or directly (run as root, which capture leaves alone, to a port of B no service declares).
 *
 * Usage: bun bench/node_proxy.ts [--mb 512] [--rounds 3] [--latency 1000] [--connections 1000]
 *          [--idle-ms 2000] [--json]
 *
 * Measured:
 * 1. bulk throughput: one TCP stream of `--mb` MiB, A to B, through the node proxies and direct,
 *    `--rounds` alternating rounds each, the median taken (goal: node proxy ≥ 50 % of direct);
 * 2. added latency of a new connection on a warm tunnel: `--latency` sequential connections,
 *    each connect + one byte echoed + close, p50 and p99 through the node proxies minus the same
 *    direct (goal: p99 added ≤ 1 ms);
 * 3. CPU per GB moved: both agents' user + system CPU (/proc/PID/stat) over the node-proxy bulk
 *    rounds, per GB of payload;
 * 4. memory per idle connection: `--connections` connections opened at once through the node
 *    proxies, each carrying 1 KiB each way, then left idle for `--idle-ms`; both agents' VmRSS
 *    growth over that idle state divided by the connections (goal ≤ 10 KB per connection);
 * 5. concurrent connections: after the idle time every one of them carries another 1 KiB each
 *    way; the successes are counted (goal: all).
 *
 * Beside them, two reference paths over the same three TCP legs (A's loopback, the veth, B's
 * loopback) show what any user-space relay costs on this machine: two bare relays in A and B
 * (`relay`: accept, connect, pipe both ways; run as root, outside capture), once in plain TCP and
 * once with TLS between them (ECDSA P-256, the verified CA, the same cipher suites as the node
 * proxies), measured in the same rounds (bulk) and, for plain relays, for latency too. They have
 * no capture, no policy, no telemetry and no tunnel multiplexing; the TLS relays' handshake is
 * per connection, so they are left out of the latency measure.
 *
 * Every loop is bounded in count and in time. The machines, processes and files are removed on
 * return and on failure.
 *
 * The load programs run by this file: `bun bench/node_proxy.ts serve PORT...` (B's server: the
 * first byte of a connection chooses echo `E` or sink `S`, a sink answers the byte count when its
 * client ends) and `bun bench/node_proxy.ts bulk|latency|hold HOST PORT ...` (A's clients, each
 * printing one JSON result line).
 */
import type { Subprocess } from "bun";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connect as tlsConnect, createServer as createTlsServer } from "node:tls";
import { benchArgs } from "./_args.ts";

/** The reference relays' ports (A listens on loopback, B on its test address). */
const RELAY = { plainA: 9101, plainB: 9102, tlsB: 9103, tlsA: 9104 } as const;

/** Goals the issue sets. */
export const GOALS = {
  /** Node-proxy throughput / direct throughput. */
  throughputRatio: 0.5,
  /** Added p99 of a new connection, ms. */
  addedP99Ms: 1,
  /** RSS growth per idle connection, bytes. */
  bytesPerIdleConnection: 10_000,
} as const;

/** Options of runNodeProxyBench. */
export interface NodeProxyBenchOptions {
  /** MiB per bulk stream. */
  readonly mb: number;
  /** Bulk rounds per path. */
  readonly rounds: number;
  /** Sequential new connections per path for latency. */
  readonly latencyConnections: number;
  /** Concurrent connections (idle memory, then all carry bytes). */
  readonly connections: number;
  /** How long the connections stay idle before RSS is read, ms. */
  readonly idleMs: number;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

/** Percentiles of a latency sample, ms. */
export interface Latency {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly failed: number;
}

/** What one run measured. */
export interface NodeProxyBenchResult {
  readonly bulk: {
    readonly mb: number;
    /** Median MiB/s over the rounds. */
    readonly directMBps: number;
    readonly meshMBps: number;
    readonly ratio: number;
    /** Every round, MiB/s. */
    readonly directRounds: readonly number[];
    readonly meshRounds: readonly number[];
  };
  readonly latency: {
    readonly direct: Latency;
    readonly mesh: Latency;
    readonly addedP50Ms: number;
    readonly addedP99Ms: number;
  };
  /** Both agents' CPU seconds per GB (10^9 bytes) of payload through the node proxies. */
  readonly cpuSecPerGB: { readonly a: number; readonly b: number; readonly total: number };
  readonly idle: {
    readonly connections: number;
    /** VmRSS growth per idle connection, bytes. */
    readonly bytesPerConnA: number;
    readonly bytesPerConnB: number;
    readonly bytesPerConn: number;
  };
  readonly concurrent: { readonly connections: number; readonly ok: number; readonly failed: number };
  /** The reference relays (see the file's comment). */
  readonly reference: {
    /** Median MiB/s through two plain relays, and every round. */
    readonly plainMBps: number;
    readonly plainRounds: readonly number[];
    /** Median MiB/s through two relays with TLS between them, and every round. */
    readonly tlsMBps: number;
    readonly tlsRounds: readonly number[];
    /** New connections through two plain relays. */
    readonly plainLatency: Latency;
  };
}

// ---------------------------------------------------------------------------------------------
// Load programs (run inside the machines).

const CHUNK = 64 * 1024;

function serve(ports: readonly number[]): void {
  for (const port of ports) {
    createServer((s) => {
      s.setNoDelay(true);
      let mode: "E" | "S" | undefined;
      let count = 0;
      s.on("data", (c: Buffer) => {
        if (mode === undefined) {
          mode = c[0] === 0x53 ? "S" : "E";
          c = c.subarray(1);
        }
        if (mode === "E") s.write(c);
        else count += c.length;
      });
      s.on("end", () => (mode === "S" ? s.end(String(count)) : s.end()));
      s.on("error", () => s.destroy());
    }).listen(port, "0.0.0.0", () => process.stdout.write(JSON.stringify({ listening: port }) + "\n"));
  }
  process.on("SIGTERM", () => process.exit(0));
}

/**
 * A bare relay: accepts on `listenPort` and pipes each connection to `target`, with TLS on the
 * inbound side (`tls-in`, the certificate and key in `dir`), the outbound side (`tls-out`,
 * verifying against `dir`'s CA) or neither (`plain`).
 */
function relayProgram(
  listenHost: string,
  listenPort: number,
  target: { host: string; port: number },
  mode: "plain" | "tls-in" | "tls-out",
  dir: string,
): void {
  const file = (name: string) => readFileSync(join(dir, name), "utf8");
  const onConnection = (s: Socket) => {
    s.setNoDelay(true);
    const up = mode === "tls-out"
      ? tlsConnect({
        host: target.host,
        port: target.port,
        ca: file("ca.pem"),
        cert: file("client.pem"),
        key: file("client.key"),
        checkServerIdentity: () => undefined,
        allowHalfOpen: true,
      })
      : connect({ port: target.port, host: target.host, allowHalfOpen: true });
    up.setNoDelay(true);
    s.pipe(up);
    up.pipe(s);
    s.on("error", () => up.destroy());
    up.on("error", () => s.destroy());
  };
  const server = mode === "tls-in"
    ? createTlsServer({
      cert: file("server.pem"),
      key: file("server.key"),
      ca: file("ca.pem"),
      requestCert: true,
      rejectUnauthorized: true,
      allowHalfOpen: true,
    }, onConnection)
    : createServer({ allowHalfOpen: true }, onConnection);
  server.listen(
    listenPort,
    listenHost,
    () => process.stdout.write(JSON.stringify({ listening: listenPort }) + "\n"),
  );
  process.on("SIGTERM", () => process.exit(0));
}

function opened(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((ok, fail) => {
    const s = connect(port, host);
    s.setNoDelay(true);
    const t = setTimeout(() => {
      s.destroy();
      fail(new Error("connect timed out"));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(t);
      ok(s);
    });
    s.once("error", (e) => {
      clearTimeout(t);
      fail(e);
    });
  });
}

/** Writes `bytes` to `s` and resolves once `expect` bytes came back (echo). */
function exchange(s: Socket, bytes: Uint8Array, expect: number, timeoutMs: number): Promise<void> {
  return new Promise((ok, fail) => {
    let got = 0;
    const t = setTimeout(() => done(new Error(`echo timed out after ${got} bytes`)), timeoutMs);
    const onData = (c: Buffer) => {
      got += c.length;
      if (got >= expect) done();
    };
    const onEnd = () => done(new Error(`closed after ${got} of ${expect} bytes`));
    const done = (err?: Error) => {
      clearTimeout(t);
      s.off("data", onData);
      s.off("error", done);
      s.off("close", onEnd);
      if (err) fail(err);
      else ok();
    };
    s.on("data", onData);
    s.on("error", done);
    s.on("close", onEnd);
    s.write(bytes);
  });
}

async function bulk(host: string, port: number, bytes: number): Promise<void> {
  const s = await opened(host, port, 5000);
  const chunk = Buffer.alloc(CHUNK, 0x61);
  const t0 = performance.now();
  const answer = new Promise<string>((ok, fail) => {
    let text = "";
    s.on("data", (c: Buffer) => (text += c.toString()));
    s.on("end", () => ok(text));
    s.on("error", fail);
  });
  s.write("S");
  let sent = 0;
  while (sent < bytes) {
    const n = Math.min(CHUNK, bytes - sent);
    if (!s.write(n === CHUNK ? chunk : chunk.subarray(0, n))) {
      await new Promise((r) => s.once("drain", r));
    }
    sent += n;
  }
  s.end();
  const counted = Number(await answer);
  const ms = performance.now() - t0;
  process.stdout.write(JSON.stringify({ bytes: counted, ms }) + "\n");
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function latency(host: string, port: number, n: number, maxMs: number): Promise<void> {
  const one = async () => {
    const t0 = performance.now();
    const s = await opened(host, port, 3000);
    try {
      // The mode byte, then one byte echoed.
      await exchange(s, Buffer.from("Ex"), 1, 3000);
    } finally {
      s.destroy();
    }
    return performance.now() - t0;
  };
  // Warm-up: the tunnel to B's node proxy exists before the first measured connection.
  for (let i = 0; i < 10; i++) await one().catch(() => {});
  const times: number[] = [];
  let failed = 0;
  const end = Date.now() + maxMs;
  for (let i = 0; i < n && Date.now() < end; i++) {
    try {
      times.push(await one());
    } catch {
      failed++;
    }
  }
  times.sort((a, b) => a - b);
  const r: Latency = { n: times.length, p50: percentile(times, 50), p99: percentile(times, 99), failed };
  process.stdout.write(JSON.stringify(r) + "\n");
}

async function hold(host: string, port: number, n: number, idleMs: number): Promise<void> {
  const payload = Buffer.alloc(1024, 0x62);
  const round = async (socks: Array<Socket | undefined>, first: boolean) => {
    let ok = 0;
    await Promise.all(socks.map(async (s, i) => {
      try {
        if (s === undefined) return;
        const bytes = first ? Buffer.concat([Buffer.from("E"), payload]) : payload;
        await exchange(s, bytes, payload.length, 20_000);
        ok++;
      } catch {
        s?.destroy();
        socks[i] = undefined;
      }
    }));
    return ok;
  };
  const socks = await Promise.all(
    Array.from({ length: n }, () => opened(host, port, 20_000).catch(() => undefined)),
  );
  const first = await round(socks, true);
  process.stdout.write(JSON.stringify({ phase: "idle", ok: first }) + "\n");
  await new Promise((r) => setTimeout(r, idleMs));
  const second = await round(socks, false);
  for (const s of socks) s?.destroy();
  process.stdout.write(JSON.stringify({ phase: "done", ok: second, failed: n - second }) + "\n");
}

// ---------------------------------------------------------------------------------------------
// The benchmark.

/** user + system CPU seconds of a process (/proc/PID/stat fields 14 and 15, in clock ticks). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** VmRSS of a process, bytes. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`/proc/${pid}/status: no VmRSS`);
  return Number(m[1]) * 1024;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The JSON lines a process printed, once it exits (killed after `timeoutMs`). */
async function jsonLines(p: Subprocess<"ignore", "pipe", "pipe">, timeoutMs: number): Promise<unknown[]> {
  const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  clearTimeout(t);
  const lines = out.split("\n").filter((l) => l.startsWith("{"));
  if (code !== 0 || lines.length === 0) throw new Error(`load program exited ${code}:\n${out}\n${err}`);
  return lines.map((l) => JSON.parse(l));
}

/** Runs the benchmark; see the file's comment. */
export async function runNodeProxyBench(o: NodeProxyBenchOptions): Promise<NodeProxyBenchResult> {
  const log = o.log ?? (() => {});
  const m = await import("../tests/e2e/_node_proxy_mesh.ts");
  const { eventually } = await import("../tests/e2e/_meshd.ts");
  const { waitForLine } = m;
  const { createTestCa } = await import("../tests/kube/_pki.ts");
  const certDir = mkdtempSync(join(tmpdir(), "meshd-np-bench-"));
  const mesh = await m.startNodeProxyMesh({ extraConfig: { peer: m.peerAuthentication("STRICT") } });
  try {
    const self = resolve(import.meta.path);
    const program = (args: readonly string[], asRoot: boolean) => {
      const argv = [process.execPath, self, ...args];
      return asRoot ? mesh.net.exec(mesh.a, argv) : mesh.execApp(mesh.a, argv);
    };
    const server = mesh.execApp(mesh.b, [
      process.execPath,
      self,
      "serve",
      String(m.BULK_PORT),
      String(m.DIRECT_PORT),
    ]);
    await waitForLine(server, "stdout", new RegExp(`"listening":${m.DIRECT_PORT}`));
    const [agentB, agentA] = await Promise.all([
      mesh.startAgent(mesh.b, {
        namespace: m.APPS_NS,
        serviceAccount: m.SERVER_SA,
        workloadName: "b",
        workloadGroup: "b",
        labels: ["app=b"],
      }),
      mesh.startAgent(mesh.a, { namespace: m.CLIENT_NS, serviceAccount: m.CLIENT_SA, workloadName: "a" }),
    ]);
    log("agents started; waiting for the mesh name to resolve on A");
    let vip = "";
    const named = await eventually(
      async () => {
        const r = await mesh.runApp(mesh.a, ["getent", "ahostsv4", m.BULK_HOST]);
        vip = r.stdout.split(/\s+/)[0] ?? "";
        if (vip === "") return false;
        // And reachable: one echoed connection.
        const p = program(["latency", vip, String(m.BULK_PORT), "1", "5000"], false);
        const lines = await jsonLines(p, 20_000).catch(() => []);
        return (lines[0] as Latency | undefined)?.n === 1;
      },
      90_000,
      500,
    );
    if (!named) {
      throw new Error(`${m.BULK_HOST} never worked from A:\n${mesh.diagnostics()}`);
    }
    const direct = { host: mesh.b.ip, port: m.DIRECT_PORT, asRoot: true };
    const viaMesh = { host: vip, port: m.BULK_PORT, asRoot: false };

    // The reference relays: plain A 9101 → B 9102, TLS A 9104 → B 9103, both to B's load server.
    const ca = await createTestCa("node-proxy-bench-ca");
    const [serverPem, clientPem] = await Promise.all([ca.server(), ca.client("relay")]);
    writeFileSync(join(certDir, "ca.pem"), ca.cert);
    writeFileSync(join(certDir, "server.pem"), serverPem.cert);
    writeFileSync(join(certDir, "server.key"), serverPem.key);
    writeFileSync(join(certDir, "client.pem"), clientPem.cert);
    writeFileSync(join(certDir, "client.key"), clientPem.key);
    const relays = [
      [mesh.b, "0.0.0.0", RELAY.plainB, "127.0.0.1", m.DIRECT_PORT, "plain"],
      [mesh.b, "0.0.0.0", RELAY.tlsB, "127.0.0.1", m.DIRECT_PORT, "tls-in"],
      [mesh.a, "127.0.0.1", RELAY.plainA, mesh.b.ip, RELAY.plainB, "plain"],
      [mesh.a, "127.0.0.1", RELAY.tlsA, mesh.b.ip, RELAY.tlsB, "tls-out"],
    ] as const;
    for (const [machine, host, port, toHost, toPort, mode] of relays) {
      const p = mesh.net.exec(machine, [
        process.execPath,
        self,
        "relay",
        host,
        String(port),
        toHost,
        String(toPort),
        mode,
        certDir,
      ]);
      await waitForLine(p, "stdout", new RegExp(`"listening":${port}`));
    }
    const plainRelays = { host: "127.0.0.1", port: RELAY.plainA, asRoot: true };
    const tlsRelays = { host: "127.0.0.1", port: RELAY.tlsA, asRoot: true };

    // 1 and 3: bulk, alternating rounds, agents' CPU over the node-proxy rounds.
    const bytes = o.mb * 1024 * 1024;
    const mbps = async (t: typeof direct) => {
      const [r] = await jsonLines(
        program(["bulk", t.host, String(t.port), String(bytes)], t.asRoot),
        60_000 + o.mb * 1000,
      ) as Array<{ bytes: number; ms: number }>;
      if (r!.bytes !== bytes) {
        throw new Error(`bulk to ${t.host}:${t.port}: ${r!.bytes} of ${bytes} bytes arrived`);
      }
      return bytes / 1024 / 1024 / (r!.ms / 1000);
    };
    const directRounds: number[] = [];
    const meshRounds: number[] = [];
    const plainRounds: number[] = [];
    const tlsRounds: number[] = [];
    let cpuA = 0;
    let cpuB = 0;
    for (let i = 0; i < o.rounds; i++) {
      directRounds.push(await mbps(direct));
      const [a0, b0] = [cpuSeconds(agentA.pid), cpuSeconds(agentB.pid)];
      meshRounds.push(await mbps(viaMesh));
      cpuA += cpuSeconds(agentA.pid) - a0;
      cpuB += cpuSeconds(agentB.pid) - b0;
      tlsRounds.push(await mbps(tlsRelays));
      plainRounds.push(await mbps(plainRelays));
      log(
        `bulk round ${i + 1}: direct ${directRounds.at(-1)!.toFixed(1)} MiB/s, node proxy ${
          meshRounds.at(-1)!.toFixed(1)
        } MiB/s, TLS relays ${tlsRounds.at(-1)!.toFixed(1)} MiB/s, plain relays ${
          plainRounds.at(-1)!.toFixed(1)
        } MiB/s`,
      );
    }
    const gb = (bytes * o.rounds) / 1e9;

    // 2: new-connection latency on a warm tunnel.
    const lat = async (t: typeof direct) =>
      (await jsonLines(
        program(["latency", t.host, String(t.port), String(o.latencyConnections), "60000"], t.asRoot),
        90_000,
      ))[0] as Latency;
    const latDirect = await lat(direct);
    const latMesh = await lat(viaMesh);
    const latPlain = await lat(plainRelays);
    log(`latency: direct p50 ${latDirect.p50.toFixed(3)} ms, node proxy p50 ${latMesh.p50.toFixed(3)} ms`);

    // 4 and 5: idle connections, then all carry bytes again.
    await Bun.sleep(1000);
    const [rssA0, rssB0] = [rssBytes(agentA.pid), rssBytes(agentB.pid)];
    const holder = program(
      ["hold", viaMesh.host, String(viaMesh.port), String(o.connections), String(o.idleMs)],
      false,
    );
    const out: string[] = [];
    const reading = (async () => {
      const dec = new TextDecoder();
      for await (const c of holder.stdout) out.push(...dec.decode(c).split("\n").filter(Boolean));
    })();
    const idleReached = await eventually(
      () => out.some((l) => l.includes('"phase":"idle"')) || holder.exitCode !== null,
      60_000,
      50,
    );
    if (!idleReached) holder.kill("SIGKILL");
    // Read RSS in the middle of the idle time.
    await Bun.sleep(o.idleMs / 2);
    const [rssA1, rssB1] = [rssBytes(agentA.pid), rssBytes(agentB.pid)];
    const t = setTimeout(() => holder.kill("SIGKILL"), o.idleMs + 60_000);
    await holder.exited;
    clearTimeout(t);
    await reading;
    const idle = JSON.parse(out.find((l) => l.includes('"phase":"idle"')) ?? "{}") as { ok?: number };
    const done = JSON.parse(out.find((l) => l.includes('"phase":"done"')) ?? "{}") as { ok?: number };
    const held = idle.ok ?? 0;
    const perConn = (d: number) => (held > 0 ? d / held : NaN);

    const result: NodeProxyBenchResult = {
      bulk: {
        mb: o.mb,
        directMBps: median(directRounds),
        meshMBps: median(meshRounds),
        ratio: median(meshRounds) / median(directRounds),
        directRounds,
        meshRounds,
      },
      latency: {
        direct: latDirect,
        mesh: latMesh,
        addedP50Ms: latMesh.p50 - latDirect.p50,
        addedP99Ms: latMesh.p99 - latDirect.p99,
      },
      cpuSecPerGB: { a: cpuA / gb, b: cpuB / gb, total: (cpuA + cpuB) / gb },
      idle: {
        connections: held,
        bytesPerConnA: perConn(rssA1 - rssA0),
        bytesPerConnB: perConn(rssB1 - rssB0),
        bytesPerConn: perConn(rssA1 - rssA0 + rssB1 - rssB0),
      },
      concurrent: { connections: o.connections, ok: done.ok ?? 0, failed: o.connections - (done.ok ?? 0) },
      reference: {
        plainMBps: median(plainRounds),
        plainRounds,
        tlsMBps: median(tlsRounds),
        tlsRounds,
        plainLatency: latPlain,
      },
    };
    return result;
  } finally {
    await mesh.cleanup();
    rmSync(certDir, { recursive: true, force: true });
  }
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "n/a");
const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "n/a");

/** The results as a Markdown table, each measure beside its goal. */
export function formatNodeProxyResults(r: NodeProxyBenchResult): string {
  const rows: Array<[string, string, string]> = [
    [
      `bulk stream (${r.bulk.mb} MiB), direct`,
      `${f1(r.bulk.directMBps)} MiB/s (rounds ${r.bulk.directRounds.map(f1).join(", ")})`,
      "",
    ],
    [
      `bulk stream (${r.bulk.mb} MiB), through two node proxies`,
      `${f1(r.bulk.meshMBps)} MiB/s (rounds ${r.bulk.meshRounds.map(f1).join(", ")})`,
      `${f3(r.bulk.ratio)} of direct (goal ≥ ${GOALS.throughputRatio}: ${
        r.bulk.ratio >= GOALS.throughputRatio ? "met" : "not met"
      })`,
    ],
    [
      "new connection, direct (connect + 1 byte echoed)",
      `p50 ${f3(r.latency.direct.p50)} ms, p99 ${
        f3(r.latency.direct.p99)
      } ms (${r.latency.direct.n} ok, ${r.latency.direct.failed} failed)`,
      "",
    ],
    [
      "new connection, warm tunnel",
      `p50 ${f3(r.latency.mesh.p50)} ms, p99 ${
        f3(r.latency.mesh.p99)
      } ms (${r.latency.mesh.n} ok, ${r.latency.mesh.failed} failed)`,
      `added p50 ${f3(r.latency.addedP50Ms)} ms, p99 ${
        f3(r.latency.addedP99Ms)
      } ms (goal p99 ≤ ${GOALS.addedP99Ms} ms: ${
        r.latency.addedP99Ms <= GOALS.addedP99Ms ? "met" : "not met"
      }, ${f1(r.latency.addedP99Ms / GOALS.addedP99Ms)} × goal)`,
    ],
    [
      "agent CPU per GB through the node proxies",
      `A ${f3(r.cpuSecPerGB.a)} s, B ${f3(r.cpuSecPerGB.b)} s, both ${f3(r.cpuSecPerGB.total)} s`,
      "",
    ],
    [
      `memory per idle connection (${r.idle.connections} connections)`,
      `A ${f1(r.idle.bytesPerConnA / 1000)} KB, B ${f1(r.idle.bytesPerConnB / 1000)} KB, both ${
        f1(r.idle.bytesPerConn / 1000)
      } KB`,
      `goal ≤ ${GOALS.bytesPerIdleConnection / 1000} KB per proxy: A ${
        f1(r.idle.bytesPerConnA / GOALS.bytesPerIdleConnection)
      } × goal, B ${f1(r.idle.bytesPerConnB / GOALS.bytesPerIdleConnection)} × goal`,
    ],
    [
      `bulk stream, two bare relays with TLS between them (reference)`,
      `${f1(r.reference.tlsMBps)} MiB/s (rounds ${r.reference.tlsRounds.map(f1).join(", ")})`,
      `${f3(r.reference.tlsMBps / r.bulk.directMBps)} of direct; node proxy ÷ TLS relays ${
        f3(r.bulk.meshMBps / r.reference.tlsMBps)
      }`,
    ],
    [
      `bulk stream, two bare plain relays (reference)`,
      `${f1(r.reference.plainMBps)} MiB/s (rounds ${r.reference.plainRounds.map(f1).join(", ")})`,
      `${f3(r.reference.plainMBps / r.bulk.directMBps)} of direct`,
    ],
    [
      "new connection, two bare plain relays (reference)",
      `p50 ${f3(r.reference.plainLatency.p50)} ms, p99 ${f3(r.reference.plainLatency.p99)} ms`,
      `added p50 ${f3(r.reference.plainLatency.p50 - r.latency.direct.p50)} ms, p99 ${
        f3(r.reference.plainLatency.p99 - r.latency.direct.p99)
      } ms`,
    ],
    [
      `${r.concurrent.connections} concurrent connections, 1 KiB each way twice`,
      `${r.concurrent.ok} ok, ${r.concurrent.failed} failed`,
      r.concurrent.failed === 0 ? "all carried bytes" : "not all",
    ],
  ];
  return [
    "| measure | value | against the goal |",
    "| --- | --- | --- |",
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ].join("\n");
}

if (import.meta.main) {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === "serve") serve(rest.map(Number));
  else if (mode === "relay") {
    const [host, port, toHost, toPort, how, dir] = rest;
    relayProgram(host!, Number(port), { host: toHost!, port: Number(toPort) }, how as "plain", dir!);
  } else if (mode === "bulk" || mode === "latency" || mode === "hold") {
    const [host, port, n, extra] = [rest[0]!, Number(rest[1]), Number(rest[2]), rest[3]];
    if (mode === "bulk") await bulk(host, port, n);
    else if (mode === "latency") await latency(host, port, n, Number(extra ?? 60_000));
    else await hold(host, port, n, Number(extra ?? 2000));
    process.exit(0);
  } else {
    const args = benchArgs();
    const r = await runNodeProxyBench({
      mb: args.number("--mb", 512),
      rounds: args.number("--rounds", 3),
      latencyConnections: args.number("--latency", 1000),
      connections: args.number("--connections", 1000),
      idleMs: args.number("--idle-ms", 2000),
      log: (l) => console.error(l),
    });
    console.log(args.flag("--json") ? JSON.stringify(r, null, 2) : formatNodeProxyResults(r));
    process.exit(0);
  }
}
