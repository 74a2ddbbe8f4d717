/**
 * Rate-limit actions (`rate_limits`) for mixer's quotas. Envoy's rate-limit filter calls the
 * rate-limit service only for routes or virtual hosts that carry actions, so when mixer runs
 * (`push.features.mixer`) the inbound HTTP virtual host of each port a sidecar serves (where
 * the filter is installed, see http_filters.ts) gets one `RateLimit`. Its descriptor carries
 * what mixer's ShouldRateLimit turns into attributes (`bagFromDescriptor` in
 * mod/mixer/attributes.ts):
 *
 * | action | descriptor entry | attribute |
 * | --- | --- | --- |
 * | `generic_key` | `destination.service.host`, `.name`, `.namespace` | the service served on the port |
 * | `generic_key` | `destination.namespace`, `destination.principal` | the proxy's namespace and SPIFFE id |
 * | `generic_key` | `destination.labels.KEY` | one entry per workload label |
 * | `destination_cluster` | `destination_cluster`: `inbound\|PORT\|\|` | `destination.port` |
 * | `request_headers` | `:path`, `:method`, `:authority` keyed `request.path`, `request.method`, `request.host` | the same, and `request.url_path`, `request.query_params` |
 * | `remote_address` | `remote_address` | `source.ip` |
 *
 * The static entries come from the proxy's config key (namespace, labels, service account), its
 * instances and the mesh's trust domain, so proxies sharing a key share the output. Everything
 * is one `RateLimit`, so a request sends one descriptor: mixer charges each descriptor against
 * every quota whose rule matches, and two descriptors would charge a request twice. Headers are
 * `skip_if_absent` and the other actions always produce their entry, so no request goes
 * without a descriptor. `source_cluster` is not used: Envoy fills it with its own service
 * cluster, which on an inbound sidecar is the destination's.
 *
 * @module
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type RateLimit,
  type RateLimit_ActionSchema,
  RateLimitSchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { RATE_LIMIT_REQUEST_HEADERS } from "../../api/mixer/filter_settings.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import type { Endpoint } from "../model/service.ts";
import { spiffeId } from "./tls.ts";

/**
 * Label keys that travel as `destination.labels.KEY` entries: mixer takes descriptor keys of
 * letters, digits, `_`, `.` and `-` only, so keys such as `app.kubernetes.io/name` are left out.
 */
const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

type Action = MessageInitShape<typeof RateLimit_ActionSchema>;

const genericKey = (key: string, value: string): Action => ({
  actionSpecifier: { case: "genericKey", value: { descriptorKey: key, descriptorValue: value } },
});

/** The static attributes of an inbound port, as (attribute name, value) pairs, in order. */
function destinationAttributes(push: PushContext, proxy: Proxy, endpoint: Endpoint): [string, string][] {
  const out: [string, string][] = [
    ["destination.service.host", endpoint.hostname],
    ["destination.service.name", endpoint.hostname.split(".")[0]!],
    ["destination.service.namespace", endpoint.namespace],
    ["destination.namespace", proxy.namespace],
  ];
  if (proxy.serviceAccount) {
    out.push([
      "destination.principal",
      spiffeId(push.mesh.trustDomain, proxy.namespace, proxy.serviceAccount),
    ]);
  }
  for (const key of Object.keys(proxy.labels).sort()) {
    if (LABEL_KEY.test(key)) out.push([`destination.labels.${key}`, proxy.labels[key]!]);
  }
  // Envoy refuses a generic_key with an empty value.
  return out.filter(([, v]) => v !== "");
}

/**
 * The `rate_limits` of the inbound virtual host of one served port: one RateLimit (see the module
 * comment) when mixer runs, none otherwise.
 */
export function inboundRateLimits(push: PushContext, proxy: Proxy, endpoint: Endpoint): RateLimit[] {
  if (!push.features.mixer) return [];
  const actions: Action[] = [
    ...destinationAttributes(push, proxy, endpoint).map(([k, v]) => genericKey(k, v)),
    { actionSpecifier: { case: "destinationCluster", value: {} } },
    ...RATE_LIMIT_REQUEST_HEADERS.map(({ header, attribute }): Action => ({
      actionSpecifier: {
        case: "requestHeaders",
        value: { headerName: header, descriptorKey: attribute, skipIfAbsent: true },
      },
    })),
    { actionSpecifier: { case: "remoteAddress", value: {} } },
  ];
  return [create(RateLimitSchema, { actions })];
}
