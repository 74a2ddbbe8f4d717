/**
 * Test machines made of Linux network namespaces. `createTestNetwork({ machines: N })` makes N
 * namespaces, each one "machine" with an `eth0` holding 198.18.0.X/24 (198.18.0.0/15 is reserved
 * for network testing) and its loopback up, all plugged by veth pairs into a bridge that lives
 * in one more, dedicated "switch" namespace. Nothing is added to the root namespace: no link, no
 * address, no route; a machine has no default route, so its traffic cannot leave the network.
 * Machines share the host's file system and processes' view; only the network is separate.
 *
 * Processes run inside with `ip netns exec`. `cleanup()` kills what runs inside and deletes
 * every namespace (their links go with them); it is idempotent, runs at process exit and on
 * SIGINT/SIGTERM, and tests call it from `afterAll`. Names carry the owning process's pid
 * (`msh-PID-RAND-m1`), so each new network first sweeps the leftovers of runs whose process is
 * gone (a SIGKILLed test run).
 *
 * Needs root and iproute2; `netnsUnavailable()` says why not, for a skip message.
 */
import { spawn, spawnSync, type Subprocess } from "bun";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";

/** Every namespace this harness makes starts with this. */
export const NETNS_PREFIX = "msh-";
const NAME = /^msh-(\d+)-([a-z0-9]+)-(sw|m\d+)$/;
const IP_CANDIDATES = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"];

/** One test machine. */
export interface Machine {
  /** 1-based. */
  readonly index: number;
  /** Its network namespace. */
  readonly netns: string;
  /** Its address on the test network (198.18.0.INDEX). */
  readonly ip: string;
}

/** Options for exec and run. */
export interface ExecOptions {
  readonly cwd?: string;
  /** Added to this process's environment. */
  readonly env?: Record<string, string>;
}

