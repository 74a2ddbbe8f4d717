/**
 * The standard gRPC health service (grpc.health.v1) on the shared port, reporting the daemon's
 * readiness, so gRPC probes and load balancers can use it.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
  HealthCheckResponseSchema,
} from "#gen/grpc/health/v1/health_pb.ts";
import type { Clock } from "../shared/clock.ts";
import type { GrpcServer } from "./server.ts";

/** Inputs to registerHealthService. */
export interface HealthOptions {
  /** Whether the server as a whole is serving. */
  ready(): boolean;
  clock: Clock;
  /** How often Watch re-reads readiness. */
  pollMs?: number;
}

/** Registers grpc.health.v1.Health. Only the empty service name (the whole server) is known. */
export function registerHealthService(grpc: Pick<GrpcServer, "service">, opts: HealthOptions): void {
  const status = (service: string) => {
    if (service !== "") return Status.SERVICE_UNKNOWN;
    return opts.ready() ? Status.SERVING : Status.NOT_SERVING;
  };
  grpc.service(Health, {
    check(req) {
      const s = status(req.service);
      if (s === Status.SERVICE_UNKNOWN) {
        throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      }
      return create(HealthCheckResponseSchema, { status: s });
    },
    async *watch(req, ctx) {
      let last: Status | undefined;
      while (!ctx.signal.aborted) {
        const s = status(req.service);
        if (s !== last) {
          last = s;
          yield create(HealthCheckResponseSchema, { status: s });
        }
        await new Promise<void>((resolve) => {
          const t = opts.clock.setTimer(opts.pollMs ?? 1000, resolve);
          ctx.signal.addEventListener("abort", () => {
            t.cancel();
            resolve();
          }, { once: true });
        });
      }
    },
  });
}
