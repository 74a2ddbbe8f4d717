/**
 * Envoy acceptance without an Envoy binary: a generated resource set goes through Envoy's field
 * rules (protoc-gen-validate, field_rules.ts) and its semantic checks (semantic.ts). A set with
 * any violation is one Envoy would NACK whole (or a gRPC client would, for proxyless sets).
 *
 * @module
 */
import type { DescMessage, Message } from "@bufbuild/protobuf";
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import type { ConfigSnapshot } from "../../galley/mod.ts";
import type { Proxy } from "../model/proxy.ts";
import { checkFieldRules } from "./field_rules.ts";
import {
  checkSemantics,
  DEFAULT_SECRET_NAMES,
  type EnvoyResourceSet,
  type ProxyKind,
  type SemanticOptions,
} from "./semantic.ts";
import { TYPE } from "./semantic_context.ts";
import type { Violation } from "./violation.ts";

/** Options of {@link checkEnvoySet}: those of the semantic checks. */
export type CheckOptions = SemanticOptions;

function fieldRules<M extends Message>(
  schema: DescMessage,
  msgs: readonly M[],
  typeUrl: string,
  nameOf: (m: M) => string,
): Violation[] {
  return msgs.flatMap((m) => checkFieldRules(schema, m, { typeUrl, resource: nameOf(m) }));
}

/**
 * Every field rule and semantic rule `set` breaks; empty when the proxy would accept it. Field
 * violations come first, per type (listeners, clusters, routes, endpoints), then semantic ones.
 */
export function checkEnvoySet(set: EnvoyResourceSet, opts: CheckOptions): Violation[] {
  return [
    ...fieldRules(ListenerSchema, set.listeners, TYPE.listener, (l) => l.name),
    ...fieldRules(ClusterSchema, set.clusters, TYPE.cluster, (c) => c.name),
    ...fieldRules(RouteConfigurationSchema, set.routes, TYPE.route, (r) => r.name),
    ...fieldRules(ClusterLoadAssignmentSchema, set.endpoints, TYPE.endpoint, (e) => e.clusterName),
    ...checkSemantics(set, opts),
  ];
}

/** The kind of a proxy for the checks: its type, or "proxyless" for gRPC's generator. */
export function proxyKindOf(proxy: Proxy): ProxyKind {
  return proxy.generator === "grpc" ? "proxyless" : proxy.type === "router" ? "router" : "sidecar";
}

const CREDENTIAL_KEYS = new Set(["credentialName", "credentialNames", "caCertCredentialName"]);
const CA_CERT_SUFFIX = "-cacert";

function collectCredentials(value: unknown, out: Set<string>): void {
  if (Array.isArray(value)) {
    for (const v of value) collectCredentials(v, out);
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (CREDENTIAL_KEYS.has(k)) {
        for (const name of [v].flat()) {
          if (typeof name === "string" && name !== "") out.add(name).add(`${name}${CA_CERT_SUFFIX}`);
        }
      } else collectCredentials(v, out);
    }
  }
}

/**
 * The SDS secret names a node agent serves for this config: `default`, `ROOTCA`, and every
 * credential named by a Gateway or DestinationRule (`credentialName(s)`, `caCertCredentialName`)
 * with its `-cacert` companion (mod/agent/sds_server.ts serves NAME and NAME-cacert from its
 * credential directory).
 */
export function configuredSecretNames(config: ConfigSnapshot): Set<string> {
  const out = new Set(DEFAULT_SECRET_NAMES);
  for (const kind of ["Gateway", "DestinationRule"]) {
    for (const r of config.list("networking.istio.io", kind)) collectCredentials(r.spec, out);
  }
  return out;
}
