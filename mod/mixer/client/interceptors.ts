/**
 * grpc-js interceptors that put a proxyless gRPC app under mixer's policy and telemetry:
 * `mixerServerInterceptor` checks every incoming call (refusing denied ones with the decision's
 * code) and reports it when it ends; `mixerClientInterceptor` does the same for outgoing calls.
 * Decisions come from the client's cache when possible (no I/O on a hit).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { MixerClient, Verdict } from "./mixer_client.ts";
import type { AttributeBag } from "./wire.ts";

/** A workload as attributes describe it. */
export interface WorkloadInfo {
  /** Workload name, e.g. "reviews-v1". */
  readonly name?: string;
  readonly namespace?: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** SPIFFE identity, e.g. "spiffe://cluster.local/ns/default/sa/reviews". */
  readonly principal?: string;
}

/** A service as attributes describe it. */
export interface ServiceInfo {
  /** FQDN, e.g. "reviews.default.svc.cluster.local". */
  readonly host: string;
  readonly name?: string;
  readonly namespace?: string;
}

/** What both interceptors share. */
export interface InterceptorOptions {
  readonly client: MixerClient;
  /** Quotas each call takes, by quota instance name: a map, or a function of the method path. */
  readonly quotas?:
    | Readonly<Record<string, number>>
    | ((path: string) => Readonly<Record<string, number>> | undefined);
  /** Check calls (default true). */
  readonly check?: boolean;
  /** Report calls (default true). */
  readonly report?: boolean;
  /** Adds or changes attributes of a call before it is checked. */
  readonly attributes?: (bag: AttributeBag) => void;
}

/** Options of {@link mixerServerInterceptor}. */
export interface ServerInterceptorOptions extends InterceptorOptions {
  /** This server's workload. */
  readonly workload?: WorkloadInfo;
  /** The service this server implements. */
  readonly service?: ServiceInfo;
}

/** Options of {@link mixerClientInterceptor}. */
export interface ClientInterceptorOptions extends InterceptorOptions {
  /** This client's workload. */
  readonly workload?: WorkloadInfo;
  /** The service the channel calls. */
  readonly service?: ServiceInfo;
}

function setWorkload(bag: AttributeBag, side: "source" | "destination", w: WorkloadInfo | undefined): void {
  if (!w) return;
  if (w.name) bag[`${side}.workload.name`] = w.name;
  if (w.namespace) {
    bag[`${side}.workload.namespace`] = w.namespace;
    bag[`${side}.namespace`] = w.namespace;
  }
  if (w.labels) bag[`${side}.labels`] = w.labels;
  if (w.principal) bag[`${side}.principal`] = w.principal;
}

function setService(bag: AttributeBag, s: ServiceInfo | undefined): void {
  if (!s) return;
  bag["destination.service.host"] = s.host;
  bag["destination.service.name"] = s.name ?? s.host.split(".")[0]!;
  const ns = s.namespace ?? s.host.split(".")[1];
  if (ns) bag["destination.service.namespace"] = ns;
}

function headersOf(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  const map = md.getMap();
  for (const k in map) {
    const v = map[k];
    if (typeof v === "string") out[k] = v;
  }
  return out;
}

function ipBytes(text: string | undefined): Uint8Array | undefined {
  if (!text) return undefined;
  const t = text.startsWith("::ffff:") && text.includes(".") ? text.slice(7) : text;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(t);
  if (v4) return new Uint8Array(v4.slice(1).map(Number));
  return undefined;
}

function splitPath(path: string): { service: string; method: string } {
  const m = /^\/([^/]+)\/([^/]+)$/.exec(path);
  return m ? { service: m[1]!, method: m[2]! } : { service: "", method: path };
}

function requestBag(path: string, headers: Record<string, string>, host: string): AttributeBag {
  const { service, method } = splitPath(path);
  const bag: AttributeBag = {
    "request.path": path,
    "request.url_path": path,
    "request.method": "POST",
    "request.headers": headers,
    "request.time": new Date(),
    "context.protocol": "grpc",
    "api.protocol": "grpc",
    "api.service": service,
    "api.operation": method,
  };
  if (host) bag["request.host"] = host;
  if (headers["user-agent"]) bag["request.useragent"] = headers["user-agent"];
  if (headers["x-request-id"]) bag["request.id"] = headers["x-request-id"];
  return bag;
}

function quotasFor(opts: InterceptorOptions, path: string): Readonly<Record<string, number>> | undefined {
  return typeof opts.quotas === "function" ? opts.quotas(path) : opts.quotas;
}

