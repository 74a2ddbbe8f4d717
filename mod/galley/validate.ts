/**
 * The registry of config kinds meshd understands and the dispatch of validation to each kind's
 * rules. `parse.ts` uses the registry to reject unknown kinds (with a did-you-mean) and
 * unsupported versions; `validateResource` checks a parsed resource's spec.
 *
 * @module
 */

import {
  mixerGroup,
  mixerLegacyKinds,
  mixerVersions,
  validateHandler,
  validateInstance,
  validateRule,
} from "../api/kinds/mixer.ts";
import { meshConfigGroup, meshConfigVersions, validateMeshConfig } from "../api/kinds/mesh_config.ts";
import {
  networkingGroup,
  networkingVersions,
  validateDestinationRule,
  validateGateway,
  validateServiceEntry,
  validateSidecar,
  validateVirtualService,
  validateWorkloadEntry,
  validateWorkloadGroup,
} from "../api/kinds/networking.ts";
import {
  securityGroup,
  securityVersions,
  validateAuthorizationPolicy,
  validatePeerAuthentication,
  validateRequestAuthentication,
} from "../api/kinds/security.ts";
import { telemetryGroup, telemetryVersions, validateTelemetry } from "../api/kinds/telemetry.ts";
import { type Diagnostic, type Resource, resourceLabel } from "../api/resource.ts";

/** A config kind meshd understands. */
export interface KindInfo {
  /** API group, e.g. "networking.istio.io". */
  readonly group: string;
  /** Kind as written in `kind:` (case-sensitive; the Mixer kinds are lower-case). */
  readonly kind: string;
  /** Accepted versions, preferred first. */
  readonly versions: readonly string[];
  /** Checks the spec of a resource of this kind. */
  readonly validate: (r: Resource) => Diagnostic[];
}

const kind = (
  group: string,
  versions: readonly string[],
  name: string,
  validate: (r: Resource) => Diagnostic[],
): KindInfo => ({ group, kind: name, versions, validate });

/** Every kind meshd understands. */
export const knownKinds: readonly KindInfo[] = [
  kind(networkingGroup, networkingVersions, "VirtualService", validateVirtualService),
  kind(networkingGroup, networkingVersions, "DestinationRule", validateDestinationRule),
  kind(networkingGroup, networkingVersions, "Gateway", validateGateway),
  kind(networkingGroup, networkingVersions, "ServiceEntry", validateServiceEntry),
  kind(networkingGroup, networkingVersions, "WorkloadEntry", validateWorkloadEntry),
  kind(networkingGroup, networkingVersions, "WorkloadGroup", validateWorkloadGroup),
  kind(networkingGroup, networkingVersions, "Sidecar", validateSidecar),
  kind(securityGroup, securityVersions, "PeerAuthentication", validatePeerAuthentication),
  kind(securityGroup, securityVersions, "RequestAuthentication", validateRequestAuthentication),
  kind(securityGroup, securityVersions, "AuthorizationPolicy", validateAuthorizationPolicy),
  kind(telemetryGroup, telemetryVersions, "Telemetry", validateTelemetry),
  kind(mixerGroup, mixerVersions, "handler", validateHandler),
  kind(mixerGroup, mixerVersions, "instance", validateInstance),
  kind(mixerGroup, mixerVersions, "rule", validateRule),
  ...mixerLegacyKinds.map((k) => kind(mixerGroup, mixerVersions, k.kind, k.validate)),
  kind(meshConfigGroup, meshConfigVersions, "MeshConfig", validateMeshConfig),
];

const byGroupKind = new Map(knownKinds.map((k) => [`${k.group}/${k.kind}`, k]));

/** The registered kind for a group and kind name, or undefined. */
export function findKind(group: string, kind: string): KindInfo | undefined {
  return byGroupKind.get(`${group}/${kind}`);
}

/**
 * Validates a parsed resource's spec against the rules of its kind. Every diagnostic carries the
 * resource's label, the dotted field path and the field's position. A resource of an unknown kind
 * or version yields a single error.
 */
export function validateResource(r: Resource): Diagnostic[] {
  const info = findKind(r.group, r.kind);
  const apiVersion = r.group === "" ? r.version : `${r.group}/${r.version}`;
  if (!info) {
    return [{
      severity: "error",
      message: `unknown kind ${r.kind} (${apiVersion})`,
      pos: r.source,
      resource: resourceLabel(r),
      field: "kind",
    }];
  }
  if (!info.versions.includes(r.version)) {
    return [{
      severity: "error",
      message: `${apiVersion} is not a supported version of ${r.kind}; ` +
        `use ${info.versions.map((v) => `${info.group}/${v}`).join(", ")}`,
      pos: r.positionOf("apiVersion"),
      resource: resourceLabel(r),
      field: "apiVersion",
    }];
  }
  const resource = r.spec === undefined || r.spec === null ? { ...r, spec: {} } : r;
  return [...metadataDiagnostics(resource), ...info.validate(resource)];
}

/** Istio's annotation that runs an AuthorizationPolicy without enforcing it. */
export const dryRunAnnotation = "istio.io/dry-run";

/** The values Go's strconv.ParseBool accepts, as Istio reads the dry-run annotation. */
const goBools = ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"];

/**
 * Istio's checks of a resource's metadata: `istio.io/dry-run` only on an AuthorizationPolicy
 * whose action is ALLOW or DENY, with a boolean value.
 */
function metadataDiagnostics(r: Resource): Diagnostic[] {
  const value = r.metadata.annotations?.[dryRunAnnotation];
  if (value === undefined) return [];
  const field = `metadata.annotations[${JSON.stringify(dryRunAnnotation)}]`;
  const at = (severity: Diagnostic["severity"], message: string): Diagnostic[] => [{
    severity,
    message,
    pos: r.positionOf(field),
    resource: resourceLabel(r),
    field,
  }];
  if (r.group !== "security.istio.io" || r.kind !== "AuthorizationPolicy") {
    return at(
      "error",
      `the ${dryRunAnnotation} annotation is only allowed on an AuthorizationPolicy; remove it`,
    );
  }
  const spec = r.spec as { readonly action?: unknown };
  const action = spec.action ?? "ALLOW";
  if (action !== "ALLOW" && action !== "DENY") {
    return at(
      "error",
      `the ${dryRunAnnotation} annotation only supports action ALLOW or DENY, not ${String(action)}`,
    );
  }
  if (!goBools.includes(value)) {
    return at("error", `invalid ${dryRunAnnotation} value ${JSON.stringify(value)}: use "true" or "false"`);
  }
  if (goBools.indexOf(value) >= goBools.indexOf("0")) return [];
  return at(
    "warning",
    `the ${dryRunAnnotation} annotation is not supported by meshd; ignored (the policy is enforced)`,
  );
}
