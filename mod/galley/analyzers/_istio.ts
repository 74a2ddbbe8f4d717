/**
 * istioctl's analysis messages (Istio's pkg/config/analysis/msg/messages.yaml): each IST code
 * with its name, and, for those meshd has no analyzer for, why. Which meshd analyzers report
 * under a code is not written here but read from the analyzers' `istioCode`, so the two cannot
 * drift apart; docs/analysis-codes.md is generated from both (bun scripts/analysis_codes.ts).
 *
 * @module
 */

/** One istioctl message and, when meshd leaves it to others or out, the reason. */
export interface IstioMessage {
  readonly code: string;
  readonly name: string;
  /** Why meshd has no analyzer reporting this code; absent when one does. */
  readonly left?: string;
}

const K8S =
  "about Kubernetes objects (pods, namespaces, Services, Deployments) that meshd's config has no counterpart for";
const INSTALL = "about installing or upgrading Istio on Kubernetes";
const VALIDATION =
  "reported by validation (`meshd validate`, and `meshd analyze` before analysis) as an error or warning of the resource";

/** Every code of Istio's current messages.yaml, plus the retired IST0113 that meshd maps to. */
export const ISTIO_MESSAGES: readonly IstioMessage[] = [
  { code: "IST0001", name: "InternalError" },
  {
    code: "IST0002",
    name: "Deprecated",
    left: `deprecated fields are ${VALIDATION}`,
  },
  { code: "IST0101", name: "ReferencedResourceNotFound" },
  { code: "IST0102", name: "NamespaceNotInjected", left: K8S },
  { code: "IST0103", name: "PodMissingProxy", left: K8S },
  { code: "IST0106", name: "SchemaValidationError", left: VALIDATION },
  {
    code: "IST0107",
    name: "MisplacedAnnotation",
    left:
      "annotations are Kubernetes metadata; the one meshd reads (istio.io/dry-run) is checked by validation",
  },
  {
    code: "IST0108",
    name: "UnknownAnnotation",
    left: "annotations are Kubernetes metadata; meshd ignores those it does not read",
  },
  { code: "IST0109", name: "ConflictingMeshGatewayVirtualServiceHosts" },
  { code: "IST0110", name: "ConflictingSidecarWorkloadSelectors" },
  { code: "IST0111", name: "MultipleSidecarsWithoutWorkloadSelectors" },
  { code: "IST0112", name: "VirtualServiceDestinationPortSelectorRequired" },
  { code: "IST0113", name: "MTLSPolicyConflict" },
  { code: "IST0116", name: "DeploymentAssociatedToMultipleServices", left: K8S },
  {
    code: "IST0118",
    name: "PortNameIsNotUnderNamingConvention",
    left: "ServiceEntry ports state their protocol; there are no Kubernetes port names to read it from",
  },
  { code: "IST0123", name: "NamespaceMultipleInjectionLabels", left: K8S },
  { code: "IST0125", name: "InvalidAnnotation", left: "annotations are Kubernetes metadata; see IST0107" },
  {
    code: "IST0126",
    name: "UnknownMeshNetworksServiceRegistry",
    left: "meshd's MeshConfig has no meshNetworks with service registries",
  },
  { code: "IST0127", name: "NoMatchingWorkloadsFound" },
  {
    code: "IST0128",
    name: "NoServerCertificateVerificationDestinationLevel",
    left: "meshd verifies the server against the system CA bundle when caCertificates is unset, so " +
      "a rule without caCertificates does verify; only insecureSkipVerify turns verification off, and " +
      "that is an explicit choice",
  },
  {
    code: "IST0129",
    name: "NoServerCertificateVerificationPortLevel",
    left: "as IST0128, for port-level settings",
  },
  { code: "IST0130", name: "VirtualServiceUnreachableRule" },
  { code: "IST0131", name: "VirtualServiceIneffectiveMatch" },
  { code: "IST0132", name: "VirtualServiceHostNotFoundInGateway" },
  { code: "IST0133", name: "SchemaWarning", left: VALIDATION },
  { code: "IST0134", name: "ServiceEntryAddressesRequired" },
  { code: "IST0135", name: "DeprecatedAnnotation", left: "annotations are Kubernetes metadata; see IST0107" },
  { code: "IST0136", name: "AlphaAnnotation", left: "annotations are Kubernetes metadata; see IST0107" },
  { code: "IST0137", name: "DeploymentConflictingPorts", left: K8S },
  { code: "IST0138", name: "GatewayDuplicateCertificate" },
  { code: "IST0139", name: "InvalidWebhook", left: INSTALL },
  { code: "IST0140", name: "IngressRouteRulesNotAffected" },
  { code: "IST0141", name: "InsufficientPermissions", left: INSTALL },
  { code: "IST0142", name: "UnsupportedKubernetesVersion", left: INSTALL },
  { code: "IST0143", name: "LocalhostListener", left: K8S },
  { code: "IST0144", name: "InvalidApplicationUID", left: K8S },
  { code: "IST0145", name: "ConflictingGateways" },
  { code: "IST0146", name: "ImageAutoWithoutInjectionWarning", left: K8S },
  { code: "IST0147", name: "ImageAutoWithoutInjectionError", left: K8S },
  { code: "IST0148", name: "NamespaceInjectionEnabledByDefault", left: K8S },
  { code: "IST0149", name: "JwtClaimBasedRoutingWithoutRequestAuthN" },
  { code: "IST0150", name: "ExternalNameServiceTypeInvalidPortName", left: K8S },
  { code: "IST0151", name: "EnvoyFilterUsesRelativeOperation", left: "meshd does not accept EnvoyFilter" },
  {
    code: "IST0152",
    name: "EnvoyFilterUsesReplaceOperationIncorrectly",
    left: "meshd does not accept EnvoyFilter",
  },
  {
    code: "IST0153",
    name: "EnvoyFilterUsesAddOperationIncorrectly",
    left: "meshd does not accept EnvoyFilter",
  },
  {
    code: "IST0154",
    name: "EnvoyFilterUsesRemoveOperationIncorrectly",
    left: "meshd does not accept EnvoyFilter",
  },
  {
    code: "IST0155",
    name: "EnvoyFilterUsesRelativeOperationWithProxyVersion",
    left: "meshd does not accept EnvoyFilter",
  },
  { code: "IST0156", name: "UnsupportedGatewayAPIVersion", left: "about Kubernetes Gateway API CRDs" },
  {
    code: "IST0157",
    name: "InvalidTelemetryProvider",
    left: "depends on MeshConfig defaultProviders, which meshd's MeshConfig does not have yet",
  },
  { code: "IST0158", name: "PodsIstioProxyImageMismatchInNamespace", left: K8S },
  { code: "IST0159", name: "ConflictingTelemetryWorkloadSelectors" },
  { code: "IST0160", name: "MultipleTelemetriesWithoutWorkloadSelectors" },
  {
    code: "IST0161",
    name: "InvalidGatewayCredential",
    left: "credentials are Kubernetes Secrets in Istio; meshd reads gateway credentials when serving them",
  },
  { code: "IST0162", name: "GatewayPortNotDefinedOnService", left: K8S },
  { code: "IST0163", name: "InvalidExternalControlPlaneConfig", left: INSTALL },
  { code: "IST0164", name: "ExternalControlPlaneAddressIsNotAHostname", left: INSTALL },
  {
    code: "IST0165",
    name: "ReferencedInternalGateway",
    left: "about Gateways generated from Kubernetes Gateway API",
  },
  { code: "IST0166", name: "IneffectiveSelector", left: "about Kubernetes Gateway API Gateways" },
  { code: "IST0167", name: "IneffectivePolicy", left: "about ambient mode, which meshd does not have" },
  { code: "IST0168", name: "UnknownUpgradeCompatibility", left: INSTALL },
  { code: "IST0169", name: "UpdateIncompatibility", left: INSTALL },
  {
    code: "IST0170",
    name: "MultiClusterInconsistentService",
    left: "about Kubernetes Services across clusters",
  },
  { code: "IST0171", name: "NegativeConditionStatus", left: "about Kubernetes status conditions" },
  { code: "IST0172", name: "FutureUnsupportedGatewayAPIVersion", left: "about Kubernetes Gateway API CRDs" },
  { code: "IST0173", name: "DestinationRuleSubsetNotSelectPods" },
  { code: "IST0174", name: "UnknownDestinationRuleHost" },
  {
    code: "IST0175",
    name: "JwksUriFetchUnrestricted",
    left: "about istiod's BLOCKED_CIDRS_IN_JWKS_URIS setting, which meshd does not have",
  },
  { code: "IST0176", name: "GatewayAPICRDVersionBelowMinimum", left: "about Kubernetes Gateway API CRDs" },
  { code: "IST0177", name: "ConflictingServiceEntryProtocol" },
];
