/**
 * Istio's rules for the provider of an AuthorizationPolicy with `action: CUSTOM`: which MeshConfig
 * `extensionProviders` entry `provider.name` names and whether it is an external authorizer
 * (`envoyExtAuthzGrpc` or `envoyExtAuthzHttp`), which registry service its `service` and `port`
 * name, and that a workload may use one CUSTOM provider only. Pilot configures ext_authz from
 * these answers and `meshd analyze` warns with the same reasons, so both read them from here.
 *
 * The service lookup: `NAMESPACE/HOST` looks for HOST (a short name qualified in NAMESPACE) in
 * NAMESPACE; a bare host is looked up in every namespace and must be found in exactly one.
 * Wildcard hosts never match. The port must be one of the service's, and the service visible
 * where the policy applies, or the proxy would have no cluster for it.
 *
 * @module
 */

import { normalizeHost, resolveHost } from "./hosts.ts";
import type { ExtAuthzGrpcProvider, ExtAuthzHttpProvider, ExtensionProvider } from "./kinds/mesh_config.ts";

/** The part of a registry service the provider lookup reads. */
export interface ProviderServiceCandidate {
  /** Resolved, lower-case host name. */
  readonly hostname: string;
  readonly namespace: string;
  readonly ports: readonly { readonly number: number }[];
}

/** The result of a lookup: the value, or why there is none (a sentence naming the field's value). */
export type ProviderLookup<T> = { readonly ok: true; readonly value: T } | {
  readonly ok: false;
  readonly reason: string;
};

/** An extension provider that is an external authorizer, with its gRPC or HTTP settings. */
export interface ExtAuthzProvider {
  readonly name: string;
  readonly grpc?: ExtAuthzGrpcProvider;
  readonly http?: ExtAuthzHttpProvider;
  /** The settings of whichever of the two is set: `service` and `port` among them. */
  readonly config: ExtAuthzGrpcProvider | ExtAuthzHttpProvider;
}

/**
 * Finds the external authorizer `name` among MeshConfig `extensionProviders`, or says why it
 * cannot be used: not defined (listing those that are), or a provider of another kind.
 */
export function findExtAuthzProvider(
  providers: readonly ExtensionProvider[],
  name: string,
): ProviderLookup<ExtAuthzProvider> {
  const p = providers.find((x) => x.name === name);
  if (!p) {
    const defined = providers.map((x) => x.name);
    return {
      ok: false,
      reason: `extension provider ${JSON.stringify(name)} is not defined in MeshConfig extensionProviders` +
        (defined.length > 0 ? ` (defined: ${defined.join(", ")})` : " (none are defined)"),
    };
  }
  const config = p.envoyExtAuthzGrpc ?? p.envoyExtAuthzHttp;
  if (!config) {
    const kind = Object.keys(p).find((k) => k !== "name") ?? "unknown";
    return {
      ok: false,
      reason:
        `extension provider ${JSON.stringify(name)} is a ${kind} provider, not an external authorizer ` +
        "(envoyExtAuthzGrpc or envoyExtAuthzHttp)",
    };
  }
  return {
    ok: true,
    value: {
      name,
      config,
      ...(p.envoyExtAuthzGrpc ? { grpc: p.envoyExtAuthzGrpc } : { http: p.envoyExtAuthzHttp! }),
    },
  };
}

/**
 * Finds the service a provider's `service` and `port` name among `services` (see the module
 * notes), or says why there is none. `visible` says whether a found service can be reached where
 * the policy applies (exportTo, Sidecar egress hosts); omit it to skip that check.
 */
export function findProviderService<S extends ProviderServiceCandidate>(
  services: readonly S[],
  service: string,
  port: number,
  visible?: (s: S) => boolean,
): ProviderLookup<S> {
  const slash = service.indexOf("/");
  const namespace = slash < 0 ? undefined : service.slice(0, slash);
  const host = namespace === undefined
    ? normalizeHost(service)
    : resolveHost(service.slice(slash + 1), namespace);
  const candidates = services.filter((s) =>
    s.hostname === host && !s.hostname.startsWith("*") &&
    (namespace === undefined || s.namespace === namespace)
  );
  const namespaces = [...new Set(candidates.map((s) => s.namespace))].sort();
  if (candidates.length === 0) {
    return { ok: false, reason: `service ${JSON.stringify(service)} is not in the registry` };
  }
  if (namespaces.length > 1) {
    return {
      ok: false,
      reason: `service ${JSON.stringify(service)} is defined in namespaces ${namespaces.join(", ")}; ` +
        "write NAMESPACE/HOST",
    };
  }
  const svc = candidates.find((s) => s.ports.some((p) => p.number === port));
  if (!svc) {
    const ports = [...new Set(candidates.flatMap((s) => s.ports.map((p) => p.number)))];
    return {
      ok: false,
      reason: `service ${candidates[0]!.hostname} has no port ${port} (ports: ${ports.join(", ")})`,
    };
  }
  if (visible && !visible(svc)) {
    return {
      ok: false,
      reason: `service ${svc.hostname} is not visible to the proxy (exportTo or Sidecar egress hosts), ` +
        "so it has no cluster there",
    };
  }
  return { ok: true, value: svc };
}

/**
 * Why the CUSTOM policies of one workload cannot use their providers because they name several
 * (Istio allows one CUSTOM provider per workload), or undefined when they name at most one.
 * `providers` are the distinct provider names, sorted.
 */
export function severalCustomProviders(providers: readonly string[]): string | undefined {
  return providers.length > 1
    ? `only one CUSTOM provider can be used per workload, found ${
      providers.map((p) => JSON.stringify(p)).join(", ")
    }`
    : undefined;
}
