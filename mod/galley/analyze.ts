/**
 * Cross-resource analysis (`meshd analyze`): checks that look at the accepted resources together
 * (a route naming a host no ServiceEntry declares, a subset no DestinationRule defines, mTLS
 * settings that contradict each other) where validation looks at one resource at a time.
 *
 * Each analyzer is a small pure function of an {@link AnalysisContext}, an indexed read-only view
 * of the resources, and reports diagnostics under one stable code. The codes follow istioctl's
 * IST numbers where Istio has the same check (MSH0101 is IST0101's "referenced resource not
 * found", MSH0113 is IST0113's mTLS conflict); checks Istio lacks take numbers from 0150 up.
 *
 * | code    | name                                     | severity | finding                                 |
 * | ------- | ---------------------------------------- | -------- | --------------------------------------- |
 * | MSH0001 | InternalError                            | error    | an analyzer failed (a bug in meshd)     |
 * | MSH0101 | DestinationHostNotFound                  | error    | route host declared by no ServiceEntry  |
 * | MSH0102 | DestinationSubsetNotFound                | error    | route subset in no DestinationRule      |
 * | MSH0103 | GatewayNotFound                          | error    | bound Gateway does not exist            |
 * | MSH0104 | DestinationPortNotFound                  | error    | route port not exposed by the service   |
 * | MSH0109 | ConflictingVirtualServiceHosts           | warning  | VirtualServices share host and gateway  |
 * | MSH0110 | ConflictingSidecarWorkloadSelectors      | error    | two Sidecars select one workload        |
 * | MSH0111 | MultipleSidecarsWithoutWorkloadSelectors | error    | several selector-less Sidecars in a ns  |
 * | MSH0112 | DestinationPortSelectorRequired          | error    | multi-port service routed without port  |
 * | MSH0113 | MtlsPolicyConflict                       | error    | TLS mode contradicts PeerAuthentication |
 * | MSH0127 | NoMatchingWorkloads                      | warning  | policy/Sidecar selector selects nothing |
 * | MSH0128 | GatewaySelectorMatchesNoWorkload         | warning  | Gateway selector matches no workload    |
 * | MSH0129 | SubsetMatchesNoWorkload                  | warning  | subset labels select no workload        |
 * | MSH0130 | VirtualServiceUnreachableRule            | warning  | route shadowed by earlier routes        |
 * | MSH0131 | VirtualServiceIneffectiveMatch           | info     | match block repeats an earlier one      |
 * | MSH0132 | VirtualServiceHostNotFoundInGateway      | warning  | host accepted by none of its gateways   |
 * | MSH0134 | ServiceEntryAddressesRequired            | warning  | TCP-family port without addresses       |
 * | MSH0150 | ConflictingDestinationRules              | warning  | several DestinationRules for one host   |
 * | MSH0160 | AuthorizationPolicyNamespaceNotFound     | warning  | source namespace holds no resources     |
 * | MSH0161 | AuthorizationPolicyInvalidPrincipal      | warning  | principal malformed or unknown          |
 * | MSH0170 | MixerHandlerNotFound                     | error    | rule names a missing handler            |
 * | MSH0171 | MixerInstanceNotFound                    | error    | rule names a missing instance           |
 * | MSH0172 | MixerTemplateMismatch                    | error    | template not taken by handler's adapter |
 * | MSH0180 | MultipleMeshConfigs                      | error    | more than one MeshConfig                |
 * | MSH0181 | WorkloadNotInService                     | info     | WorkloadEntry in no ServiceEntry        |
 * | MSH0182 | WorkloadGroupNotInService                | info     | WorkloadGroup in no ServiceEntry        |
 *
 * @module
 */

import type { Diagnostic, Resource } from "../api/resource.ts";
import { type Analyzer, createAnalysisContext } from "./analyzers/_context.ts";
import {
  authorizationNamespaceNotFound,
  authorizationPrincipal,
} from "./analyzers/authorization_policies.ts";
import { conflictingDestinationRules } from "./analyzers/destination_rule_conflicts.ts";
import {
  destinationHostNotFound,
  destinationPortNotFound,
  destinationPortSelectorRequired,
} from "./analyzers/destination_hosts.ts";
import { destinationSubsetNotFound } from "./analyzers/destination_subsets.ts";
import { conflictingVirtualServiceHosts } from "./analyzers/conflicting_virtual_services.ts";
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
import { workloadGroupNotInService, workloadNotInService } from "./analyzers/workload_membership.ts";

export {
  type AnalysisContext,
  type Analyzer,
  createAnalysisContext,
  type MeshService,
  type Workload,
} from "./analyzers/_context.ts";
/** Every analyzer meshd ships, in code order. */
export const ANALYZERS: readonly Analyzer[] = [
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
  conflictingDestinationRules,
  authorizationNamespaceNotFound,
  authorizationPrincipal,
  mixerHandlerNotFound,
  mixerInstanceNotFound,
  mixerTemplateMismatch,
  multipleMeshConfigs,
  workloadNotInService,
  workloadGroupNotInService,
];

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
export function analyze(resources: readonly Resource[], opts: AnalyzeOptions = {}): Diagnostic[] {
  const ctx = createAnalysisContext(resources);
  const out: Diagnostic[] = [];
  for (const a of opts.analyzers ?? ANALYZERS) {
    try {
      out.push(...a.analyze(ctx));
    } catch (err) {
      out.push({
        severity: "error",
        code: "MSH0001",
        message: `analyzer ${a.name} (${a.code}) failed: ${err instanceof Error ? err.message : String(err)}`,
      });
    }
  }
  return out.sort(compareDiagnostics);
}
