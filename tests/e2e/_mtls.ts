/**
 * Helpers of tests/e2e/security_mtls.test.ts (the starting mesh is shared with security_rotation),
 * and the two gRPC programs it runs as their own processes (one xDS client per process, each with
 * its own bootstrap in GRPC_XDS_BOOTSTRAP):
 *
 * - `bun _mtls.ts server ADDR NAME`: an xDS-enabled grpc-js server (`XdsServer` with
 *   `XdsServerCredentials`) of the Echo service on ADDR. It prints `{"serving":true,...}` once
 *   pilot's listener is applied, then a JSON line per serving state change, until killed.
 * - `bun _mtls.ts client TARGET N [plaintext]`: makes N calls to TARGET, with
 *   `XdsChannelCredentials` (falling back to insecure) through xDS, or with plain insecure
 *   credentials straight to TARGET; prints one JSON summary line and exits.
 */
import * as grpc from "@grpc/grpc-js";
import * as xds from "@grpc/grpc-js-xds";
import { spawn, type Subprocess } from "bun";
import { loadEcho } from "./_grpc_backend.ts";

const ECHO = () =>
  (loadEcho() as unknown as { meshd: { test: { Echo: grpc.ServiceClientConstructor } } }).meshd.test.Echo;

/**
 * The mesh both security e2e tests start from: service echo.`ns` (gRPC on `port`) with one workload
 * on 127.0.0.1 running as service account echo, STRICT mTLS in `ns`, and ISTIO_MUTUAL towards echo.
 */
export function strictEchoMesh(ns: string, port: number): string {
  const host = `echo.${ns}.svc.cluster.local`;
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: echo
  namespace: ${ns}
spec:
  hosts: [${host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: ${port}
    name: grpc
    protocol: GRPC
  workloadSelector:
    labels:
      app: echo
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: echo-1
  namespace: ${ns}
spec:
  address: 127.0.0.1
  labels:
    app: echo
  serviceAccount: echo
  ports:
    grpc: ${port}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: ${ns}
spec:
  mtls:
    mode: STRICT
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo
  namespace: ${ns}
spec:
  host: ${host}
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
`;
}

/** What the client program prints. */
export interface CallResult {
  total: number;
  ok: number;
  byBackend: Record<string, number>;
  errors: Record<string, number>;
  details: Record<string, string>;
}

function runServer(addr: string, name: string): void {
  xds.register();
  const server = new xds.XdsServer();
  server.addService(ECHO().service, {
    Call(call: grpc.ServerUnaryCall<{ message: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      cb(null, { backend: name, message: call.request.message });
    },
  });
  // XdsServer calls back once pilot's server listener is applied and the port serves.
  server.bindAsync(
    addr,
    new xds.XdsServerCredentials(grpc.ServerCredentials.createInsecure()),
    (err, port) => {
      process.stdout.write(
        JSON.stringify({ serving: !err, port, error: err ? String(err) : undefined }) + "\n",
      );
    },
  );
  // Later serving state changes (the listener registers only once the port is bound).
  server.addServingStateListener(addr, (s) => {
    process.stdout.write(JSON.stringify({ serving: s.code === grpc.status.OK, details: s.details }) + "\n");
  });
  process.on("SIGTERM", () => {
    server.forceShutdown();
    process.exit(0);
  });
}

async function runClient(target: string, n: number, plaintext: boolean): Promise<void> {
  xds.register();
  const Echo = ECHO();
  const creds = plaintext
    ? grpc.credentials.createInsecure()
    : new xds.XdsChannelCredentials(grpc.credentials.createInsecure());
  const client = new Echo(target, creds) as unknown as grpc.Client & {
    Call(req: unknown, md: grpc.Metadata, o: grpc.CallOptions, cb: grpc.requestCallback<unknown>): void;
  };
  const r: CallResult = { total: 0, ok: 0, byBackend: {}, errors: {}, details: {} };
  for (let i = 0; i < n; i++) {
    await new Promise<void>((done) =>
      client.Call(
        { message: `call ${i}` },
        new grpc.Metadata(),
        { deadline: Date.now() + 5000 },
        (err, reply) => {
          r.total++;
          if (err) {
            const e = err as grpc.ServiceError;
            const code = grpc.status[e.code] ?? String(e.code);
            r.errors[code] = (r.errors[code] ?? 0) + 1;
            r.details[code] ??= e.details;
          } else {
            r.ok++;
            const b = (reply as { backend: string }).backend;
            r.byBackend[b] = (r.byBackend[b] ?? 0) + 1;
          }
          done();
        },
      )
    );
  }
  client.close();
  process.stdout.write(JSON.stringify(r) + "\n");
  process.exit(0);
}

if (import.meta.main) {
  const [mode, a, b, c] = process.argv.slice(2);
  if (mode === "server") runServer(a!, b!);
  else if (mode === "client") await runClient(a!, Number(b), c === "plaintext");
  else {
    process.stderr.write("usage: _mtls.ts server ADDR NAME | client TARGET N [plaintext]\n");
    process.exit(2);
  }
}

/** A running server program. */
export interface MtlsServer {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Every JSON line printed so far. */
  readonly events: Array<Record<string, unknown>>;
  stderr(): string;
  stop(): Promise<void>;
}

async function collect(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += dec.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  if (buf) onLine(buf);
}

/** Starts the server program on `addr` with the bootstrap file `bootstrap`. */
export function startMtlsServer(
  addr: string,
  name: string,
  bootstrap: string,
  env: Record<string, string> = {},
): MtlsServer {
  const penv: Record<string, string | undefined> = { ...process.env, GRPC_XDS_BOOTSTRAP: bootstrap, ...env };
  delete penv.GRPC_XDS_BOOTSTRAP_CONFIG;
  const proc = spawn([process.execPath, import.meta.path, "server", addr, name], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: penv,
  });
  const events: Array<Record<string, unknown>> = [];
  let err = "";
  collect(proc.stdout, (l) => {
    try {
      events.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      err += `stdout: ${l}\n`;
    }
  });
  collect(proc.stderr, (l) => {
    err = (err + l + "\n").slice(-50_000);
  });
  return {
    proc,
    events,
    stderr: () => err,
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 1000);
      await proc.exited;
      clearTimeout(t);
    },
  };
}

/**
 * Runs the client program once (bounded by `timeoutMs`): `n` calls to `target` over xDS with
 * the bootstrap file `bootstrap`, or plaintext without xDS when `bootstrap` is undefined.
 */
export async function runMtlsClient(
  target: string,
  n: number,
  bootstrap: string | undefined,
  timeoutMs = 20_000,
): Promise<CallResult> {
  const args = [process.execPath, import.meta.path, "client", target, String(n)];
  if (bootstrap === undefined) args.push("plaintext");
  const env: Record<string, string | undefined> = { ...process.env };
  delete env.GRPC_XDS_BOOTSTRAP_CONFIG;
  if (bootstrap !== undefined) env.GRPC_XDS_BOOTSTRAP = bootstrap;
  else delete env.GRPC_XDS_BOOTSTRAP;
  const proc = spawn(args, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  const line = out.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as CallResult;
  } catch {
    throw new Error(
      `client ${target} exited ${code} without a result:\nstdout: ${out}\nstderr: ${err.slice(-5000)}`,
    );
  }
}
