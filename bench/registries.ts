/**
 * Platform registries at scale: 10,000 instances across a Consul and a Eureka (the protocol test
 * servers of tests/registry/), read by one meshd through `--registry`, served to simulated Envoy
 * sidecars (bench/xds_client.ts: real ADS streams that ACK every response). Each change (an
 * instance registered, alternating between the registries) is timed from the moment
 * the test server applied it until every sidecar ACKed the EDS response that carries it; the
 * target is 1 s.
 *
 *   bun bench/registries.ts [--instances 10000] [--sidecars 10] [--changes 10]
 *
 * @module
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type ConsulTestServer, startConsulServer } from "../tests/registry/_consul_server.ts";
import { type EurekaTestServer, startEurekaServer } from "../tests/registry/_eureka_server.ts";
import { benchArgs } from "./_args.ts";
import { clientCommand, median, spawnClients } from "./xds.ts";

const ROOT = resolve(import.meta.dir, "..");
const now = () => performance.timeOrigin + performance.now();
/** Instances per service (each registry gets instances / 2 / PER_SERVICE services). */
const PER_SERVICE = 50;
/**
 * Eureka is polled (its clients fetch `apps/delta` every 30 s by default), so a change reaches
 * meshd within one interval; the bench polls every 250 ms. Consul's blocking queries need none.
 */
const EUREKA_INTERVAL = "250ms";

/** What one run measured. */
export interface RegistriesBenchResult {
  readonly instances: number;
  readonly services: number;
  readonly sidecars: number;
  /** Seconds from meshd's start until both registries' views were complete. */
  readonly initialSyncSec: number;
  /** Milliseconds from each change until every sidecar ACKed EDS with it. */
  readonly changeMs: readonly number[];
  readonly medianMs: number;
  readonly maxMs: number;
  /** Worst change time over the 1 s target (below 1 meets it). */
  readonly ratio: number;
}

interface Status {
  name: string;
  synced: boolean;
  endpoints: number;
  services: number;
}

async function registryz(admin: string): Promise<Status[]> {
  return await fetch(`http://${admin}/debug/registryz`).then((r) => r.json() as Promise<Status[]>, () => []);
}

async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`bench/registries.ts: ${what} within ${timeoutMs} ms`);
    await Bun.sleep(20);
  }
}

