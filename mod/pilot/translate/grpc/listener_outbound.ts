/**
 * Client API listeners (gRFC A27): one per target name, an HttpConnectionManager that takes its
 * routes over ADS (RDS) under the same name, with the router filter, preceded by the fault
 * filter when some route of that name injects faults.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { ApiListenerSchema } from "#gen/envoy/config/listener/v3/api_listener_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import {
  HttpConnectionManagerSchema,
  RdsSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import { adsConfigSource } from "../conversion.ts";
import { clientFilters } from "./filters.ts";
import { routeConfiguration, usesFaults } from "./route.ts";
import type { Target } from "./targets.ts";

/** The API listener for one target. */
export function apiListener(push: PushContext, proxy: Proxy, target: Target): Listener {
  const faults = usesFaults(routeConfiguration(push, proxy, target));
  const hcm = create(HttpConnectionManagerSchema, {
    statPrefix: target.name,
    routeSpecifier: {
      case: "rds",
      value: create(RdsSchema, { configSource: adsConfigSource(), routeConfigName: target.name }),
    },
    httpFilters: clientFilters(faults),
  });
  return create(ListenerSchema, {
    name: target.name,
    apiListener: create(ApiListenerSchema, { apiListener: anyPack(HttpConnectionManagerSchema, hcm) }),
  });
}
