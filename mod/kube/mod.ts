/**
 * Kubernetes: the API client and informer, and leader election over a Lease, for the modules
 * that read from or coordinate through a Kubernetes API server.
 *
 * @module
 */
export {
  createKubeClient,
  inClusterConfig,
  type InClusterOptions,
  type Informer,
  type InformerEvent,
  type InformerStatus,
  isExpired,
  KubeApiError,
  type KubeClient,
  type KubeConnection,
  type KubeObject,
  type KubeRequestOptions,
  listWatch,
  type ListWatchOptions,
  loadKubeconfig,
  objectKey,
} from "./client.ts";
export {
  claimedSpec,
  createLeaseElection,
  type Election,
  type ElectionStatus,
  type LeaseElectionOptions,
  leasePath,
  type LeaseSpec,
  microTime,
  replicaIdentity,
} from "./lease_election.ts";
