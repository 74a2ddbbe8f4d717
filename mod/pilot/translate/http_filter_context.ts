/**
 * What an HTTP filter configurer is given and returns. Kept apart from http_filters.ts so that
 * the files contributing filters (jwt.ts, authz.ts) and the file assembling the chain depend on
 * this one and not on each other.
 *
 * @module
 */
import type { HttpFilter } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";

/** Where an HTTP connection manager sits. */
export type TrafficDirection = "outbound" | "inbound" | "gateway";

/** What a filter configurer may read. */
export interface HttpFilterContext {
  readonly push: PushContext;
  readonly proxy: Proxy;
  readonly direction: TrafficDirection;
  /** The listener port. */
  readonly port: number;
}

/** Contributes zero or more HTTP filters, in order, for one connection manager. */
export type HttpFilterConfigurer = (ctx: HttpFilterContext) => HttpFilter[];
