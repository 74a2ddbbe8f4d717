/**
 * Writes galley's findings back into the status of the Istio objects read from the Kubernetes
 * API (`status.validationMessages` and `status.observedGeneration`, see kube_status.ts), as
 * Istio's control plane does, on the leader replica only.
 *
 * After each delivery of the Kubernetes source and each new config snapshot (debounced by
 * `debounceMs`), and every `resyncMs` as a safety net, the leader works out each object's
 * status: the validation messages of its document, and, when it validates, the analysis
 * findings about it over the whole accepted config (every source's, as `meshd analyze` sees it).
 * It patches an object's `/status` subresource (JSON merge patch, so other status fields stay)
 * only when that differs from the status the server holds, and does not patch the same object
 * again with the same status until the server's copy changes. A replica that is not leading
 * writes nothing; one that becomes leader compares every object afresh.
 *
 * @module
 */
import type { Clock, Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { AnalysisDiagnostic } from "./analyzers/_context.ts";
import { analyze } from "./analyze.ts";
import type { KubeClient } from "../kube/mod.ts";
import type { KubeConfigObject, KubeSource } from "./kube_source.ts";
import {
  analysisMessage,
  documentMessages,
  findingsByOrigin,
  type IstioStatus,
  istioStatus,
  SCHEMA_VALIDATION,
  statusNeedsWrite,
  statusPatch,
  type ValidationMessage,
} from "./kube_status.ts";
import type { ConfigSnapshot, ConfigStore } from "./store.ts";

/** Options for startKubeStatusWriter. */
export interface KubeStatusWriterOptions {
  readonly client: KubeClient;
  readonly source: KubeSource;
  readonly store: ConfigStore;
  /** Whether this replica may write (the Lease election's leader, or always for one replica). */
  readonly election: { leading(): boolean };
  readonly logger: Logger;
  readonly clock: Clock;
  /** Quiet time after a change before statuses are worked out (default 200 ms). */
  readonly debounceMs?: number;
  /** Full pass interval, which also notices a change of leader (default 5 s). */
  readonly resyncMs?: number;
}

/** What the writer has done, for /debug/configz. */
export interface KubeStatusWriterStatus {
  readonly leading: boolean;
  /** Status patches sent, and failed. */
  readonly writes: number;
  readonly failures: number;
  /** Objects whose status has messages now, as last worked out. */
  readonly withMessages: number;
  readonly lastError?: string;
}

/** A running status writer. */
export interface KubeStatusWriter {
  status(): KubeStatusWriterStatus;
  /** Works out and writes statuses now (when leading); resolves when the pass is done. */
  sync(): Promise<void>;
  /** Stops; resolves once a pass in progress has ended. */
  stop(): Promise<void>;
}

/** Starts the writer; its first pass runs after the first delivery or the first resync. */
export function startKubeStatusWriter(opts: KubeStatusWriterOptions): KubeStatusWriter {
  const { client, source, store, clock } = opts;
  const log = opts.logger.child({ component: "kube-status" });
  const debounceMs = opts.debounceMs ?? 200;
  const resyncMs = opts.resyncMs ?? 5_000;
  /** Validation messages by document text: a document validates the same every time. */
  let docMessages = new Map<string, ValidationMessage[]>();
  let analysed: { snapshot: ConfigSnapshot; findings: Map<string, AnalysisDiagnostic[]> } | undefined;
  /** What was last patched per origin, with the server's resourceVersion it was patched over. */
  const written = new Map<string, string>();
  let wasLeading = false;
  let writes = 0;
  let failures = 0;
  let withMessages = 0;
  let lastError: string | undefined;
  let stopped = false;
  let debounce: Timer | undefined;
  let resync: Timer | undefined;
  let running: Promise<void> | undefined;
  let again = false;

  function messagesOf(o: KubeConfigObject): ValidationMessage[] {
    if (o.content === undefined) return [];
    let msgs = docMessages.get(o.content);
    if (msgs === undefined) {
      msgs = documentMessages(o.content, o.origin);
      docMessages.set(o.content, msgs);
    }
    return msgs;
  }

  function findings(): Map<string, AnalysisDiagnostic[]> {
    const snapshot = store.snapshot();
    if (analysed?.snapshot !== snapshot) {
      analysed = { snapshot, findings: findingsByOrigin(analyze([...snapshot.resources.values()])) };
    }
    return analysed.findings;
  }

  /** The status an object should have. */
  function wanted(o: KubeConfigObject, byOrigin: Map<string, AnalysisDiagnostic[]>): IstioStatus {
    const generation = Number(o.object.metadata.generation ?? 0);
    const validation = o.error === undefined
      ? messagesOf(o)
      : [{ type: SCHEMA_VALIDATION, level: "ERROR" as const, description: o.error }];
    const invalid = validation.some((m) => m.level === "ERROR");
    const analysis = invalid ? [] : (byOrigin.get(o.origin) ?? []).map(analysisMessage);
    return istioStatus(generation, [...validation, ...analysis]);
  }

  async function patch(o: KubeConfigObject, want: IstioStatus, mark: string): Promise<void> {
    const m = o.object.metadata;
    const path = `${o.origin}/status`;
    try {
      await client.request("PATCH", path, {
        body: statusPatch(want),
        contentType: "application/merge-patch+json",
      });
      written.set(o.origin, mark);
      writes++;
      lastError = undefined;
    } catch (e) {
      failures++;
      lastError = errorMessage(e);
      log.warn("cannot write the status of a config object; trying again on the next pass", {
        resource: `${o.crd.kind} ${m.namespace ?? ""}/${m.name}`,
        err: lastError,
      });
    }
  }

  async function pass(): Promise<void> {
    const leading = opts.election.leading();
    if (!leading) {
      if (wasLeading) log.info("not leading: status writes stop");
      wasLeading = false;
      written.clear();
      return;
    }
    if (!wasLeading) {
      log.info("leading: writing config status to the Kubernetes API");
      written.clear();
    }
    wasLeading = true;
    if (!source.synced()) return;
    const byOrigin = findings();
    const objects = [...source.objects().values()];
    const liveDocs = new Map<string, ValidationMessage[]>();
    let count = 0;
    for (const o of objects) {
      if (stopped || !opts.election.leading()) return;
      const want = wanted(o, byOrigin);
      if (o.content !== undefined) liveDocs.set(o.content, docMessages.get(o.content) ?? []);
      if (want.validationMessages.length > 0) count++;
      const current = (o.object as { status?: unknown }).status;
      if (!statusNeedsWrite(current, want)) {
        written.delete(o.origin);
        continue;
      }
      const mark = `${o.object.metadata.resourceVersion ?? ""}|${JSON.stringify(want)}`;
      if (written.get(o.origin) === mark) continue; // patched; the server's copy has not come back yet
      await patch(o, want, mark);
    }
    docMessages = liveDocs;
    withMessages = count;
    for (const origin of [...written.keys()]) if (!source.objects().has(origin)) written.delete(origin);
  }

  /** Runs a pass now, or once more after the one running. */
  function run(): Promise<void> {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        try {
          await pass();
        } catch (e) {
          lastError = errorMessage(e);
          log.error("config status pass failed", { err: lastError });
        }
      } while (again && !stopped);
      running = undefined;
    })();
    return running;
  }

  function schedule(): void {
    if (stopped) return;
    debounce?.cancel();
    debounce = clock.setTimer(debounceMs, () => void run());
  }

  function tick(): void {
    if (stopped) return;
    void run();
    resync = clock.setTimer(resyncMs, tick);
  }

  const offSource = source.onDelivered(schedule);
  const offStore = store.subscribe(schedule);
  resync = clock.setTimer(resyncMs, tick);

  return {
    status: () => ({
      leading: opts.election.leading(),
      writes,
      failures,
      withMessages,
      ...(lastError === undefined ? {} : { lastError }),
    }),
    sync: run,
    async stop() {
      stopped = true;
      offSource();
      offStore();
      debounce?.cancel();
      resync?.cancel();
      await running;
    },
  };
}
