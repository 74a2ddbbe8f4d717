/**
 * A proxyless gRPC client driven over stdin, run as its own process (`bun _grpc_client.ts`) so
 * its xDS state (one XdsClient per bootstrap, per process) is its own. It reads its bootstrap
 * from GRPC_XDS_BOOTSTRAP_CONFIG (or GRPC_XDS_BOOTSTRAP), keeps one channel per target for its
 * whole life, and answers each JSON command line on stdin with one JSON line on stdout:
 *
 *   {"id":1,"op":"calls","target":"xds:///echo.test.svc.cluster.local:9000","n":100,
 *    "concurrency":10,"metadata":{"x-user":"v2"},"deadlineMs":5000}
 *   -> {"id":1,"total":100,"ok":98,"byBackend":{"v1":90,"v2":8},"errors":{"UNAVAILABLE":2},
 *       "details":{"UNAVAILABLE":"..."},"latenciesMs":[...]}
 *
 * The same protocol is spoken by tests/e2e/py/xds_client.py (python3-grpcio).
 */
import * as grpc from "@grpc/grpc-js";
import * as xds from "@grpc/grpc-js-xds";
import { createInterface } from "node:readline";
import { loadEcho } from "./_grpc_backend.ts";
import type { CallsCommand, CallsSummary } from "./_grpc.ts";

xds.register();

const Echo =
  (loadEcho() as unknown as { meshd: { test: { Echo: grpc.ServiceClientConstructor } } }).meshd.test.Echo;
const clients = new Map<string, grpc.Client>();

function clientFor(target: string): grpc.Client {
  let c = clients.get(target);
  if (!c) {
    c = new Echo(target, grpc.credentials.createInsecure());
    clients.set(target, c);
  }
  return c;
}

type Call = (
  req: unknown,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: grpc.requestCallback<unknown>,
) => void;

async function calls(cmd: CallsCommand): Promise<CallsSummary> {
  const client = clientFor(cmd.target) as unknown as { Call: Call };
  const summary: CallsSummary = { total: 0, ok: 0, byBackend: {}, errors: {}, details: {}, latenciesMs: [] };
  let next = 0;
  const one = () =>
    new Promise<void>((done) => {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(cmd.metadata ?? {})) md.set(k, v);
      const started = performance.now();
      client.Call.call(
        client,
        { message: `call ${next}` },
        md,
        { deadline: Date.now() + (cmd.deadlineMs ?? 5000) },
        (err, reply) => {
          summary.total++;
          summary.latenciesMs.push(Math.round(performance.now() - started));
          if (err) {
            const code = grpc.status[(err as grpc.ServiceError).code] ??
              String((err as grpc.ServiceError).code);
            summary.errors[code] = (summary.errors[code] ?? 0) + 1;
            summary.details[code] ??= (err as grpc.ServiceError).details;
          } else {
            summary.ok++;
            const backend = (reply as { backend: string }).backend;
            summary.byBackend[backend] = (summary.byBackend[backend] ?? 0) + 1;
          }
          done();
        },
      );
    });
  const worker = async () => {
    while (next < cmd.n) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(cmd.concurrency ?? 1, cmd.n)) }, worker));
  return summary;
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() === "") continue;
  const cmd = JSON.parse(line) as CallsCommand & { id: number; op: string };
  if (cmd.op === "close") break;
  try {
    const s = await calls(cmd);
    process.stdout.write(JSON.stringify({ id: cmd.id, ...s }) + "\n");
  } catch (err) {
    process.stdout.write(JSON.stringify({ id: cmd.id, error: String(err) }) + "\n");
  }
}
for (const c of clients.values()) c.close();
process.exit(0);
