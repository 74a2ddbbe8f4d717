/**
 * The Telemetry API on TCP proxies (mod/pilot/translate/tcp_proxy.ts): every TCP proxy of a
 * sidecar's listeners (outbound TCP listeners, passthrough and blackhole chains, inbound TCP
 * chains) and of a gateway's TCP servers gets the access logs Telemetry gives its side, or the
 * mesh's access log file without Telemetry; the HTTP-only mixer logger never.
 */
import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import {
  type TcpProxy,
  TcpProxySchema,
} from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { mergeMeshConfig } from "../../../mod/api/kinds/mesh_config.ts";
import type { PushContext } from "../../../mod/pilot/model/push_context.ts";
import { type Proxy, proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { buildListeners } from "../../../mod/pilot/translate/mod.ts";
import { TCP_PROXY_FILTER, tcpAccessLogs } from "../../../mod/pilot/translate/tcp_proxy.ts";
import { TRANSLATE_REGISTRY } from "../../../mod/pilot/translate/type_registry.ts";
import { pushFrom, WEB_SERVICE, webSidecar } from "../_push.ts";
import { accessLogPaths, meshWithTextLog, telemetry } from "../_telemetry.ts";

const MESH = meshWithTextLog("%DOWNSTREAM_REMOTE_ADDRESS% %UPSTREAM_CLUSTER%");

const GATEWAY = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: tcp-gw, namespace: app }
spec:
  selector: { istio: tcp-gw }
  servers:
    - port: { number: 9000, name: tcp, protocol: TCP }
      hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: tcp, namespace: app }
spec:
  hosts: ["*"]
  gateways: [tcp-gw]
  tcp:
    - route:
        - destination: { host: web.app.svc.cluster.local, port: { number: 9000 } }
`;

const gatewayProxy = (): Proxy =>
  proxyFromNode({
    id: "router~10.0.0.9~gw-1.app~app.svc.cluster.local",
    metadata: { NAMESPACE: "app", LABELS: { istio: "tcp-gw" } },
  });

/** Where a TCP proxy sits, and the file paths (or names, for other loggers) of its access logs. */
interface TcpLogs {
  readonly at: string;
  readonly logs: string[];
}

/** Every TCP proxy of the proxy's listeners with its access logs. */
function tcpLogs(push: PushContext, proxy: Proxy): TcpLogs[] {
  return buildListeners(push, proxy).flatMap((l: Listener) =>
    l.filterChains.flatMap((c) =>
      c.filters.filter((f) => f.name === TCP_PROXY_FILTER).map((f) => {
        const tcp = f.configType.case === "typedConfig"
          ? anyUnpack(f.configType.value, TRANSLATE_REGISTRY)
          : undefined;
        if (!tcp || tcp.$typeName !== TcpProxySchema.typeName) throw new Error(`${l.name}: not a TCP proxy`);
        return { at: `${l.name}/${c.name}`, logs: accessLogPaths((tcp as TcpProxy).accessLog) };
      })
    )
  );
}

/** The logs of the TCP proxies whose listener/chain name contains `part`. */
const logsAt = (all: readonly TcpLogs[], part: string): string[][] =>
  all.filter((t) => t.at.includes(part)).map((t) => t.logs);

describe("access logs on a sidecar's TCP proxies", () => {
  test("without Telemetry every TCP proxy logs to the mesh's access log file", () => {
    const all = tcpLogs(pushFrom(MESH, WEB_SERVICE), webSidecar());
    expect(all.length).toBeGreaterThan(3);
    for (const t of all) expect(t).toEqual({ at: t.at, logs: ["/var/log/mesh.log"] });
  });

  test("Telemetry disabling access logs at the root removes them from every TCP proxy", () => {
    const push = pushFrom(
      MESH,
      WEB_SERVICE,
      telemetry("istio-system", "off", "accessLogging: [{ disabled: true }]"),
    );
    const all = tcpLogs(push, webSidecar());
    expect(all.length).toBeGreaterThan(3);
    for (const t of all) expect(t).toEqual({ at: t.at, logs: [] });
  });

  test("a file provider for the server side logs on inbound TCP proxies only", () => {
    const push = pushFrom(
      MESH,
      WEB_SERVICE,
      telemetry(
        "app",
        "logs",
        "accessLogging: [{ providers: [{ name: text-log }], match: { mode: SERVER } }]",
      ),
    );
    const all = tcpLogs(push, webSidecar());
    const inbound = logsAt(all, "virtualInbound/");
    const outbound = all.filter((t) => !t.at.startsWith("virtualInbound/")).map((t) => t.logs);
    expect(inbound.length).toBeGreaterThan(0);
    expect(outbound.length).toBeGreaterThan(0);
    for (const logs of inbound) expect(logs).toEqual(["/var/log/text.log"]);
    for (const logs of outbound) expect(logs).toEqual([]);
  });

  test("a file provider for both sides logs on the outbound TCP listener of the service", () => {
    const push = pushFrom(
      MESH,
      WEB_SERVICE,
      telemetry("app", "logs", "accessLogging: [{ providers: [{ name: text-log }, { name: envoy }] }]"),
    );
    const all = tcpLogs(push, webSidecar());
    expect(logsAt(all, "0.0.0.0_9000/")).toEqual([["/var/log/mesh.log", "/var/log/text.log"]]);
    expect(logsAt(all, "virtualInbound/inbound|9000||")).toEqual([
      ["/var/log/mesh.log", "/var/log/text.log"],
      ["/var/log/mesh.log", "/var/log/text.log"],
    ]);
  });
});

describe("access logs on a gateway's TCP proxies", () => {
  test("the gateway's side (CLIENT) decides; SERVER-only entries leave its TCP routes alone", () => {
    const base = pushFrom(MESH, WEB_SERVICE, GATEWAY);
    const plain = tcpLogs(base, gatewayProxy());
    expect(plain.length).toBeGreaterThan(0);
    for (const t of plain) expect(t.logs).toEqual(["/var/log/mesh.log"]);

    const client = pushFrom(
      MESH,
      WEB_SERVICE,
      GATEWAY,
      telemetry(
        "app",
        "logs",
        "accessLogging: [{ providers: [{ name: text-log }], match: { mode: CLIENT } }]",
      ),
    );
    for (const t of tcpLogs(client, gatewayProxy())) expect(t.logs).toEqual(["/var/log/text.log"]);

    const server = pushFrom(
      MESH,
      WEB_SERVICE,
      GATEWAY,
      telemetry(
        "app",
        "logs",
        "accessLogging: [{ providers: [{ name: text-log }], match: { mode: SERVER } }]",
      ),
    );
    for (const t of tcpLogs(server, gatewayProxy())) expect(t.logs).toEqual([]);
  });
});

describe("mixer and TCP proxies", () => {
  test("the HTTP-only mixer logger is never put on a TCP proxy, with or without Telemetry", () => {
    const mesh = mergeMeshConfig({ accessLogFile: "/var/log/mesh.log" });
    const withMixer = (push: PushContext): PushContext => ({ ...push, mesh, features: { mixer: true } });
    const plain = withMixer(pushFrom(WEB_SERVICE));
    const ctx = { proxy: webSidecar(), direction: "inbound" as const };
    expect(accessLogPaths(tcpAccessLogs({ push: plain, ...ctx }))).toEqual([
      "/var/log/mesh.log",
    ]);
    const named = withMixer(
      pushFrom(WEB_SERVICE, telemetry("app", "logs", "accessLogging: [{ providers: [{ name: mixer }] }]")),
    );
    expect(tcpAccessLogs({ push: named, ...ctx })).toEqual([]);
  });
});
