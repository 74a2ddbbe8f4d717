/**
 * config.meshd.io/v1alpha1 MeshConfig: meshd's own mesh-wide settings (one per mesh; any
 * metadata.name). A resource's spec is merged over {@link defaultMeshConfig}.
 *
 * @module
 */

import type { Diagnostic, Resource } from "../resource.ts";
import { checkSchema, dns1123LabelProblem, type Infer, isIP, t } from "../schema.ts";
import { hostProblem } from "./networking.ts";

const meshMtlsModeSchema = t.enum(["STRICT", "PERMISSIVE", "DISABLE"]);

/** Mesh-wide default for peer authentication. */
export type MeshMtlsMode = Infer<typeof meshMtlsModeSchema>;

const meshConfigSchema = t.object({
  /** SPIFFE trust domain of workload identities. */
  trustDomain: t.string({
    check: (v, path, report) => {
      const domain = v.endsWith(".") ? v.slice(0, -1) : v;
      if (domain === "" || domain.includes("*") || domain !== domain.toLowerCase() || hostProblem(domain)) {
        report.error(
          path,
          `trust domain ${JSON.stringify(v)} must be a lower-case DNS name such as "cluster.local"`,
        );
      }
    },
  }),
  /** Namespace whose config applies mesh-wide. */
  rootNamespace: t.string({
    check: (v, path, report) => {
      const problem = dns1123LabelProblem(v);
      if (problem) report.error(path, problem);
    },
  }),
  /** mTLS mode where no PeerAuthentication says otherwise. */
  defaultMtlsMode: meshMtlsModeSchema,
  /** What sidecars do with traffic to hosts not in the registry. */
  outboundTrafficPolicy: t.object({ mode: t.enum(["ALLOW_ANY", "REGISTRY_ONLY"]) }),
  /** Use mTLS automatically towards workloads that have a sidecar. */
  enableAutoMtls: t.bool(),
  /** Connect timeout for upstream connections, a duration string. */
  connectTimeout: t.duration({ min: "1ms", max: "1h" }),
  /** Mixer behaviour: allow requests when policy checks cannot be made. */
  mixer: t.object({ failOpen: t.bool() }),
  /** Envoy access log path ("" disables, "/dev/stdout" logs to stdout). */
  accessLogFile: t.string({
    check: (v, path, report) => {
      if (v !== "" && !v.startsWith("/")) {
        report.error(path, `accessLogFile ${JSON.stringify(v)} must be an absolute path (e.g. /dev/stdout)`);
      }
    },
  }),
  /** Defaults for proxies; an empty discoveryAddress leaves it to the agent's flags. */
  defaultConfig: t.object({
    discoveryAddress: t.string({
      check: (v, path, report) => {
        const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(v);
        const port = m ? Number(m[3]) : NaN;
        const host = m ? (m[1] ?? m[2]!) : "";
        if (!m || !(port >= 1 && port <= 65535) || (!isIP(host) && hostProblem(host))) {
          report.error(
            path,
            `discoveryAddress ${JSON.stringify(v)} must be host:port, e.g. "meshd.example.internal:15012"`,
          );
        }
      },
    }),
  }),
});

/** The spec of a MeshConfig resource as written: every field optional. */
export type MeshConfigSpec = Infer<typeof meshConfigSchema>;

/** `T` with every field, at every depth, present. */
type Complete<T> = { readonly [K in keyof T]-?: Complete<NonNullable<T[K]>> };

/** The effective mesh settings: every field of {@link MeshConfigSpec} resolved. */
export type MeshConfig = Complete<MeshConfigSpec>;

/** The settings in force when no MeshConfig resource exists. */
export const defaultMeshConfig: MeshConfig = {
  trustDomain: "cluster.local",
  rootNamespace: "istio-system",
  defaultMtlsMode: "PERMISSIVE",
  outboundTrafficPolicy: { mode: "ALLOW_ANY" },
  enableAutoMtls: true,
  connectTimeout: "10s",
  mixer: { failOpen: true },
  accessLogFile: "",
  defaultConfig: { discoveryAddress: "" },
};

/**
 * Merges a MeshConfig spec, or a validated MeshConfig resource, over `base` (default
 * {@link defaultMeshConfig}), field by field.
 */
export function mergeMeshConfig(
  source: MeshConfigSpec | Resource | undefined,
  base: MeshConfig = defaultMeshConfig,
): MeshConfig {
  const spec: MeshConfigSpec = source === undefined
    ? {}
    : isResource(source)
    ? (source.spec ?? {}) as MeshConfigSpec
    : source;
  return {
    trustDomain: spec.trustDomain ?? base.trustDomain,
    rootNamespace: spec.rootNamespace ?? base.rootNamespace,
    defaultMtlsMode: spec.defaultMtlsMode ?? base.defaultMtlsMode,
    outboundTrafficPolicy: { mode: spec.outboundTrafficPolicy?.mode ?? base.outboundTrafficPolicy.mode },
    enableAutoMtls: spec.enableAutoMtls ?? base.enableAutoMtls,
    connectTimeout: spec.connectTimeout ?? base.connectTimeout,
    mixer: { failOpen: spec.mixer?.failOpen ?? base.mixer.failOpen },
    accessLogFile: spec.accessLogFile ?? base.accessLogFile,
    defaultConfig: {
      discoveryAddress: spec.defaultConfig?.discoveryAddress ?? base.defaultConfig.discoveryAddress,
    },
  };
}

function isResource(v: MeshConfigSpec | Resource): v is Resource {
  return "kind" in v && "metadata" in v;
}

/** The API group of MeshConfig. */
export const meshConfigGroup = "config.meshd.io";

/** Versions of config.meshd.io meshd accepts. */
export const meshConfigVersions: readonly string[] = ["v1alpha1"];

/** Validates a MeshConfig resource. */
export function validateMeshConfig(r: Resource): Diagnostic[] {
  return checkSchema(r, meshConfigSchema);
}
