/**
 * Application health checks for auto-registered workloads, run by the agent as Istio's agent
 * runs a WorkloadGroup's `probe`: HTTP GET (2xx–3xx is healthy), TCP connect, exec (exit 0),
 * or gRPC health Check (SERVING). After `initialDelaySeconds` a probe runs at once and then
 * every `periodSeconds` with `timeoutSeconds`; the state turns healthy after
 * `successThreshold` consecutive successes and unhealthy after `failureThreshold` consecutive
 * failures (defaults as Istio's: 1 s timeout, 10 s period, thresholds 1). Only changes are
 * reported.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { spawn } from "node:child_process";
import { connect as netConnect } from "node:net";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "#gen/grpc/health/v1/health_pb.ts";
import type { ReadinessProbe } from "../api/kinds/networking.ts";
import type { Clock, Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";

/** A WorkloadGroup's readiness probe, in Istio's JSON field names (galley's model). */
export type ProbeSpec = ReadinessProbe;

/** The outcome of one probe, or of the checker's state. */
export type ProbeResult = { readonly healthy: true } | { readonly healthy: false; readonly message: string };

/** Runs one probe within `timeoutMs`. Never rejects. */
export type Prober = (timeoutMs: number) => Promise<ProbeResult>;

/** Where probes connect when the probe names no host. */
export const DEFAULT_PROBE_HOST = "127.0.0.1";

const healthy: ProbeResult = { healthy: true };
const unhealthy = (message: string): ProbeResult => ({ healthy: false, message });

function hostFor(host: string | undefined): string {
  const h = host && host !== "" ? host : DEFAULT_PROBE_HOST;
  return h.includes(":") && !h.startsWith("[") ? `[${h}]` : h;
}

function httpProber(p: NonNullable<ProbeSpec["httpGet"]>): Prober {
  const scheme = (p.scheme ?? "HTTP").toLowerCase();
  const path = p.path && p.path !== "" ? (p.path.startsWith("/") ? p.path : `/${p.path}`) : "/";
  const url = `${scheme}://${hostFor(p.host)}:${p.port}${path}`;
  const headers: Record<string, string> = {};
  for (const h of p.httpHeaders ?? []) if (h.name) headers[h.name] = h.value ?? "";
  return async (timeoutMs) => {
    try {
      const res = await fetch(url, {
        headers,
        redirect: "manual",
        signal: AbortSignal.timeout(timeoutMs),
        // Probes, like Kubernetes', do not verify the application's certificate.
        tls: { rejectUnauthorized: false },
      } as RequestInit);
      await res.body?.cancel();
      return res.status >= 200 && res.status < 400
        ? healthy
        : unhealthy(`HTTP GET ${url}: status ${res.status}`);
    } catch (err) {
      return unhealthy(`HTTP GET ${url}: ${errorMessage(err)}`);
    }
  };
}

function tcpProber(p: NonNullable<ProbeSpec["tcpSocket"]>): Prober {
  const host = p.host && p.host !== "" ? p.host : DEFAULT_PROBE_HOST;
  return (timeoutMs) =>
    new Promise((resolve) => {
      const s = netConnect({ host, port: p.port });
      const timer = setTimeout(
        () => done(unhealthy(`TCP ${host}:${p.port}: no connection within ${timeoutMs} ms`)),
        timeoutMs,
      );
      function done(r: ProbeResult) {
        clearTimeout(timer);
        s.destroy();
        resolve(r);
      }
      s.once("connect", () => done(healthy));
      s.once("error", (err) => done(unhealthy(`TCP ${host}:${p.port}: ${err.message}`)));
    });
}

