/**
 * The workload labels of the node proxy's TCP telemetry: this machine's own from its labels, an
 * outbound connection's destination from the endpoint's workload metadata pilot sends, an inbound
 * connection's source from baggage (ztunnel's keys) or the view's workload at its address; and
 * the baggage header's format and parsing.
 */
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { baggageSource, formatBaggage, parseBaggage } from "../../../mod/agent/node_proxy/baggage.ts";
import { decodeNodeProxyView } from "../../../mod/agent/node_proxy/decode.ts";
import { selfLabels } from "../../../mod/agent/node_proxy/node_proxy.ts";
import { type AccessLogEntry, createTcpTelemetry } from "../../../mod/agent/node_proxy/telemetry.ts";
import {
  withWorkloadLabels,
  workloadLabels,
  workloadTelemetry,
} from "../../../mod/agent/node_proxy/telemetry_workloads.ts";
import { createManualClock } from "../../../mod/shared/clock.ts";
import { createMetricsRegistry } from "../../../mod/shared/metrics.ts";
import { buildNodeProxy } from "../../../mod/pilot/translate/mod.ts";
import { readCase } from "../../pilot/translate/_golden.ts";

const routed = readCase("node_proxy/tcp_routes");
const view = decodeNodeProxyView(buildNodeProxy(routed.push, routed.proxy));
const self = workloadLabels("web-vm", "shop", { app: "web", version: "v1" });

describe("workloadLabels()", () => {
  test("app and version labels; canonical labels as Istio derives them", () => {
    expect(self).toEqual({
      name: "web-vm",
      namespace: "shop",
      app: "web",
      version: "v1",
      canonicalService: "web",
      canonicalRevision: "v1",
    });
    expect(workloadLabels("w", "ns", {
      "service.istio.io/canonical-name": "svc",
      "app.kubernetes.io/name": "k8s-name",
      "app.kubernetes.io/version": "2.0",
    })).toEqual({
      name: "w",
      namespace: "ns",
      app: "svc",
      version: "2.0",
      canonicalService: "svc",
      canonicalRevision: "2.0",
    });
    expect(workloadLabels("w", "ns", {})).toMatchObject({ app: "w", canonicalRevision: "latest" });
  });
});

describe("selfLabels()", () => {
  test("the labels given, else the xDS node's LABELS metadata (cluster.env's ISTIO_METAJSON_LABELS)", () => {
    const node = create(NodeSchema, { id: "sidecar~198.18.0.2~a.ns~ns.svc.cluster.local" });
    node.metadata = { LABELS: { app: "client", version: "v9", n: 1 } };
    const view = { kind: "xds" as const, discoveryAddr: "198.18.0.1:15012", node };
    expect(selfLabels({ workload: { name: "a", namespace: "ns" }, view })).toEqual({
      app: "client",
      version: "v9",
    });
    expect(selfLabels({ workload: { name: "a", namespace: "ns", labels: { app: "given" } }, view })).toEqual({
      app: "given",
    });
  });
});

describe("withWorkloadLabels()", () => {
  test("outbound: this machine is the source, the endpoint's workload the destination", () => {
    const info = withWorkloadLabels(
      {
        reporter: "source",
        sourceAddress: "198.18.0.1",
        destinationAddress: "198.18.200.1",
        destinationPort: 5432,
        upstream: "198.18.0.12:5432",
      },
      self,
      view,
    );
    expect(info).toMatchObject({
      sourceWorkload: "web-vm",
      sourceNamespace: "shop",
      sourceApp: "web",
      sourceVersion: "v1",
      destinationNamespace: "shop",
      destinationApp: "db",
      destinationVersion: "v2",
      destinationCanonicalService: "db",
      destinationCanonicalRevision: "v2",
    });
  });

  test("inbound: this machine is the destination; the source from baggage wins over the address", () => {
    const fromBaggage = withWorkloadLabels(
      {
        reporter: "destination",
        sourceAddress: "198.18.0.11",
        destinationAddress: "198.18.0.1",
        destinationPort: 80,
        ...baggageSource(
          parseBaggage("k8s.namespace.name=shop,k8s.deployment.name=db-1,service.name=db,service.version=v7"),
        ),
      },
      self,
      view,
    );
    expect(fromBaggage).toMatchObject({
      sourceWorkload: "db-1",
      sourceApp: "db",
      sourceVersion: "v7",
      destinationWorkload: "web-vm",
      destinationApp: "web",
      destinationVersion: "v1",
    });
    // Without an app in baggage: the view's one workload at the source address (IPv4 as IPv6 too).
    const byAddress = withWorkloadLabels(
      {
        reporter: "destination",
        sourceAddress: "::ffff:198.18.0.11",
        destinationAddress: "198.18.0.1",
        destinationPort: 80,
      },
      self,
      view,
    );
    expect(byAddress).toMatchObject({ sourceApp: "db", sourceVersion: "v1", sourceNamespace: "shop" });
    // An address whose workload disagrees with the one the client named is not used.
    const other = withWorkloadLabels(
      {
        reporter: "destination",
        sourceAddress: "198.18.0.11",
        sourceNamespace: "elsewhere",
        destinationAddress: "198.18.0.1",
        destinationPort: 80,
      },
      self,
      view,
    );
    expect(other.sourceApp).toBeUndefined();
  });
});

describe("workloadTelemetry()", () => {
  test("istio_tcp_* metrics and the access log carry source_app and destination_app", async () => {
    const registry = createMetricsRegistry();
    const logs: AccessLogEntry[] = [];
    const telemetry = workloadTelemetry(
      createTcpTelemetry({ registry, clock: createManualClock(), accessLog: (e) => logs.push(e) }),
      { self, view: () => view },
    );
    const out = telemetry.open({
      reporter: "source",
      sourceAddress: "198.18.0.1",
      destinationAddress: "198.18.200.1",
      destinationPort: 5432,
    });
    out.update({ upstream: "198.18.0.11:5432" });
    out.close({ received: 3, sent: 4 });
    const text = await registry.metrics();
    const closed = text.split("\n").find((l) => l.startsWith("istio_tcp_connections_closed_total{"))!;
    expect(closed).toContain('source_app="web"');
    expect(closed).toContain('source_version="v1"');
    expect(closed).toContain('destination_app="db"');
    expect(closed).toContain('destination_version="v1"');
    expect(closed).toContain('destination_canonical_service="db"');
    expect(closed).not.toContain('_app="unknown"');
    expect(logs[0]).toMatchObject({ sourceApp: "web", destinationApp: "db", destinationVersion: "v1" });
  });
});

describe("baggage", () => {
  test("formatBaggage() writes ztunnel's keys and parseBaggage() reads them back", () => {
    const header = formatBaggage("web vm", "shop", { service: "web", version: "v1", cluster: "c1" });
    expect(header).toBe(
      "k8s.cluster.name=c1,k8s.namespace.name=shop,k8s.workload.name=web%20vm,service.name=web,service.version=v1",
    );
    expect(parseBaggage(header)).toEqual({
      cluster: "c1",
      namespace: "shop",
      workload: "web vm",
      service: "web",
      version: "v1",
    });
  });

  test("parseBaggage() takes every ztunnel workload kind, several header values, and skips empties", () => {
    expect(parseBaggage(["k8s.pod.name=p1", "service.name=", "cloud.region=eu;prop=1"])).toEqual({
      workload: "p1",
      region: "eu",
    });
    expect(parseBaggage("k8s.job.name=j,cloud.availability_zone=eu-1a,unknown=x")).toEqual({
      workload: "j",
      zone: "eu-1a",
    });
    expect(parseBaggage(undefined)).toEqual({});
  });
});
