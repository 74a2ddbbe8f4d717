/**
 * A real etcd cluster for tests: Debian's etcd-server (`/usr/bin/etcd`), one or three members
 * on 127.0.0.1 with ports picked free and data in a temporary directory, and Debian's etcdctl
 * (`/usr/bin/etcdctl`) for what the tests do to etcd around meshd (raw puts, compaction, finding
 * the leader). Members can be killed and started again on the same ports and data.
 *
 * With `{ tls: true }` the members serve their client API over mutual TLS: a throwaway CA made with
 * `openssl` signs a serving certificate for 127.0.0.1 and a client certificate, the members demand
 * a client certificate that CA signed, and `ctl` presents it (peers still talk plain HTTP).
 *
 * Nothing here uses meshd's etcd client, so the tests check it against an independent one.
 */
import { spawn, type Subprocess } from "bun";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../e2e/_grpc.ts";

/** One member of the cluster. */
export interface EtcdMember {
  readonly name: string;
  /** "127.0.0.1:PORT" of the client API. */
  readonly addr: string;
  running(): boolean;
}

/** A running cluster. */
export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every client address, comma-separated (the form `--store etcd://...` takes). */
  readonly endpoints: string;
  /** With `{ tls: true }`: PEM files of the CA that signed the members' certificates, and a client's. */
  readonly tls?: EtcdTestPki;
  /** Runs etcdctl against the running members; resolves with its standard output, rejects on failure. */
  ctl(args: readonly string[], input?: string): Promise<string>;
  /** The current leader's index in `members`, asked of the running members. */
  leader(): Promise<number>;
  /** The cluster's current revision. */
  revision(): Promise<number>;
  /** Kills a member with SIGKILL (as a crash would). */
  kill(index: number): Promise<void>;
  /** Starts a killed member again on its ports and data. */
  restart(index: number): Promise<void>;
  /** Waits until a quorum answers a linearizable read. */
  healthy(timeoutMs?: number): Promise<void>;
  /** Kills every member and removes the data. Safe to call twice. */
  stop(): Promise<void>;
}

/** PEM files made for a cluster started with `{ tls: true }`. */
export interface EtcdTestPki {
  /** The CA certificate that signed the members' serving certificate and the client certificate. */
  readonly ca: string;
  /** A client certificate the members accept, and its key. */
  readonly cert: string;
  readonly key: string;
}

/** How startEtcd starts the members. */
export interface StartEtcdOptions {
  /** Serve the client API over mutual TLS (see the module's note). */
  readonly tls?: boolean;
  /** More flags for every member, e.g. `--auth-token-ttl=2`. */
  readonly args?: readonly string[];
}

const ETCD = "/usr/bin/etcd";
const OPENSSL = "/usr/bin/openssl";
/** openssl arguments for a new P-256 key, unencrypted. */
const NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
const ETCDCTL = "/usr/bin/etcdctl";
/** What etcd says while it has no leader or is electing one. */
const TRANSIENT = /request timed out|leader changed|no leader|context deadline exceeded|timed out waiting/;

interface MemberState {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  proc?: Subprocess;
  /** Each start's log file, in order. */
  readonly logs: string[];
}

async function openssl(args: readonly string[]): Promise<void> {
  const proc = spawn([OPENSSL, ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const [err, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`openssl ${args.join(" ")} failed (${code}): ${err.trim()}`);
}

/**
 * Makes a self-signed P-256 CA in `dir` (`NAME.pem`, `NAME-key.pem`) valid for a day; resolves
 * with the two paths.
 */
export async function makeTestCa(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}-key.pem`);
  const ext = [
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ];
  await openssl([
    "req",
    "-x509",
    ...NEW_KEY,
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "1",
    "-subj",
    `/CN=${name}`,
    ...ext,
  ]);
  return { cert, key };
}

/** A P-256 leaf certificate signed by `ca`, with the given extensions; resolves with cert and key paths. */
async function makeLeaf(
  dir: string,
  name: string,
  opts: { ca: { cert: string; key: string }; extensions: string },
): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}-key.pem`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, opts.extensions);
  await openssl(["req", "-new", ...NEW_KEY, "-keyout", key, "-out", csr, "-subj", `/CN=${name}`]);
  const { cert: caCert, key: caKey } = opts.ca;
  const sign = ["-CA", caCert, "-CAkey", caKey, "-CAcreateserial", "-days", "1", "-extfile", ext];
  await openssl(["x509", "-req", "-in", csr, ...sign, "-out", cert]);
  return { cert, key };
}

/** A CA, a serving certificate for 127.0.0.1 and a client certificate, in `dir`. */
async function makePki(dir: string): Promise<EtcdTestPki & { serverCert: string; serverKey: string }> {
  const ca = await makeTestCa(dir, "etcd-test-ca");
  const server = await makeLeaf(dir, "etcd-server", {
    ca,
    extensions: "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
  });
  const client = await makeLeaf(dir, "etcd-client", {
    ca,
    extensions: "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n",
  });
  return { ca: ca.cert, cert: client.cert, key: client.key, serverCert: server.cert, serverKey: server.key };
}

