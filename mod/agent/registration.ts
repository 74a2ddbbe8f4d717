/**
 * The agent's own ADS stream to pilot, kept open while the workload belongs to a WorkloadGroup,
 * so the workload is registered (and kept registered) even when no Envoy runs. It carries the
 * workload's node (with AUTO_REGISTER_GROUP) and subscribes to one light type only: Istio's
 * `type.googleapis.com/istio.v1.HealthInformation`.
 *
 * The channel, both ways:
 * - pilot answers the subscription with the group's readiness probe (one resource, a
 *   google.protobuf.Struct holding the WorkloadGroup's `probe` in Istio's JSON) or with nothing
 *   when the group has none, and pushes again when the group's probe changes;
 * - the agent answers every such response, once its health is known, with its health: a
 *   request carrying the response's nonce and no `error_detail` when healthy, or with
 *   `error_detail` (code INTERNAL, the probe's message) when unhealthy, as Istio's agent reports
 *   health; and it sends again, with the last nonce, whenever its health changes.
 *
 * The stream reconnects with exponential backoff and jitter; with mutual TLS to the control
 * plane each connection uses the certificate current at that moment. With several pilot
 * replicas (endpoints.ts), a stream that breaks with a network-class error or UNAVAILABLE, or
 * that pilot ends, reconnects to the next replica at once; the backoff applies once every
 * replica has failed in turn. A stream pilot ends with OK
 * (its shutdown) is logged at info. When pilot refuses the registration (it ends the stream with
 * PERMISSION_DENIED or FAILED_PRECONDITION and says why: identity, service account, unknown
 * group), one error line gives the reason, `refusal()` holds it until a stream is answered, and
 * the stream is retried slowly (the group or the identity may be fixed meanwhile). A failure only
 * a setting fixes (TLS to pilot's plaintext port, a server certificate not trusted) stops the
 * stream and goes to `onFatal` (failure.ts).
 *
 * @module
 */
