/**
 * Builds and runs bench/loadgen/grpc_load.c, the benchmarks' independent gRPC load generator (C on
 * libnghttp2, from Debian's libnghttp2-dev; see scripts/system_packages.txt), so that measured
 * latency is the server's and not a JavaScript client's sharing the same cores.
 */
import { spawn } from "bun";
import { resolve } from "node:path";
import { buildC } from "./build_c.ts";

const SOURCE = resolve(import.meta.dir, "grpc_load.c");

/** Latency percentiles, in microseconds. */
export interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

/** What one run of the load generator measured. */
export interface GrpcLoadResult {
  readonly ok: number;
  readonly failed: number;
  readonly unfinished: number;
  readonly seconds: number;
  readonly callsPerSec: number;
  readonly latencyUs: {
    /** From when each call was due (open loop: includes the generator's own delays). */
    readonly fromDue: Percentiles;
    /** From when each call was written to the connection. */
    readonly fromSent: Percentiles;
  };
  /** How late the generator started calls (open loop). */
  readonly latenessUs: Percentiles;
}

/** Options of {@link runGrpcLoad}. */
export interface GrpcLoadOptions {
  /** host:port of a cleartext HTTP/2 gRPC server. */
  readonly addr: string;
  /** Method path, "/package.Service/Method". */
  readonly path: string;
  /** File of gRPC-framed request messages, back to back; calls cycle through them. */
  readonly bodies: string;
  readonly seconds: number;
  /** Open loop: calls started per second. */
  readonly rate?: number;
  /** Closed loop: calls kept in flight. */
  readonly inflight?: number;
  /** Unmeasured calls first, one at a time. */
  readonly warmup?: number;
}

/** Compiles the load generator once per source version; returns the executable's path. */
export function buildGrpcLoad(): Promise<string> {
  return buildC(SOURCE, ["-lnghttp2"], "needs cc and libnghttp2-dev: scripts/system_deps.sh installs them");
}

/** Runs the load generator once and returns what it measured; throws if any call failed. */
export async function runGrpcLoad(opts: GrpcLoadOptions): Promise<GrpcLoadResult> {
  const exe = await buildGrpcLoad();
  const i = opts.addr.lastIndexOf(":");
  const args = [exe, opts.addr.slice(0, i), opts.addr.slice(i + 1), opts.path, opts.bodies];
  args.push("--seconds", String(opts.seconds), "--warmup", String(opts.warmup ?? 1000));
  if (opts.rate !== undefined) args.push("--rate", String(opts.rate));
  else args.push("--inflight", String(opts.inflight ?? 1));
  const p = spawn(args, { stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([
    p.exited,
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
  ]);
  if (code !== 0) throw new Error(`grpc_load exited with ${code}: ${err.trim()} ${out.trim()}`);
  return JSON.parse(out) as GrpcLoadResult;
}
