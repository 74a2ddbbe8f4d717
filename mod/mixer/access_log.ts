/**
 * Envoy's access-log service (`envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`):
 * every HTTP and TCP entry becomes an attribute bag (the stream's first message names the node,
 * whose metadata tells its workload) and is reported: report rules, then the service graph.
 * Entries that break the attribute limits are skipped and counted; a message with more than the
 * configured batch of entries ends the stream with RESOURCE_EXHAUSTED.
 *
 * @module
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Node } from "#gen/envoy/config/core/v3/base_pb.ts";
import { AccessLogService } from "#gen/envoy/service/accesslog/v3/als_pb.ts";
import { bagFromHttpLog, bagFromTcpLog, checkBagLimits } from "./attributes.ts";
import type { AttributeBag } from "./client/wire.ts";
import type { MixerCore } from "./core.ts";

/** The AccessLogService over `core`; `maxBatch` bounds the entries of one message. */
export function accessLogService(
  core: MixerCore,
  opts: { maxBatch: number },
): Partial<ServiceImpl<typeof AccessLogService>> {
  return {
    async streamAccessLogs(requests) {
      let node: Node | undefined;
      for await (const msg of requests) {
        if (msg.identifier?.node) node = msg.identifier.node;
        const entries = msg.logEntries;
        if (entries.case === undefined) continue;
        const n = entries.value.logEntry.length;
        if (n > opts.maxBatch) {
          core.refuse("accesslog", `${n} entries in one message; the limit is ${opts.maxBatch}`);
          throw new ConnectError(
            `${n} entries in one message; the limit is ${opts.maxBatch}`,
            Code.ResourceExhausted,
          );
        }
        const bags: AttributeBag[] = [];
        for (const e of entries.value.logEntry) {
          const bag = entries.case === "httpLogs"
            ? bagFromHttpLog(e as Parameters<typeof bagFromHttpLog>[0], node)
            : bagFromTcpLog(e as Parameters<typeof bagFromTcpLog>[0], node);
          try {
            checkBagLimits(bag);
            bags.push(bag);
          } catch (err) {
            core.refuse("accesslog", err instanceof Error ? err.message : String(err));
          }
        }
        await core.report("accesslog", bags);
      }
      return {};
    },
  };
}
