/**
 * The node proxy's reports to mixer (`--mixer-addr`): a closed connection becomes Istio's TCP
 * attribute bag, and a real meshd's mixer, with the Prometheus handler of the observability
 * tests, counts it in istio_tcp_* as it counts an Envoy sidecar's TCP access logs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectionBag, createMixerReporter } from "../../../mod/agent/node_proxy/mixer_report.ts";
import type { AccessLogEntry } from "../../../mod/agent/node_proxy/telemetry.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "../../e2e/_meshd.ts";
import { telemetryConfig } from "../../observability/_traffic.ts";

const RATINGS = "ratings.bookinfo.svc.cluster.local";

const entry = (over: Partial<AccessLogEntry> = {}): AccessLogEntry => ({
  reporter: "destination",
  sourceAddress: "198.18.0.2:40000",
  sourcePrincipal: "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews",
  destinationAddress: "198.18.0.3",
  destinationPort: 9080,
  destinationPrincipal: "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-ratings",
  destinationWorkload: "ratings-v1",
  destinationNamespace: "bookinfo",
  destinationService: RATINGS,
  destinationServiceNamespace: "bookinfo",
  security: "mutual_tls",
  start: new Date(0).toISOString(),
  durationMs: 1500,
  bytesReceived: 300,
  bytesSent: 7000,
  ...over,
});

describe("connectionBag()", () => {
  test("carries Istio's TCP attributes of a closed connection", () => {
    expect(connectionBag(entry())).toEqual({
      "context.protocol": "tcp",
      "api.protocol": "tcp",
      "context.reporter.kind": "inbound",
      "connection.event": "close",
      "connection.received.bytes": 300,
      "connection.sent.bytes": 7000,
      "connection.duration": 1500,
      "connection.mtls": true,
      "destination.port": 9080,
      "source.address": "198.18.0.2:40000",
      "destination.address": "198.18.0.3",
      "source.ip": Uint8Array.from([198, 18, 0, 2]),
      "destination.ip": Uint8Array.from([198, 18, 0, 3]),
      "source.principal": "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews",
      "destination.principal": "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-ratings",
      "destination.workload.name": "ratings-v1",
      "destination.workload.namespace": "bookinfo",
      "destination.service.host": RATINGS,
      "destination.service.name": "ratings",
      "destination.service.namespace": "bookinfo",
    });
  });

  test("an outbound plaintext connection to an unknown destination leaves out what is not known", () => {
    const bag = connectionBag(
      entry({
        reporter: "source",
        security: "none",
        destinationService: undefined,
        destinationPrincipal: undefined,
        destinationAddress: "2001:db8::1",
      }),
    );
    expect(bag["context.reporter.kind"]).toBe("outbound");
    expect(bag["connection.mtls"]).toBe(false);
    expect(bag["destination.ip"]).toBeUndefined();
    expect(bag["destination.service.host"]).toBeUndefined();
    expect(bag["destination.principal"]).toBeUndefined();
  });
});

describe("createMixerReporter() against a real mixer", () => {
  let dir: string;
  let meshd: MeshdProcess;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "meshd-np-mixer-"));
    cpSync(join(ROOT, "config/samples"), dir, { recursive: true });
    writeFileSync(join(dir, "telemetry.yaml"), telemetryConfig);
    meshd = await startMeshd({ args: [`--config-dir=${dir}`, "--config-debounce=10ms"] });
  }, 60_000);

  afterAll(async () => {
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("closed connections are counted in mixer's istio_tcp_* metrics", async () => {
    const reporter = await createMixerReporter(meshd.grpcAddr, createLogger({ level: "error" }));
    reporter.report(entry());
    reporter.report(entry({ bytesSent: 3000, bytesReceived: 100 }));
    await reporter.close();
    const sentBytes = async () => {
      const text = await (await fetch(`http://${meshd.adminAddr}/metrics`)).text();
      const line = text.split("\n").find((l) =>
        l.startsWith("istio_tcp_sent_bytes_total{") && l.includes(`destination_service="${RATINGS}"`)
      );
      return line === undefined ? 0 : Number(line.split(" ").at(-1));
    };
    expect(await eventually(async () => (await sentBytes()) === 10_000, 10_000)).toBe(true);
  }, 30_000);
});
