/**
 * Helpers for end-to-end tests of pilot with real proxyless gRPC clients: xDS bootstraps,
 * client processes (grpc-js-xds under Bun, python3-grpcio) driven over stdin, mesh config
 * written as YAML, and pilot's /debug/syncz.
 */
import { spawn, type Subprocess } from "bun";
import { createServer } from "node:net";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

/** The service the tests route to. */
export const ECHO_HOST = "echo.test.svc.cluster.local";
/** Its port. */
export const ECHO_PORT = 9000;
/** What clients dial. */
export const ECHO_TARGET = `xds:///${ECHO_HOST}:${ECHO_PORT}`;
/** The client's node id (Istio's form; namespace "test"). */
export const CLIENT_NODE = "sidecar~127.0.0.1~client.test~test.svc.cluster.local";

/** One batch of calls a client process makes. */
export interface CallsCommand {
  readonly target: string;
  readonly n: number;
  /** Calls in flight at once (default 1). */
  readonly concurrency?: number;
  readonly metadata?: Readonly<Record<string, string>>;
  /** Per-call deadline (default 5000). */
  readonly deadlineMs?: number;
}

/** What a batch of calls gave. */
export interface CallsSummary {
  total: number;
  ok: number;
  /** Successful calls by the name of the backend that answered. */
  byBackend: Record<string, number>;
  /** Failed calls by status code name (e.g. "UNAVAILABLE"). */
  errors: Record<string, number>;
  /** One error message per failing status code. */
  details: Record<string, string>;
  /** Latency of every call, in call completion order. */
  latenciesMs: number[];
}

/** A gRPC xDS bootstrap (gRFC A27) for a client of meshd at `xdsAddr`. */
export function bootstrap(xdsAddr: string, nodeId = CLIENT_NODE): string {
  return JSON.stringify({
    xds_servers: [{
      server_uri: xdsAddr,
      channel_creds: [{ type: "insecure" }],
      server_features: ["xds_v3"],
    }],
    node: { id: nodeId, metadata: { GENERATOR: "grpc", NAMESPACE: "test" }, locality: {} },
    server_listener_resource_name_template: "xds.istio.io/grpc/lds/inbound/%s",
  });
}

/** Which real client a process runs. */
export type ClientKind = "grpc-js" | "python";

/** A running client process. */
export interface XdsClientProcess {
  readonly kind: ClientKind;
  readonly proc: Subprocess<"pipe", "pipe", "pipe">;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Makes a batch of calls (`target` defaults to the echo service). */
  calls(cmd: Omit<CallsCommand, "target"> & { target?: string }, timeoutMs?: number): Promise<CallsSummary>;
  /** Asks the process to exit, and kills it if it does not within a second. */
  close(): Promise<void>;
}

const ROOT = resolve(import.meta.dir, "../..");

/**
 * Starts a client process of `kind` bootstrapped at meshd's gRPC address. The bootstrap is
 * passed in GRPC_XDS_BOOTSTRAP_CONFIG (grpc-js) or a file named by GRPC_XDS_BOOTSTRAP (python).
 */
export function startClient(
  kind: ClientKind,
  xdsAddr: string,
  opts: { dir: string; nodeId?: string; env?: Record<string, string> },
): XdsClientProcess {
  const boot = bootstrap(xdsAddr, opts.nodeId);
  const bootFile = join(opts.dir, `bootstrap-${kind}-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(bootFile, boot);
  const cmd = kind === "grpc-js"
    ? [process.execPath, resolve(import.meta.dir, "_grpc_client.ts")]
    : ["/usr/bin/python3", resolve(import.meta.dir, "py/xds_client.py")];
  const proc = spawn(cmd, {
    cwd: ROOT,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: {
      ...process.env,
      GRPC_XDS_BOOTSTRAP_CONFIG: boot,
      GRPC_XDS_BOOTSTRAP: bootFile,
      // C-core makes I/O progress on a channel only while the application polls it (a call is
      // in flight) or when the backup poller runs, every 5 s by default: an idle python client
      // would pick pushed config up 5-10 s late. Tests wait for pushes while idle, so poll often.
      ...(kind === "python" ? { GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS: "50" } : {}),
      ...opts.env,
    },
  });
  let err = "";
  (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr) err = (err + dec.decode(chunk)).slice(-200_000);
  })();
  const waiting = new Map<number, (line: Record<string, unknown>) => void>();
  (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stdout) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const rec = JSON.parse(line) as Record<string, unknown>;
          waiting.get(rec.id as number)?.(rec);
        } catch {
          err += `stdout: ${line}\n`;
        }
      }
    }
  })();
  let seq = 0;
  return {
    kind,
    proc,
    stderr: () => err,
    async calls(c, timeoutMs = 30_000) {
      const id = ++seq;
      const reply = new Promise<Record<string, unknown>>((res) => waiting.set(id, res));
      proc.stdin.write(JSON.stringify({ id, op: "calls", target: ECHO_TARGET, ...c }) + "\n");
      proc.stdin.flush();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, rej) => {
        timer = setTimeout(
          () => rej(new Error(`${kind} client: no answer within ${timeoutMs} ms; stderr:\n${err}`)),
          timeoutMs,
        );
      });
      try {
        const r = await Promise.race([
          reply,
          timeout,
          proc.exited.then((code) => {
            throw new Error(`${kind} client exited with ${code}; stderr:\n${err}`);
          }),
        ]);
        if (typeof r.error === "string") throw new Error(`${kind} client: ${r.error}`);
        return r as unknown as CallsSummary;
      } finally {
        clearTimeout(timer);
        waiting.delete(id);
      }
    },
    async close() {
      if (proc.exitCode !== null) return;
      try {
        proc.stdin.write(JSON.stringify({ id: 0, op: "close" }) + "\n");
        proc.stdin.end();
      } catch {
        // already gone
      }
      const t = setTimeout(() => proc.kill("SIGKILL"), 1000);
      await proc.exited;
      clearTimeout(t);
    },
  };
}

/** A TCP port that was free a moment ago (bound to 0 on 127.0.0.1, then released). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

/** One backend as config sees it. */
export interface BackendRef {
  readonly name: string;
  readonly port: number;
  readonly version: string;
}

/** The echo ServiceEntry plus one WorkloadEntry per backend, as YAML. */
export function meshYaml(backends: readonly BackendRef[]): string {
  const se = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: echo
  namespace: test
spec:
  hosts: [${ECHO_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: ${ECHO_PORT}
    name: grpc
    protocol: GRPC
  workloadSelector:
    labels:
      app: echo
`;
  const wes = backends.map((b) =>
    `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: ${b.name}
  namespace: test
spec:
  address: 127.0.0.1
  ports:
    grpc: ${b.port}
  labels:
    app: echo
    version: ${b.version}
    backend: ${b.name}
`
  );
  return [se, ...wes].join("---\n");
}

/** A DestinationRule for the echo service with subsets v1 and v2 and an optional traffic policy (YAML, indented for `spec`). */
export function destinationRuleYaml(trafficPolicy = ""): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo
  namespace: test
spec:
  host: ${ECHO_HOST}
${trafficPolicy ? `  trafficPolicy:\n${indent(trafficPolicy, 4)}\n` : ""}  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
`;
}

/** A VirtualService for the echo service with the given `http` routes (YAML list, unindented). */
export function virtualServiceYaml(http: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: echo
  namespace: test
spec:
  hosts: [${ECHO_HOST}]
  http:
${indent(http, 2)}
`;
}

