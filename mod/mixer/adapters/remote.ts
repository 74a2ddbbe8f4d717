/**
 * Out-of-process adapters: a handler with `adapter` and `connection.address` has its instances
 * sent over gRPC to a service implementing `meshd.mixer.v1.Adapter` (HandleCheck for
 * authorization, listentry and checknothing instances, HandleQuota for quota instances,
 * HandleReport for the rest). A call that fails or outlasts `connection.timeout` (default 1 s)
 * answers UNAVAILABLE for checks and quotas; failed reports are logged and counted.
 *
 * @module
 */
import { create, type JsonObject } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Counter } from "prom-client";
import { Adapter, type Instance, InstanceSchema } from "#gen/meshd/mixer/v1/mixer_pb.ts";
import { parseDuration } from "../../shared/duration.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { MetricsRegistry } from "../../shared/metrics.ts";
import { durationToMs } from "../client/wire.ts";
import { type AdapterEnv, Codes, type Handler, type InstanceValue, jsonFriendly } from "./adapter.ts";

const DEFAULT_TIMEOUT_MS = 1_000;

/** Where an out-of-process adapter listens. */
export interface RemoteConnection {
  /** host:port of the adapter's gRPC server (plaintext). */
  readonly address: string;
  /** Per-call deadline, a duration string. */
  readonly timeout?: string;
}

let failures: Counter<string> | undefined;
let failuresRegistry: MetricsRegistry | undefined;

function failureMetric(registry: MetricsRegistry): Counter<string> {
  if (failuresRegistry !== registry || !failures) {
    failuresRegistry = registry;
    failures =
      (registry.getSingleMetric("mixer_remote_adapter_failures_total") as Counter<string> | undefined) ??
        new Counter({
          name: "mixer_remote_adapter_failures_total",
          help: "Calls to out-of-process adapters that failed, by handler and method",
          labelNames: ["handler", "method"],
          registers: [registry],
        });
  }
  return failures;
}

function toInstance(v: InstanceValue): Instance {
  return create(InstanceSchema, {
    name: v.name,
    template: v.template,
    fields: jsonFriendly(v.fields) as JsonObject,
  });
}

/** Builds a handler that forwards to an out-of-process adapter. */
export function createRemoteHandler(connection: RemoteConnection, params: unknown, env: AdapterEnv): Handler {
  const timeoutMs = parseDuration(connection.timeout ?? "") || DEFAULT_TIMEOUT_MS;
  const transport = createGrpcTransport({ baseUrl: `http://${connection.address}` });
  const client: Client<typeof Adapter> = createClient(Adapter, transport);
  const jsonParams =
    (typeof params === "object" && params !== null ? jsonFriendly(params) : {}) as JsonObject;
  const failed = failureMetric(env.metrics);
  let lastLog = 0;
  const fail = (method: string, err: unknown) => {
    failed.inc({ handler: env.handler, method });
    const t = env.clock.now();
    if (t - lastLog > 10_000) {
      lastLog = t;
      env.logger.warn("out-of-process adapter call failed", {
        handler: env.handler,
        address: connection.address,
        method,
        error: errorMessage(err),
      });
    }
    return `adapter ${env.handler} at ${connection.address} failed: ${errorMessage(err)}`;
  };

  return {
    async check(instances) {
      try {
        const res = await client.handleCheck(
          { handler: env.handler, params: jsonParams, instances: instances.map(toInstance) },
          { timeoutMs },
        );
        return {
          status: { code: res.status?.code ?? Codes.OK, message: res.status?.message ?? "" },
          validDurationMs: durationToMs(res.validDuration),
          validUseCount: res.validUseCount,
          output: res.output,
        };
      } catch (err) {
        return {
          status: { code: Codes.UNAVAILABLE, message: fail("HandleCheck", err) },
          validDurationMs: 0,
          validUseCount: 0,
        };
      }
    },
    async quota(instance, args) {
      try {
        const res = await client.handleQuota({
          handler: env.handler,
          params: jsonParams,
          instance: toInstance(instance),
          amount: BigInt(args.amount),
          bestEffort: args.bestEffort,
          deduplicationId: args.deduplicationId ?? "",
        }, { timeoutMs });
        const granted = Math.max(0, Math.min(args.amount, Number(res.grantedAmount)));
        return {
          status: { code: res.status?.code ?? Codes.OK, message: res.status?.message ?? "" },
          granted,
          validDurationMs: durationToMs(res.validDuration),
        };
      } catch (err) {
        return {
          status: { code: Codes.UNAVAILABLE, message: fail("HandleQuota", err) },
          granted: 0,
          validDurationMs: 0,
        };
      }
    },
    async report(instances) {
      try {
        await client.handleReport(
          { handler: env.handler, params: jsonParams, instances: instances.map(toInstance) },
          { timeoutMs },
        );
      } catch (err) {
        fail("HandleReport", err);
      }
    },
    close() {},
  };
}