/** The report of a finished call; sizes are given where the side that reports can measure them. */
function completeReport(
  bag: AttributeBag,
  startedAt: number,
  code: number,
  sizes: { request?: number; response?: number },
): AttributeBag {
  const end = Date.now();
  const out: AttributeBag = {
    ...bag,
    // gRPC answers HTTP 200 whatever its status; the outcome is in grpc_status.
    "response.code": 200,
    "response.grpc_status": String(code),
    "response.duration": end - startedAt,
    "response.time": new Date(end),
  };
  if (sizes.request !== undefined) out["request.size"] = sizes.request;
  if (sizes.response !== undefined) out["response.size"] = sizes.response;
  return out;
}

/**
 * A grpc-js server interceptor: each incoming call is described as attributes (method path,
 * metadata as request.headers, peer address and certificate, this workload and service) and
 * checked before its handler runs; a denied call ends with the decision's code and reason.
 * Finished calls are reported with their status, duration and message sizes.
 */
export function mixerServerInterceptor(opts: ServerInterceptorOptions): grpc.ServerInterceptor {
  const doCheck = opts.check ?? true;
  const doReport = opts.report ?? true;
  return (method, call) => {
    const startedAt = Date.now();
    let bag: AttributeBag | undefined;
    let resBytes = 0;
    const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, mdNext) {
            const b = requestBag(method.path, headersOf(metadata), call.getHost());
            const info = call.getConnectionInfo();
            const src = ipBytes(info.remoteAddress);
            if (src) b["source.ip"] = src;
            if (info.remotePort !== undefined) b["source.port"] = info.remotePort;
            if (info.localPort !== undefined) b["destination.port"] = info.localPort;
            const dst = ipBytes(info.localAddress);
            if (dst) b["destination.ip"] = dst;
            const auth = call.getAuthContext();
            const san =
              (auth?.sslPeerCertificate as { subjectaltname?: string } | undefined)?.subjectaltname ?? "";
            const uri = /(?:^|,\s*)URI:([^,]+)/.exec(san)?.[1];
            if (uri) b["source.principal"] = uri;
            b["connection.mtls"] = Boolean(auth?.sslPeerCertificate);
            b["context.reporter.kind"] = "inbound";
            setWorkload(b, "destination", opts.workload);
            setService(b, opts.service);
            opts.attributes?.(b);
            bag = b;
            if (!doCheck) return mdNext(metadata);
            const quotas = quotasFor(opts, method.path);
            const decide = (v: Verdict) => {
              if (v.allowed) mdNext(metadata);
              else {
                intercepting.sendStatus({ code: v.code, details: v.message, metadata: new grpc.Metadata() });
              }
            };
            const cached = opts.client.tryCached(b, quotas);
            if (cached) decide(cached);
            else void opts.client.check(b, quotas).then(decide);
          },
        });
      },
      sendMessage(message, next) {
        if (doReport) {
          try {
            resBytes += method.responseSerialize(message).length;
          } catch {
            // a message the method cannot serialize is the handler's problem, not ours
          }
        }
        next(message);
      },
      sendStatus(status, next) {
        if (doReport && bag) {
          opts.client.report(
            completeReport(bag, startedAt, status.code ?? grpc.status.OK, { response: resBytes }),
          );
        }
        next(status);
      },
    });
    return intercepting;
  };
}

/**
 * A grpc-js client interceptor: each outgoing call is described as attributes (method path,
 * metadata, this workload as source, the called service as destination) and checked before it
 * is sent; a denied call fails locally with the decision's code. Finished calls are reported.
 */
export function mixerClientInterceptor(opts: ClientInterceptorOptions): grpc.Interceptor {
  const doCheck = opts.check ?? true;
  const doReport = opts.report ?? true;
  return (options, nextCall) => {
    const path = options.method_definition.path;
    const startedAt = Date.now();
    let bag: AttributeBag | undefined;
    let reqBytes = 0;
    return new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        const b = requestBag(path, headersOf(metadata), options.host ?? opts.service?.host ?? "");
        b["context.reporter.kind"] = "outbound";
        setWorkload(b, "source", opts.workload);
        setService(b, opts.service);
        opts.attributes?.(b);
        bag = b;
        const proceed = () =>
          next(metadata, {
            onReceiveStatus(status, statusNext) {
              if (doReport) {
                opts.client.report(completeReport(b, startedAt, status.code, { request: reqBytes }));
              }
              statusNext(status);
            },
          });
        if (!doCheck) return proceed();
        const quotas = quotasFor(opts, path);
        const decide = (v: Verdict) => {
          if (v.allowed) proceed();
          else {
            if (doReport) opts.client.report(completeReport(b, startedAt, v.code, { request: reqBytes }));
            listener.onReceiveStatus({ code: v.code, details: v.message, metadata: new grpc.Metadata() });
          }
        };
        const cached = opts.client.tryCached(b, quotas);
        if (cached) decide(cached);
        else void opts.client.check(b, quotas).then(decide);
      },
      sendMessage(message, next) {
        if (doReport && bag) {
          try {
            reqBytes += options.method_definition.requestSerialize(message).length;
          } catch {
            // not ours to judge
          }
        }
        next(message);
      },
    });
  };
}