/** Starts a cluster of `size` members (1 or 3) and waits until it elects a leader. */
export async function startEtcd(size = 1, opts: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const dir = mkdtempSync(join(tmpdir(), "meshd-etcd-"));
  const pki = opts.tls ? await makePki(dir) : undefined;
  const clientScheme = pki ? "https" : "http";
  const tlsFlags = pki
    ? [
      `--cert-file=${pki.serverCert}`,
      `--key-file=${pki.serverKey}`,
      "--client-cert-auth",
      `--trusted-ca-file=${pki.ca}`,
    ]
    : [];
  const ctlTlsFlags = pki ? [`--cacert=${pki.ca}`, `--cert=${pki.cert}`, `--key=${pki.key}`] : [];
  const token = `meshd-test-${process.pid}-${Date.now()}`;
  const members: MemberState[] = [];
  for (let i = 0; i < size; i++) {
    members.push({
      name: `m${i}`,
      clientPort: await freePort(),
      peerPort: await freePort(),
      dataDir: join(dir, `m${i}`),
      logs: [],
    });
  }
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(",");
  /** Whether the member's process runs (a process killed by a signal has no exit code, only a signal code). */
  const alive = (m: MemberState) =>
    m.proc !== undefined && m.proc.exitCode === null && m.proc.signalCode === null;
  const running = () => members.filter(alive);
  const endpointsOf = (ms: readonly MemberState[]) => ms.map((m) => `127.0.0.1:${m.clientPort}`).join(",");

  function launch(m: MemberState): void {
    const log = join(dir, `${m.name}.${m.logs.length}.log`);
    m.logs.push(log);
    m.proc = spawn(
      [
        ETCD,
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        `--listen-client-urls=${clientScheme}://127.0.0.1:${m.clientPort}`,
        `--advertise-client-urls=${clientScheme}://127.0.0.1:${m.clientPort}`,
        `--listen-peer-urls=http://127.0.0.1:${m.peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-token=${token}`,
        "--initial-cluster-state=new",
        "--logger=zap",
        "--log-level=warn",
        ...tlsFlags,
        ...(opts.args ?? []),
      ],
      { stdin: "ignore", stdout: "ignore", stderr: Bun.file(log) },
    );
  }

  /** One etcdctl run; throws with its error output when it fails. */
  async function ctlOnce(args: readonly string[], input?: string, endpoints?: string): Promise<string> {
    const proc = spawn(
      [
        ETCDCTL,
        `--endpoints=${endpoints ?? endpointsOf(running())}`,
        "--command-timeout=5s",
        ...ctlTlsFlags,
        ...args,
      ],
      {
        stdin: input === undefined ? "ignore" : new TextEncoder().encode(input),
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, ETCDCTL_API: "3" },
      },
    );
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) throw new Error(`etcdctl ${args.join(" ")} failed (${code}): ${err.trim()}`);
    return out;
  }

  /**
   * etcdctl, retried for up to 30 s while the cluster elects a leader (after a member was killed
   * a loaded machine can take seconds): the tests' own writes must not fail on what etcd reports
   * as transient.
   */
  async function ctl(args: readonly string[], input?: string, endpoints?: string): Promise<string> {
    const end = Date.now() + 30_000;
    for (;;) {
      try {
        return await ctlOnce(args, input, endpoints);
      } catch (err) {
        const msg = (err as Error).message;
        if (Date.now() > end || !TRANSIENT.test(msg)) throw err;
        await Bun.sleep(200);
      }
    }
  }

  async function healthy(timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < end) {
      try {
        await ctlOnce(["get", "--consistency=l", "meshd-test-health"]);
        return;
      } catch (err) {
        last = (err as Error).message;
      }
      await Bun.sleep(100);
    }
    throw new Error(`etcd did not become healthy within ${timeoutMs} ms: ${last}\n${logs()}`);
  }

  const logs = () =>
    members.map((m) =>
      m.logs.map((f) => {
        const text = existsSync(f) ? readFileSync(f, "utf8") : "";
        return `--- ${f}\n${text.slice(-4000)}`;
      }).join("\n")
    ).join("\n");

  async function kill(m: MemberState): Promise<void> {
    const proc = m.proc;
    if (proc === undefined || !alive(m)) return;
    proc.kill("SIGKILL");
    await proc.exited;
  }

  for (const m of members) launch(m);
  const cluster: EtcdCluster = {
    members: members.map((m) => ({
      name: m.name,
      addr: `127.0.0.1:${m.clientPort}`,
      running: () => alive(m),
    })),
    endpoints: endpointsOf(members),
    ...(pki ? { tls: { ca: pki.ca, cert: pki.cert, key: pki.key } } : {}),
    ctl: (args, input) => ctl(args, input),
    async leader() {
      const out = await ctl(["endpoint", "status", "-w", "json"]);
      // Member ids are 64-bit: read them as strings, not as rounded numbers.
      const rows = JSON.parse(out.replace(/:(\d{15,})/g, ':"$1"')) as Array<
        { Endpoint: string; Status: { header: { member_id: number | string }; leader: number | string } }
      >;
      const row = rows.find((r) => String(r.Status.leader) === String(r.Status.header.member_id));
      if (row === undefined) throw new Error(`no member reports itself leader: ${out}`);
      const index = members.findIndex((m) => row.Endpoint.endsWith(`:${m.clientPort}`));
      if (index < 0) throw new Error(`leader ${row.Endpoint} is not a member`);
      return index;
    },
    async revision() {
      const out = await ctl(["get", "--consistency=l", "-w", "json", "meshd-test-revision"]);
      return Number((JSON.parse(out) as { header: { revision: number | string } }).header.revision);
    },
    kill: (i) => kill(members[i]!),
    async restart(i) {
      const m = members[i]!;
      await kill(m);
      launch(m);
    },
    healthy,
    async stop() {
      await Promise.all(members.map(kill));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await healthy();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