function indent(text: string, n: number): string {
  const pad = " ".repeat(n);
  return text.trim().split("\n").map((l) => pad + l).join("\n");
}

/** One type of one proxy in /debug/syncz. */
export interface TypeSync {
  state: string;
  sentVersion?: string;
  ackedVersion?: string;
  nackedVersion?: string;
  nackMessage?: string;
  resources: number;
}

/** One proxy in /debug/syncz. */
export interface ProxySync {
  proxy: string;
  connection: string;
  mode: string;
  connectedAt: string;
  types: Partial<Record<"CDS" | "LDS" | "EDS" | "RDS", TypeSync>>;
  /** Proxyless gRPC: how many settings its config cannot express. */
  grpcUnsupported?: number;
}

/** Reads pilot's /debug/syncz. */
export async function syncz(adminAddr: string): Promise<ProxySync[]> {
  const res = await fetch(`http://${adminAddr}/debug/syncz`);
  if (!res.ok) throw new Error(`/debug/syncz: HTTP ${res.status}: ${await res.text()}`);
  return (await res.json()) as ProxySync[];
}

/** The fraction of successful calls `backend` answered. */
export function share(s: CallsSummary, backend: string): number {
  return s.ok === 0 ? 0 : (s.byBackend[backend] ?? 0) / s.ok;
}

/** A node id for a client named `name` in namespace "test". */
export function nodeId(name: string): string {
  return `sidecar~127.0.0.1~${name}.test~test.svc.cluster.local`;
}

/** True when every pilot type the proxy subscribed to is ACKed at the version last sent. */
export function synced(p: ProxySync | undefined): boolean {
  if (!p) return false;
  const types = Object.values(p.types);
  return types.length >= 4 && types.every((t) => t.state === "SYNCED");
}

/** The ACKed versions of a proxy, as one comparable string. */
export function ackedVersions(p: ProxySync | undefined): string {
  if (!p) return "";
  return (["LDS", "RDS", "CDS", "EDS"] as const).map((k) => `${k}=${p.types[k]?.ackedVersion ?? ""}`).join(
    " ",
  );
}

/**
 * Waits until pilot has pushed something new to the proxy `node` (its ACKed versions differ
 * from `before`) and the proxy ACKed every type. Throws, with the last syncz, when that does
 * not happen within `timeoutMs`.
 */
export async function waitForPush(
  adminAddr: string,
  node: string,
  before: string,
  timeoutMs = 10_000,
): Promise<ProxySync> {
  const end = Date.now() + timeoutMs;
  let last: ProxySync | undefined;
  for (;;) {
    last = (await syncz(adminAddr)).find((p) => p.proxy === node);
    if (synced(last) && ackedVersions(last) !== before) return last!;
    if (Date.now() > end) {
      throw new Error(
        `no new config ACKed by ${node} within ${timeoutMs} ms; syncz: ${JSON.stringify(last)}`,
      );
    }
    await Bun.sleep(25);
  }
}

/** Waits until the proxy `node` is connected and has ACKed every type. */
export async function waitForSync(adminAddr: string, node: string, timeoutMs = 10_000): Promise<ProxySync> {
  return await waitForPush(adminAddr, node, "\u0000", timeoutMs);
}