function address(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

async function fill(consul: ConsulTestServer, eureka: EurekaTestServer, half: number): Promise<void> {
  for (let i = 0; i < half; i++) {
    const svc = `svc-${Math.floor(i / PER_SERVICE)}`;
    consul.register({
      Node: `node-${i}`,
      Address: address(i),
      Service: { ID: `${svc}-${i}`, Service: svc, Port: 8080, Address: address(i) },
      Checks: [{ CheckID: `service:${svc}-${i}`, Status: "passing", ServiceID: `${svc}-${i}` }],
    });
  }
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < half; i++) {
    const app = `app-${Math.floor(i / PER_SERVICE)}`;
    jobs.push(eureka.register({
      app,
      instanceId: `${app}-${i}`,
      hostName: `${app}-${i}.local`,
      ipAddr: address(half + i),
      port: 8080,
    }));
    if (jobs.length >= 64) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
}

/** Runs the benchmark; small values make it a test. */
export async function runRegistriesBench(
  opts: { instances: number; sidecars: number; changes: number },
): Promise<RegistriesBenchResult> {
  const half = Math.floor(opts.instances / 2);
  const consul = await startConsulServer();
  const eureka = await startEurekaServer({ prefix: "/eureka" });
  let meshd: ReturnType<typeof Bun.spawn> | undefined;
  const clients = spawnClients(opts.sidecars, 1, clientCommand("bun", tmpdir()), 64);
  try {
    await fill(consul, eureka, half);
    const t0 = now();
    meshd = Bun.spawn([
      process.execPath,
      join(ROOT, "main.ts"),
      "serve",
      "--modules=pilot",
      "--grpc-addr=127.0.0.1:0",
      "--admin-addr=127.0.0.1:0",
      "--webhook-addr=127.0.0.1:0",
      "--log-format=json",
      "--shutdown-grace=1s",
      `--data-dir=${mkdtempSync(join(tmpdir(), "meshd-registries-"))}`,
      // One comma list: a repeated --registry flag keeps only its last value (mod/cli/flags.ts).
      `--registry=${consul.url},${eureka.registryUrl(`interval=${EUREKA_INTERVAL}&host=app`)}`,
    ], { cwd: ROOT, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    const addrs: Record<string, string> = {};
    void (async () => {
      const dec = new TextDecoder();
      let buf = "";
      for await (const chunk of meshd!.stderr as ReadableStream<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const m = /"msg":"(gRPC|admin) server listening".*?"addr":"([^"]+)"/.exec(buf.slice(0, nl));
          if (m) addrs[m[1]!] = m[2]!;
          buf = buf.slice(nl + 1);
        }
      }
    })();
    await until(
      "meshd listening",
      () => Promise.resolve(addrs.gRPC !== undefined && addrs.admin !== undefined),
      30_000,
    );
    const admin = addrs.admin!;
    const complete = async (want: number) => {
      const s = await registryz(admin);
      return s.length === 2 && s.every((r) => r.synced) && s.reduce((n, r) => n + r.endpoints, 0) === want;
    };
    await until(`${2 * half} endpoints in /debug/registryz`, () => complete(2 * half), 120_000);
    const initialSyncSec = (now() - t0) / 1000;
    const services = (await registryz(admin)).reduce((n, r) => n + r.services, 0);

    clients.start(addrs.gRPC!);
    await clients.all("full", 120_000);
    const changeMs: number[] = [];
    for (let c = 0; c < opts.changes; c++) {
      const id = `change-${c}`;
      for (const ch of clients.children) ch.send({ cmd: "arm", id, type: "EDS", mode: "changed" });
      await clients.all("armed", 10_000, id);
      const extra = opts.instances + c;
      // Registrations only, alternating between the registries; the adapters' removals are
      // covered by the end-to-end tests under tests/registry/.
      const n = Math.floor(c / 2);
      const t = now();
      if (c % 2 === 0) {
        consul.register({
          Node: `extra-${n}`,
          Address: address(extra),
          Service: { ID: `svc-0-extra-${n}`, Service: "svc-0", Port: 8080, Address: address(extra) },
        });
      } else {
        await eureka.register({
          app: "app-0",
          instanceId: `app-0-extra-${n}`,
          hostName: `extra-${n}.local`,
          ipAddr: address(extra),
          port: 8080,
        });
      }
      const conv = await clients.all("converged", 30_000, id);
      changeMs.push(Math.max(...conv.map((e) => e.tLastAck as number)) - t);
    }
    const maxMs = Math.max(...changeMs);
    return {
      instances: 2 * half,
      services,
      sidecars: opts.sidecars,
      initialSyncSec,
      changeMs,
      medianMs: median(changeMs),
      maxMs,
      ratio: maxMs / 1000,
    };
  } finally {
    await clients.stop();
    if (meshd) {
      meshd.kill("SIGTERM");
      await meshd.exited;
    }
    await consul.close();
    await eureka.stop();
  }
}

if (import.meta.main) {
  const a = benchArgs();
  const r = await runRegistriesBench({
    instances: a.number("--instances", 10_000),
    sidecars: a.number("--sidecars", 10),
    changes: a.number("--changes", 10),
  });
  console.log(
    `registries: ${r.instances} instances in ${r.services} services (Consul + Eureka), ${r.sidecars} sidecars\n` +
      `  initial sync: ${r.initialSyncSec.toFixed(1)} s\n` +
      `  change -> every sidecar ACKed EDS: median ${r.medianMs.toFixed(0)} ms, max ${
        r.maxMs.toFixed(0)
      } ms ` +
      `over ${r.changeMs.length} changes (${r.changeMs.map((x) => x.toFixed(0)).join(", ")})\n` +
      `  max / 1 s target: ${r.ratio.toFixed(2)} (${r.ratio < 1 ? "meets" : "misses"} the target)`,
  );
}