/** What run() returns. */
export interface RunResult {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A set of test machines. */
export interface TestNetwork {
  /** The part of every namespace name unique to this network (`msh-PID-RAND`). */
  readonly id: string;
  readonly machines: readonly Machine[];
  /** Every namespace of this network, machines and switch. */
  readonly namespaces: readonly string[];
  /** Starts `argv` inside `machine`; the process is killed by cleanup() if still running. */
  exec(machine: Machine, argv: readonly string[], opts?: ExecOptions): Subprocess<"ignore", "pipe", "pipe">;
  /** Runs `argv` inside `machine` to its end (killed after `timeoutMs`, default 30 s). */
  run(
    machine: Machine,
    argv: readonly string[],
    opts?: ExecOptions & { timeoutMs?: number },
  ): Promise<RunResult>;
  /** Kills every process inside and deletes every namespace. Idempotent. */
  cleanup(): void;
}

let ipPath: string | undefined;
function ipBinary(): string | undefined {
  ipPath ??= IP_CANDIDATES.find((p) => existsSync(p));
  return ipPath;
}

function ip(args: readonly string[]): { ok: boolean; out: string; err: string } {
  const r = spawnSync([ipBinary()!, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return { ok: r.exitCode === 0, out: r.stdout.toString(), err: r.stderr.toString().trim() };
}

function ipOk(args: readonly string[]): string {
  const r = ip(args);
  if (!r.ok) throw new Error(`ip ${args.join(" ")}: ${r.err}`);
  return r.out;
}

let unavailable: string | undefined | null = null;
/**
 * Why network-namespace tests cannot run here (not root, no iproute2, namespaces not
 * permitted), or undefined when they can. Tried once per process.
 */
export function netnsUnavailable(): string | undefined {
  if (unavailable !== null) return unavailable;
  if (process.platform !== "linux") return (unavailable = "network namespaces need Linux");
  if (process.getuid?.() !== 0) return (unavailable = "network namespaces need root");
  if (ipBinary() === undefined) return (unavailable = "iproute2's ip is not installed");
  const probe = `${NETNS_PREFIX}${process.pid}-probe-sw`;
  const r = ip(["netns", "add", probe]);
  if (!r.ok) return (unavailable = `ip netns add failed: ${r.err}`);
  ip(["netns", "del", probe]);
  return (unavailable = undefined);
}

/** The namespaces on this host that this harness made (any run's). */
export function listTestNamespaces(): string[] {
  return ipOk(["netns", "list"]).split("\n").map((l) => l.split(" ")[0]!).filter((n) =>
    n.startsWith(NETNS_PREFIX)
  );
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function removeNamespace(ns: string): void {
  const pids = ip(["netns", "pids", ns]);
  for (const p of pids.ok ? pids.out.split("\n").filter((l) => /^\d+$/.test(l)) : []) {
    try {
      process.kill(Number(p), "SIGKILL");
    } catch {
      // already gone
    }
  }
  ip(["netns", "del", ns]);
}

/** Removes the namespaces of earlier runs whose owning process is gone; returns their names. */
export function sweepStaleNetworks(): string[] {
  const stale = listTestNamespaces().filter((n) => {
    const m = NAME.exec(n);
    return m !== null && Number(m[1]) !== process.pid && !alive(Number(m[1]));
  });
  stale.forEach(removeNamespace);
  return stale;
}

const live = new Set<TestNetwork>();
let hooked = false;
function hookProcessExit(): void {
  if (hooked) return;
  hooked = true;
  const all = () => [...live].forEach((n) => n.cleanup());
  process.on("exit", all);
  for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.once(sig, () => {
      all();
      process.exit(code);
    });
  }
}

/** Makes `machines` test machines on one switch. Throws (having removed what it made) on failure. */
export function createTestNetwork(opts: { machines: number }): TestNetwork {
  const reason = netnsUnavailable();
  if (reason !== undefined) throw new Error(`cannot make test machines: ${reason}`);
  if (!(opts.machines >= 1 && opts.machines <= 250)) throw new Error("machines: want 1 to 250");
  sweepStaleNetworks();
  const id = `${NETNS_PREFIX}${process.pid}-${randomBytes(4).toString("hex")}`;
  const sw = `${id}-sw`;
  const machines: Machine[] = Array.from({ length: opts.machines }, (_, i) => ({
    index: i + 1,
    netns: `${id}-m${i + 1}`,
    ip: `198.18.0.${i + 1}`,
  }));
  const procs = new Set<Subprocess>();
  let done = false;
  const made: string[] = [];
  const net: TestNetwork = {
    id,
    machines,
    namespaces: [sw, ...machines.map((m) => m.netns)],
    exec(machine, argv, o = {}) {
      if (done) throw new Error(`test network ${id} was cleaned up`);
      const proc = spawn([ipBinary()!, "netns", "exec", machine.netns, ...argv], {
        cwd: o.cwd,
        env: { ...process.env, ...o.env },
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      procs.add(proc);
      proc.exited.then(() => procs.delete(proc));
      return proc;
    },
    async run(machine, argv, o = {}) {
      const proc = net.exec(machine, argv, o);
      const timer = setTimeout(() => proc.kill("SIGKILL"), o.timeoutMs ?? 30_000);
      const [stdout, stderr, exitCode] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ]);
      clearTimeout(timer);
      return { exitCode, stdout, stderr };
    },
    cleanup() {
      if (done) return;
      done = true;
      live.delete(net);
      for (const p of procs) p.kill("SIGKILL");
      for (const ns of [...made].reverse()) removeNamespace(ns);
    },
  };
  live.add(net);
  hookProcessExit();
  const add = (ns: string) => {
    ipOk(["netns", "add", ns]);
    made.push(ns);
    ipOk(["-n", ns, "link", "set", "lo", "up"]);
  };
  try {
    add(sw);
    ipOk(["-n", sw, "link", "add", "br0", "type", "bridge"]);
    ipOk(["-n", sw, "link", "set", "br0", "up"]);
    for (const m of machines) {
      add(m.netns);
      const port = `p${m.index}`;
      ipOk(["-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", m.netns]);
      ipOk(["-n", sw, "link", "set", port, "master", "br0", "up"]);
      ipOk(["-n", m.netns, "addr", "add", `${m.ip}/24`, "dev", "eth0"]);
      ipOk(["-n", m.netns, "link", "set", "eth0", "up"]);
    }
  } catch (err) {
    net.cleanup();
    throw err;
  }
  return net;
}
