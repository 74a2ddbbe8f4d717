/**
 * One `--config-source kubernetes...` value put together: the connection (kubeconfig or the
 * pod's service account), the source of Istio's custom resources, the Lease election that picks
 * the one replica writing status back, and the status writer, started and stopped as one
 * config source.
 *
 * Every replica reads config; only the holder of the Lease `meshd-galley-status` (in the
 * `lease-namespace`, else the connection's namespace, else `default`) writes status, so replicas
 * do not fight over it. A single replica simply holds the Lease.
 *
 * @module
 */
import type { Clock } from "../shared/clock.ts";
import type { Logger } from "../shared/logger.ts";
import type { SourceSink } from "../runtime/config_source.ts";
import {
  createKubeClient,
  createLeaseElection,
  type Election,
  inClusterConfig,
  type KubeClient,
  type KubeConnection,
  loadKubeconfig,
} from "../kube/mod.ts";
import {
  createKubeSource,
  type KubeSource,
  type KubeSourceTarget,
  parseKubeSourceUrl,
} from "./kube_source.ts";
import { type KubeStatusWriter, startKubeStatusWriter } from "./kube_status_writer.ts";
import type { ConfigStore } from "./store.ts";

/** The Lease that decides which replica writes config status. */
export const STATUS_LEASE = "meshd-galley-status";

/** Options for createKubeConfig. */
export interface KubeConfigOptions {
  /** The `--config-source` value. */
  readonly url: string;
  readonly store: ConfigStore;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly maxBytes?: number;
  /** The connection to use instead of the one the value names (tests). */
  readonly connection?: KubeConnection;
  /** Lease timing (defaults: Kubernetes controllers' 15 s, 10 s, 2 s). */
  readonly lease?: {
    readonly durationMs: number;
    readonly renewDeadlineMs: number;
    readonly retryPeriodMs: number;
  };
  /** Status writer timing. */
  readonly status?: { readonly debounceMs?: number; readonly resyncMs?: number };
  /**
   * Where the daemon lists its elections (the store's ElectionBoard): the Lease election is
   * listed there while it runs, so /debug/leaderz shows which replica writes status.
   */
  readonly elections?: { add(election: Election): () => void };
}

/** The source with its election and status writer. */
export interface KubeConfig extends KubeSource {
  readonly election: Election;
  readonly client: KubeClient;
  /** The writer, once started. */
  writer(): KubeStatusWriter | undefined;
}

/** The connection a target names; throws naming the file or the missing pod environment. */
export function kubeConnectionOf(target: KubeSourceTarget): KubeConnection {
  return target.kubeconfig === undefined
    ? inClusterConfig()
    : loadKubeconfig(target.kubeconfig, target.context);
}

/**
 * Creates the source for one value; throws when the value or its kubeconfig is wrong. The
 * election campaigns from start() until stop().
 */
export function createKubeConfig(opts: KubeConfigOptions): KubeConfig {
  const target = parseKubeSourceUrl(opts.url);
  const connection = opts.connection ?? kubeConnectionOf(target);
  const client = createKubeClient(connection, { clock: opts.clock });
  const log = opts.logger.child({ source: target.name });
  const source = createKubeSource({
    client,
    name: target.name,
    logger: opts.logger,
    clock: opts.clock,
    ...(opts.maxBytes === undefined ? {} : { maxBytes: opts.maxBytes }),
  });
  let election: Election | undefined;
  let writer: KubeStatusWriter | undefined;
  let unlist: (() => void) | undefined;
  const namespace = target.leaseNamespace ?? connection.namespace ?? "default";
  const makeElection = () =>
    createLeaseElection({
      client,
      namespace,
      name: STATUS_LEASE,
      duty: "config-status",
      logger: log,
      clock: opts.clock,
      ...(opts.lease === undefined ? {} : {
        leaseDurationMs: opts.lease.durationMs,
        renewDeadlineMs: opts.lease.renewDeadlineMs,
        retryPeriodMs: opts.lease.retryPeriodMs,
      }),
    });
  const notLeading: Election = {
    duty: "config-status",
    leading: () => false,
    status: () => ({ duty: "config-status", self: "", leading: false }),
    close: () => Promise.resolve(),
  };
  return {
    ...source,
    client,
    get election() {
      return election ?? notLeading;
    },
    writer: () => writer,
    async start(sink: SourceSink) {
      await source.start(sink);
      election = makeElection();
      unlist = opts.elections?.add(election);
      writer = startKubeStatusWriter({
        client,
        source,
        store: opts.store,
        election,
        logger: opts.logger,
        clock: opts.clock,
        ...opts.status,
      });
    },
    async stop() {
      await writer?.stop();
      await election?.close();
      unlist?.();
      await source.stop();
    },
    status: () => ({
      ...source.status(),
      election: (election ?? notLeading).status(),
      ...(writer === undefined ? {} : { statusWriter: writer.status() }),
    }),
  };
}