import { create, type JsonObject, toJson } from "@bufbuild/protobuf";
import { anyUnpack, StructSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { Node } from "#gen/envoy/config/core/v3/base_pb.ts";
import { openAdsClient } from "./ads_client.ts";
import {
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  type DiscoveryResponse,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import type { Clock, Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { createChannel } from "../shared/channel.ts";
import { createBackoff } from "../shared/backoff.ts";
import type { CaTls } from "./ca_client.ts";
import { createEndpoints, type Endpoint, type LookupAll, parseAddrList } from "./endpoints.ts";
import { type CallSite, failsOver, judgeFailure, type SettingError } from "./failure.ts";
import type { ProbeResult, ProbeSpec } from "./health.ts";

/**
 * Istio's health information type URL (pilot's autoregister.ts serves it). A wire constant
 * shared with pilot by value, as Istio's agent and istiod share it.
 */
export const HEALTH_TYPE_URL = "type.googleapis.com/istio.v1.HealthInformation";

/**
 * The wait before trying the next address after a stream to a working pilot ended: short, so a
 * replica's failure costs little, but never zero, so pilots that accept and then drop every stream
 * cannot spin the agent in a tight loop (at most ten attempts a second).
 */
const FAILOVER_DELAY_MS = 100;

/** gRPC code INTERNAL, which Istio's agent puts in unhealthy reports. */
const CODE_INTERNAL = 13;

/** Options for startRegistration. */
export interface RegistrationOptions {
  /** HOST:PORT of pilot, or a comma list of its replicas. */
  readonly discoveryAddr: string;
  /** Resolves replica host names (default node:dns). */
  readonly lookup?: LookupAll;
  /**
   * TLS for each connection (the current certificate, the roots, the server name), or undefined
   * for plaintext. Throwing postpones the connection (e.g. no certificate yet).
   */
  tls(): CaTls | undefined;
  readonly node: Node;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Called with the group's probe from every response (undefined: the group has none). */
  onProbe(probe: ProbeSpec | undefined): void;
  /** Which settings chose the stream's address (for failure.ts; `addr` is set per replica). */
  readonly site?: CallSite;
  /** Called once when a failure needs a change of a setting; the stream is not retried. */
  onFatal?(err: SettingError): void;
  readonly random?: () => number;
  /** Retry delays after failures (default 1 s doubling to 30 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Retry delays after pilot refused the registration (default 30 s doubling to 2 min). */
  readonly refusedBackoff?: { readonly initialMs: number; readonly maxMs: number };
}

/** The running registration stream. */
export interface Registration {
  /** Whether a stream is open and pilot has answered on it. */
  connected(): boolean;
  /** Pilot's reason for refusing the registration, until a later stream is answered. */
  refusal(): string | undefined;
  /**
   * Records the workload's health and sends it when a stream is open; undefined means not known
   * (a new probe has not reached a threshold yet) and sends nothing.
   */
  report(result: ProbeResult | undefined): void;
  /** Closes the stream and stops reconnecting. */
  stop(): Promise<void>;
}

/** Reads the probe out of a HealthInformation response. */
export function probeFromResponse(res: DiscoveryResponse): ProbeSpec | undefined {
  const any = res.resources[0];
  if (!any) return undefined;
  const s = anyUnpack(any, StructSchema);
  if (!s) throw new Error(`health response: want a google.protobuf.Struct, got ${any.typeUrl}`);
  return toJson(StructSchema, s) as JsonObject as ProbeSpec;
}

/** A health report for the response with `nonce` and `version`. */
export function healthReport(nonce: string, version: string, result: ProbeResult): DiscoveryRequest {
  return create(DiscoveryRequestSchema, {
    typeUrl: HEALTH_TYPE_URL,
    responseNonce: nonce,
    versionInfo: version,
    ...(result.healthy ? {} : { errorDetail: { code: CODE_INTERNAL, message: result.message } }),
  });
}

/** Opens the stream and keeps it open until stop(). */
export function startRegistration(o: RegistrationOptions): Registration {
  const log = o.logger;
  const backoff = createBackoff({
    initialMs: o.backoff?.initialMs ?? 1000,
    maxMs: o.backoff?.maxMs ?? 30_000,
    random: o.random,
  });
  const refusedBackoff = createBackoff({
    initialMs: o.refusedBackoff?.initialMs ?? 30_000,
    maxMs: o.refusedBackoff?.maxMs ?? 120_000,
    random: o.random,
  });
  const site: CallSite = o.site ??
    { service: "pilot", addr: o.discoveryAddr, addrSetting: "--discovery-addr (PILOT_ADDRESS)" };
  const endpoints = createEndpoints(parseAddrList(o.discoveryAddr, site.addrSetting), { lookup: o.lookup });
  /** The replica of the current (or last) stream. */
  let target: Endpoint | undefined;
  let stopped = false;
  let isConnected = false;
  let refusal: string | undefined;
  let health: ProbeResult | undefined;
  let send: ((req: DiscoveryRequest) => void) | undefined;
  let last: { nonce: string; version: string } | undefined;
  let abort: AbortController | undefined;
  let wait: { timer: Timer; wake: () => void } | undefined;

  function sendHealth(): void {
    if (send && last && health) send(healthReport(last.nonce, last.version, health));
  }

  async function runOnce(): Promise<void> {
    const tls = o.tls();
    target = undefined;
    const ep = await endpoints.current();
    target = ep;
    const serverName = tls?.serverName ?? ep.serverName;
    const ads = openAdsClient(
      ep.dialAddr,
      tls ? { ca: tls.ca, cert: tls.cert, key: tls.key, ...(serverName ? { serverName } : {}) } : undefined,
    );
    const client = ads.client;
    const requests = createChannel<DiscoveryRequest>();
    abort = new AbortController();
    requests.push(create(DiscoveryRequestSchema, { node: o.node, typeUrl: HEALTH_TYPE_URL }));
    try {
      for await (const res of client.streamAggregatedResources(requests, { signal: abort.signal })) {
        if (res.typeUrl !== HEALTH_TYPE_URL) continue;
        if (!isConnected) {
          log.info("registered with pilot", { addr: ep.addr, dial: ep.dialAddr, node: o.node.id });
        }
        isConnected = true;
        endpoints.succeeded();
        refusal = undefined;
        backoff.reset();
        refusedBackoff.reset();
        send = (req) => requests.push(req);
        last = { nonce: res.nonce, version: res.versionInfo };
        let probe: ProbeSpec | undefined;
        try {
          probe = probeFromResponse(res);
        } catch (err) {
          log.warn("ignoring a malformed probe from pilot", { err: errorMessage(err) });
          continue;
        }
        o.onProbe(probe);
        sendHealth();
      }
    } finally {
      isConnected = false;
      send = undefined;
      last = undefined;
      requests.close();
      ads.close();
    }
  }

  /** Handles a failed stream; returns the wait before the next one, or undefined to stop. */
  function failed(err: unknown): number | undefined {
    const addr = target?.addr ?? o.discoveryAddr;
    const verdict = judgeFailure(err, { ...site, addr });
    if (verdict.kind === "setting") {
      stopped = true;
      o.onFatal?.(verdict.error);
      return undefined;
    }
    if (verdict.kind === "refused") {
      const ms = refusedBackoff.next();
      // One error line per reason; the same refusal again is only worth a debug line.
      const again = refusal === verdict.message;
      refusal = verdict.message;
      (again ? log.debug : log.error)("registration refused by pilot; retrying slowly", {
        addr,
        code: Code[verdict.code],
        reason: verdict.message,
        retryInMs: ms,
      });
      return ms;
    }
    const moveOn = failsOver(err) && !endpoints.failed();
    const ms = moveOn ? FAILOVER_DELAY_MS : backoff.next();
    log.warn("registration stream failed; retrying", {
      addr,
      err: errorMessage(err),
      retryInMs: ms,
      ...(moveOn ? { next: endpoints.addrs.length > 1 ? "the next replica" : "the next address" } : {}),
    });
    return ms;
  }

  const loop = (async () => {
    while (!stopped) {
      let ms: number | undefined;
      try {
        await runOnce();
        if (stopped) break;
        ms = endpoints.failed() ? backoff.next() : FAILOVER_DELAY_MS;
        log.info("registration stream ended by pilot; reconnecting", {
          addr: target?.addr,
          retryInMs: ms,
        });
      } catch (err) {
        if (stopped) break;
        ms = failed(err);
      }
      if (stopped || ms === undefined) break;
      await new Promise<void>((wake) => {
        wait = { timer: o.clock.setTimer(ms, wake), wake };
      });
      wait = undefined;
    }
  })();

  return {
    connected: () => isConnected,
    refusal: () => refusal,
    report(result) {
      health = result;
      sendHealth();
    },
    async stop() {
      stopped = true;
      abort?.abort();
      if (wait) {
        wait.timer.cancel();
        wait.wake();
      }
      await loop;
    },
  };
}
