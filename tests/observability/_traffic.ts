/**
 * Real traffic for a running meshd, as sidecars report it: Envoy access-log (ALS) streams of
 * HTTP and TCP entries into mixer, so Istio's standard metrics get label sets a dashboard can
 * show, and the mixer config that records them.
 */
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AccessLogType } from "#gen/envoy/data/accesslog/v3/accesslog_pb.ts";
import { AccessLogService } from "#gen/envoy/service/accesslog/v3/als_pb.ts";
import { docs, mixerYaml } from "../mixer/_harness.ts";

/** A prometheus handler recording Istio's standard metrics for every report. */
export const telemetryConfig = docs(
  mixerYaml("handler", "prom", { compiledAdapter: "prometheus" }),
  mixerYaml("instance", "requestcount", { compiledTemplate: "metric", params: { value: "1" } }),
  mixerYaml("rule", "promtelemetry", { actions: [{ handler: "prom", instances: ["requestcount"] }] }),
);

/** A workload that reports (its sidecar) or calls. */
export interface Workload {
  name: string;
  namespace: string;
  app: string;
  version: string;
  ip: string;
  serviceAccount: string;
}

/** One call as the destination's sidecar logs it. */
export interface Call {
  source: Workload;
  destinationHost: string;
  port: number;
  code: number;
  ms: number;
  mtls: boolean;
}

const spiffe = (w: Workload) => `spiffe://cluster.local/ns/${w.namespace}/sa/${w.serviceAccount}`;

function common(c: Call, extra: Record<string, unknown> = {}) {
  return {
    upstreamCluster: `inbound|${c.port}||`,
    duration: { seconds: BigInt(Math.floor(c.ms / 1000)), nanos: (c.ms % 1000) * 1_000_000 },
    ...(c.mtls
      ? {
        tlsProperties: {
          peerCertificateProperties: {
            subjectAltName: [{ san: { case: "uri" as const, value: spiffe(c.source) } }],
          },
        },
      }
      : {}),
    metadata: {
      filterMetadata: {
        "meshd.attributes": {
          "source.workload.name": c.source.name,
          "source.workload.namespace": c.source.namespace,
          "destination.service.host": c.destinationHost,
        },
      },
    },
    ...extra,
  };
}

function identifier(dest: Workload) {
  return {
    node: {
      id: `sidecar~${dest.ip}~${dest.name}-x.${dest.namespace}~${dest.namespace}.svc.cluster.local`,
      metadata: {
        NAMESPACE: dest.namespace,
        WORKLOAD_NAME: dest.name,
        LABELS: { app: dest.app, version: dest.version },
      },
    },
    logName: "meshd-mixer",
  };
}

/** Sends `calls` as the HTTP access log of `dest`'s sidecar, in one ALS stream. */
export async function reportHttp(grpcAddr: string, dest: Workload, calls: readonly Call[]): Promise<void> {
  const als = createClient(AccessLogService, createGrpcTransport({ baseUrl: `http://${grpcAddr}` }));
  async function* messages() {
    yield {
      identifier: identifier(dest),
      logEntries: {
        case: "httpLogs" as const,
        value: {
          logEntry: calls.map((c) => ({
            commonProperties: common(c),
            request: {
              requestMethod: 1,
              path: "/api",
              authority: `${c.destinationHost}:${c.port}`,
              requestHeadersBytes: 200n,
              requestBodyBytes: 300n,
            },
            response: { responseCode: c.code, responseHeadersBytes: 100n, responseBodyBytes: 1500n },
          })),
        },
      },
    };
  }
  await als.streamAccessLogs(messages());
}

/** Sends one TCP connection (opened, then closed having moved bytes) per call as `dest`'s log. */
export async function reportTcp(grpcAddr: string, dest: Workload, calls: readonly Call[]): Promise<void> {
  const als = createClient(AccessLogService, createGrpcTransport({ baseUrl: `http://${grpcAddr}` }));
  async function* messages() {
    yield {
      identifier: identifier(dest),
      logEntries: {
        case: "tcpLogs" as const,
        value: {
          logEntry: calls.flatMap((c, i) => [
            {
              commonProperties: common(c, {
                accessLogType: AccessLogType.TcpUpstreamConnected,
                streamId: `c${i}`,
              }),
            },
            {
              commonProperties: common(c, {
                accessLogType: AccessLogType.TcpConnectionEnd,
                streamId: `c${i}`,
              }),
              connectionProperties: { receivedBytes: 4096n, sentBytes: 65536n },
            },
          ]),
        },
      },
    };
  }
  await als.streamAccessLogs(messages());
}
