/**
 * Cross-resource analysis (`meshd analyze`): checks that look at the accepted resources together
 * (a route naming a host no ServiceEntry declares, a subset no DestinationRule defines, mTLS
 * settings that contradict each other) where validation looks at one resource at a time.
 *
 * Each analyzer is a small pure function of an {@link AnalysisContext}, an indexed read-only view
 * of the resources, and reports diagnostics under one stable MSH code. Where istioctl reports the
 * same finding, the diagnostic also carries Istio's code (`istio: "IST0101"`); MSH numbers are
 * meshd's own and are never read as IST numbers. docs/analysis-codes.md lists every code, the
 * Istio code it maps to, and which of Istio's analyzers meshd leaves out and why; it is generated
 * from {@link ANALYZERS} and the table in analyzers/_istio.ts by scripts/analysis_codes.ts.
 *
 * @module
 */

import type { Diagnostic, Resource } from "../api/resource.ts";
import { type AnalysisDiagnostic, type Analyzer, createAnalysisContext } from "./analyzers/_context.ts";
import {
  authorizationNamespaceNotFound,
  authorizationPrincipal,
} from "./analyzers/authorization_policies.ts";
import { customAuthzProviderUnusable } from "./analyzers/custom_authz_providers.ts";
import { conflictingDestinationRules } from "./analyzers/destination_rule_conflicts.ts";
import {
  destinationHostNotFound,
  destinationPortNotFound,
  destinationPortSelectorRequired,
} from "./analyzers/destination_hosts.ts";
import { destinationSubsetNotFound } from "./analyzers/destination_subsets.ts";
import { conflictingVirtualServiceHosts } from "./analyzers/conflicting_virtual_services.ts";
import { conflictingGateways, gatewayDuplicateCertificate } from "./analyzers/gateway_conflicts.ts";
import { ingressRouteRulesNotAffected } from "./analyzers/ingress_route_rules.ts";
import { jwtClaimRoutingWithoutRequestAuthentication } from "./analyzers/jwt_claim_routes.ts";
import { unknownDestinationRuleHost } from "./analyzers/destination_rule_hosts.ts";
import { conflictingServiceEntryProtocol } from "./analyzers/service_entry_protocols.ts";
import {
  conflictingTelemetrySelectors,
  multipleTelemetriesWithoutSelector,
} from "./analyzers/telemetry_selectors.ts";
import { gatewaySelectorMatchesNoWorkload } from "./analyzers/gateway_workloads.ts";
import { multipleMeshConfigs } from "./analyzers/mesh_configs.ts";
import {
  mixerHandlerNotFound,
  mixerInstanceNotFound,
  mixerTemplateMismatch,
} from "./analyzers/mixer_rules.ts";
import { mtlsPolicyConflict } from "./analyzers/mtls_conflicts.ts";
import { ineffectiveMatches, unreachableRoutes } from "./analyzers/route_reachability.ts";
import { noMatchingWorkloads } from "./analyzers/selector_workloads.ts";
import { serviceEntryAddressesRequired } from "./analyzers/service_entry_addresses.ts";
import { conflictingSidecarSelectors, multipleSidecarsWithoutSelector } from "./analyzers/sidecars.ts";
import { subsetMatchesNoWorkload } from "./analyzers/subset_workloads.ts";
import { gatewayHostNotFound, gatewayNotFound } from "./analyzers/virtual_service_gateways.ts";
import { delegateNotFound, unusedDelegateVirtualService } from "./analyzers/virtual_service_delegates.ts";
import { workloadGroupNotInService, workloadNotInService } from "./analyzers/workload_membership.ts";

export { ISTIO_MESSAGES, type IstioMessage } from "./analyzers/_istio.ts";
export {
  type AnalysisContext,
  type AnalysisDiagnostic,
  type Analyzer,
  createAnalysisContext,
  type MeshService,
  type Workload,
} from "./analyzers/_context.ts";
/** Every analyzer meshd ships, in code order. */
export const ANALYZERS: readonly Analyzer[] = ([
  destinationHostNotFound,
  destinationSubsetNotFound,
  gatewayNotFound,
  destinationPortNotFound,
  conflictingVirtualServiceHosts,
  conflictingSidecarSelectors,
  multipleSidecarsWithoutSelector,
  destinationPortSelectorRequired,
  mtlsPolicyConflict,
  noMatchingWorkloads,
  gatewaySelectorMatchesNoWorkload,
  subsetMatchesNoWorkload,
  unreachableRoutes,
  ineffectiveMatches,
  gatewayHostNotFound,
  serviceEntryAddressesRequired,
  gatewayDuplicateCertificate,
  conflictingGateways,
  jwtClaimRoutingWithoutRequestAuthentication,
  conflictingTelemetrySelectors,
  unknownDestinationRuleHost,
  conflictingServiceEntryProtocol,
  conflictingDestinationRules,
  authorizationNamespaceNotFound,
  authorizationPrincipal,
  mixerHandlerNotFound,
  mixerInstanceNotFound,
  mixerTemplateMismatch,
  multipleMeshConfigs,
  workloadNotInService,
  workloadGroupNotInService,
  multipleTelemetriesWithoutSelector,
  ingressRouteRulesNotAffected,
  unusedDelegateVirtualService,
  delegateNotFound,
  customAuthzProviderUnusable,
] as Analyzer[]).sort((a, b) => (a.code < b.code ? -1 : 1));

/** The code of an analyzer that failed (a bug in meshd), istioctl's InternalError. */
export const INTERNAL_ERROR = {
  code: "MSH0001",
  istioCode: "IST0001",
  name: "InternalError",
  severity: "error",
  description: "An analyzer failed; this is a bug in meshd.",
} as const;

/** Options of {@link analyze}. */
export interface AnalyzeOptions {
  /** The analyzers to run; all of {@link ANALYZERS} by default. */
  readonly analyzers?: readonly Analyzer[];
}

function compareDiagnostics(a: Diagnostic, b: Diagnostic): number {
  const fa = a.pos?.file ?? "\uffff";
  const fb = b.pos?.file ?? "\uffff";
  if (fa !== fb) return fa < fb ? -1 : 1;
  const byPos = (a.pos?.line ?? 0) - (b.pos?.line ?? 0) || (a.pos?.col ?? 0) - (b.pos?.col ?? 0);
  if (byPos !== 0) return byPos;
  const ca = a.code ?? "";
  const cb = b.code ?? "";
  if (ca !== cb) return ca < cb ? -1 : 1;
  return a.message < b.message ? -1 : a.message > b.message ? 1 : 0;
}

/**
 * Runs the analyzers over the accepted resources and returns their findings sorted by file,
 * line and column (then code). An analyzer that throws does not stop the others: its failure is
 * reported as an MSH0001 error.
 */
export function analyze(resources: readonly Resource[], opts: AnalyzeOptions = {}): AnalysisDiagnostic[] {
  const ctx = createAnalysisContext(resources);
  const out: AnalysisDiagnostic[] = [];
  for (const a of opts.analyzers ?? ANALYZERS) {
    try {
      out.push(...a.analyze(ctx));
    } catch (err) {
      out.push({
        severity: INTERNAL_ERROR.severity,
        code: INTERNAL_ERROR.code,
        istio: INTERNAL_ERROR.istioCode,
        message: `analyzer ${a.name} (${a.code}) failed: ${err instanceof Error ? err.message : String(err)}`,
      });
    }
  }
  return out.sort(compareDiagnostics);
}