function execProber(p: NonNullable<ProbeSpec["exec"]>): Prober {
  const [cmd, ...args] = p.command;
  return (timeoutMs) =>
    new Promise((resolve) => {
      if (cmd === undefined) return resolve(unhealthy("exec: empty command"));
      const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-500)));
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        finish(unhealthy(`exec ${cmd}: no exit within ${timeoutMs} ms`));
      }, timeoutMs);
      let finished = false;
      function finish(r: ProbeResult) {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        resolve(r);
      }
      child.once("error", (err) => finish(unhealthy(`exec ${cmd}: ${err.message}`)));
      child.once("exit", (code, signal) => {
        if (code === 0) finish(healthy);
        else {
          const why = code !== null ? `exit status ${code}` : `killed by ${signal}`;
          finish(unhealthy(`exec ${cmd}: ${why}${stderr.trim() ? `: ${stderr.trim()}` : ""}`));
        }
      });
    });
}

function grpcProber(p: NonNullable<ProbeSpec["grpc"]>): Prober {
  const url = `http://${hostFor(undefined)}:${p.port ?? 0}`;
  return async (timeoutMs) => {
    if (!p.port) return unhealthy("gRPC probe: no port");
    const manager = new Http2SessionManager(url);
    try {
      const client = createClient(Health, createGrpcTransport({ baseUrl: url, sessionManager: manager }));
      const res = await client.check(create(HealthCheckRequestSchema, { service: p.service ?? "" }), {
        timeoutMs,
      });
      return res.status === ServingStatus.SERVING
        ? healthy
        : unhealthy(`gRPC health ${url} ${JSON.stringify(p.service ?? "")}: ${ServingStatus[res.status]}`);
    } catch (err) {
      return unhealthy(`gRPC health ${url}: ${errorMessage(err)}`);
    } finally {
      manager.abort();
    }
  };
}

/** The prober a probe describes. Throws when it names no method. */
export function createProber(spec: ProbeSpec): Prober {
  if (spec.httpGet) return httpProber(spec.httpGet);
  if (spec.tcpSocket) return tcpProber(spec.tcpSocket);
  if (spec.exec) return execProber(spec.exec);
  if (spec.grpc) return grpcProber(spec.grpc);
  throw new Error("probe: want one of httpGet, tcpSocket, exec, grpc");
}

/** Options for createHealthChecker. */
export interface HealthCheckerOptions {
  readonly probe: ProbeSpec;
  readonly clock: Clock;
  /** Called when the state changes (the first time: when a threshold is first reached). */
  onChange(result: ProbeResult): void;
  /** Replaces the prober the probe describes (tests). */
  readonly prober?: Prober;
}

/** A running health check. */
export interface HealthChecker {
  /** The last reported state; undefined until a threshold was reached. */
  state(): ProbeResult | undefined;
  stop(): void;
}

/** Starts checking at once (after the initial delay). */
export function createHealthChecker(o: HealthCheckerOptions): HealthChecker {
  const p = o.probe;
  const positive = (v: number | undefined, d: number) => (v !== undefined && v > 0 ? v : d);
  const timeoutMs = positive(p.timeoutSeconds, 1) * 1000;
  const periodMs = positive(p.periodSeconds, 10) * 1000;
  const successThreshold = positive(p.successThreshold, 1);
  const failureThreshold = positive(p.failureThreshold, 1);
  const prober = o.prober ?? createProber(p);
  let state: ProbeResult | undefined;
  let successes = 0;
  let failures = 0;
  let running = false;
  let stopped = false;
  let timer: Timer | undefined;

  async function check(): Promise<void> {
    if (running || stopped) return;
    running = true;
    const r = await prober(timeoutMs);
    running = false;
    if (stopped) return;
    if (r.healthy) {
      successes++;
      failures = 0;
      if (successes >= successThreshold && state?.healthy !== true) {
        state = r;
        o.onChange(r);
      }
    } else {
      failures++;
      successes = 0;
      if (failures >= failureThreshold && state?.healthy !== false) {
        state = r;
        o.onChange(r);
      }
    }
  }

  function tick(): void {
    timer = o.clock.setTimer(periodMs, tick);
    void check();
  }
  timer = o.clock.setTimer(Math.max(0, p.initialDelaySeconds ?? 0) * 1000, tick);
  return {
    state: () => state,
    stop() {
      stopped = true;
      timer?.cancel();
    },
  };
}
