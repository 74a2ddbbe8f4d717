/**
 * Semantic rules that apply wherever a message type appears inside a resource (found with
 * {@link walkMessages}): regexes must compile under RE2, SDS secrets must be ones the node agent
 * serves, and proxyless gRPC clients take certificates only from their bootstrap's certificate
 * providers.
 *
 * @module
 */
import type { DescMessage, Message } from "@bufbuild/protobuf";
import type { RegexMatcher } from "#gen/envoy/type/matcher/v3/regex_pb.ts";
import type { CertificateProviderPluginInstance } from "#gen/envoy/extensions/transport_sockets/tls/v3/common_pb.ts";
import type { SdsSecretConfig } from "#gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.ts";
import { DEFAULT_SECRET_NAMES, type Place, type ProxyKind, under, violation } from "./semantic_context.ts";
import { walkMessages } from "./semantic_walk.ts";
import { re2Error } from "../../api/cel.ts";
import type { Violation } from "./violation.ts";

const REGEX_MATCHER = "envoy.type.matcher.v3.RegexMatcher";
const SDS_SECRET = "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig";
const CERT_PROVIDER = "envoy.extensions.transport_sockets.tls.v3.CertificateProviderPluginInstance";

/**
 * The certificate provider instances the node agent's gRPC bootstrap defines
 * (mod/agent/bootstrap.ts: `certificate_providers: { default: ... }`).
 */
const GRPC_CERT_PROVIDERS = new Set(["default"]);

/** Options of {@link checkMessages}. */
export interface MessageRuleOptions {
  readonly proxyKind: ProxyKind;
  readonly secretNames?: ReadonlySet<string>;
}

/** Applies the per-message rules to every message of one resource. */
export function checkMessages(
  schema: DescMessage,
  resource: Message,
  at: Omit<Place, "path">,
  opts: MessageRuleOptions,
): Violation[] {
  const out: Violation[] = [];
  const secrets = opts.secretNames ?? DEFAULT_SECRET_NAMES;
  walkMessages(schema, resource, (typeName, msg, path) => {
    const place = { ...at, path };
    if (typeName === REGEX_MATCHER) {
      // common/common/regex.cc: "Invalid regex 'X': <RE2 error>"; gRPC: "Invalid regex string".
      const regex = (msg as RegexMatcher).regex;
      const err = re2Error(regex);
      if (err !== undefined) {
        out.push(violation("regex.re2", under(place, "regex"), `Invalid regex '${regex}': ${err}`));
      }
    } else if (typeName === SDS_SECRET) {
      const s = msg as SdsSecretConfig;
      if (opts.proxyKind === "proxyless") {
        // gRPC's xds_common_types.cc reads only certificate provider instances.
        out.push(
          violation(
            "grpc.tls.sds",
            place,
            `SDS secret ${s.name}: gRPC clients do not support SDS; use a certificate provider instance`,
          ),
        );
      } else if (!s.sdsConfig) {
        // secret_manager_impl.cc: without sds_config the name must be a bootstrap static secret
        // ("Unknown static secret: X"); meshd's bootstrap defines none.
        out.push(violation("sds.config_source", place, `Unknown static secret: ${s.name}`));
      } else if (!secrets.has(s.name)) {
        // The node agent serves `default`, `ROOTCA` and gateway credentials; a listener or
        // cluster waiting for any other secret never warms (docs: configuration/security/secret).
        out.push(
          violation(
            "sds.secret_name",
            under(place, "name"),
            `SDS secret ${s.name} is not one the node agent serves; the resource would wait for it forever`,
          ),
        );
      }
    } else if (typeName === CERT_PROVIDER && opts.proxyKind === "proxyless") {
      // xds_common_types.cc: "unrecognized certificate provider instance name: X".
      const name = (msg as CertificateProviderPluginInstance).instanceName;
      if (!GRPC_CERT_PROVIDERS.has(name)) {
        out.push(
          violation(
            "grpc.tls.certificate_provider",
            under(place, "instance_name"),
            `unrecognized certificate provider instance name: ${name}`,
          ),
        );
      }
    }
  });
  return out;
}
