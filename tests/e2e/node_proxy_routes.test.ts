/**
 * VirtualService `tcp` routes through the node proxy, across network-namespace machines
 * (tests/e2e/_node_proxy_mesh.ts): a TCP service `routed.apps` with a declared virtual IP and two
 * plain-TCP endpoints, subset v1 on machine 3 and subset v2 on machine 4, each a server that
 * answers every connection with its subset's name. An application on machine 2 (uid 65534,
 * captured by `meshd agent --node-proxy`) connects to the virtual IP many times while the
 * VirtualService's weights change: 100/0 sends every connection to v1, 0/100 every one to v2,
 * and 50/50 over 60 connections gives both some (a fair split leaves one side empty with odds of
 * about 1 in 10^18). The agent's access log names both workloads' app and version.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { netnsUnavailable } from "../netns/_harness.ts";
import { eventually } from "./_meshd.ts";
import {
  APPS_NS,
  CLIENT_NS,
  CLIENT_SA,
  type MachineAgent,
  type NodeProxyMesh,
  startNodeProxyMesh,
  waitForLine,
} from "./_node_proxy_mesh.ts";

const unavailable = netnsUnavailable();
if (unavailable !== undefined) {
  console.warn(`skipping the node proxy route tests across machines: ${unavailable}`);
}

const HOST = `routed.${APPS_NS}.svc.cluster.local`;
/** The service's declared virtual IP (inside the range the machines route through eth0). */
const VIP = "198.19.250.1";
const PORT = 7070;
/** Connections per weighted round. */
const N = 60;

/** Answers every TCP connection with TAG and closes it. */
const TAG_SERVER = `
const [host, port, tag] = process.argv.slice(-3);
require("node:net").createServer((s) => { s.on("error", () => {}); s.end(tag); })
  .listen(Number(port), host, () => console.log("listening"));
`;

/** Makes COUNT connections to HOST PORT one after another; prints a JSON count of what each read. */
const TAG_CLIENT = `
const [host, port, count] = process.argv.slice(-3);
const net = require("node:net");
const once = () => new Promise((resolve) => {
  const s = net.connect(Number(port), host);
  let got = "";
  const timer = setTimeout(() => { s.destroy(); resolve("timeout"); }, 5000);
  s.on("data", (c) => (got += c));
  s.on("end", () => { clearTimeout(timer); resolve(got || "empty"); });
  s.on("error", (e) => { clearTimeout(timer); resolve("error " + e.code); });
});
(async () => {
  const counts = {};
  for (let i = 0; i < Number(count); i++) {
    const r = await once();
    counts[r] = (counts[r] ?? 0) + 1;
  }
  console.log(JSON.stringify(counts));
})();
`;

/**
 * The ServiceEntry, its DestinationRule subsets and the VirtualService with weights v1/v2. Only
 * the VirtualService changes between steps, so each step is a routing-only push, which must
 * still carry the new TCP routes (they are listener filter chains).
 */
function routedConfig(v1: number, v2: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: routed, namespace: ${APPS_NS} }
spec:
  hosts: [${HOST}]
  addresses: [${VIP}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - { number: ${PORT}, name: tcp-routed, protocol: TCP }
  endpoints:
    - { address: 198.18.0.3, labels: { app: routed, version: v1 } }
    - { address: 198.18.0.4, labels: { app: routed, version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: routed, namespace: ${APPS_NS} }
spec:
  host: ${HOST}
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: routed, namespace: ${APPS_NS} }
spec:
  hosts: [${HOST}]
  tcp:
    - route:
        - { destination: { host: ${HOST}, subset: v1 }, weight: ${v1} }
        - { destination: { host: ${HOST}, subset: v2 }, weight: ${v2} }
`;
}

let mesh: NodeProxyMesh;
let agentA: MachineAgent;
/** The tag servers (not agents or programs of the harness, so stopped here). */
const servers: Array<{ kill(signal?: number | NodeJS.Signals): void }> = [];

/** N connections from machine 2's application to the virtual IP: how many each subset answered. */
async function round(n = N): Promise<Record<string, number>> {
  const r = await mesh.runApp(
    mesh.a,
    [process.execPath, "-e", TAG_CLIENT, VIP, String(PORT), String(n)],
    60_000,
  );
  if (r.exitCode !== 0) throw new Error(`client: exit ${r.exitCode} ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as Record<string, number>;
}

/** Repeats rounds until `ok` holds for one (the config takes a moment to reach the agent). */
async function until(
  ok: (c: Record<string, number>) => boolean,
  what: string,
): Promise<Record<string, number>> {
  let last: Record<string, number> = {};
  const reached = await eventually(async () => ok(last = await round()), 60_000, 200);
  if (!reached) {
    const agentLog = agentA.logs.filter((l) => l.msg !== "tcp").map((l) => JSON.stringify(l)).slice(-30);
    throw new Error(
      `${what}: last round ${JSON.stringify(last)}\n${mesh.diagnostics()}\n${agentLog.join("\n")}`,
    );
  }
  return last;
}

describe.skipIf(unavailable !== undefined)("node proxy: VirtualService tcp routes across machines", () => {
  beforeAll(async () => {
    mesh = await startNodeProxyMesh();
    for (const [m, tag] of [[mesh.b, "v1"], [mesh.outside, "v2"]] as const) {
      const server = mesh.net.exec(m, [process.execPath, "-e", TAG_SERVER, "0.0.0.0", String(PORT), tag]);
      await waitForLine(server, "stdout", /listening/);
      servers.push(server);
    }
    agentA = await mesh.startAgent(mesh.a, {
      namespace: CLIENT_NS,
      serviceAccount: CLIENT_SA,
      workloadName: "client-a",
      labels: ["app=client", "version=v9"],
    });
  }, 120_000);
  afterAll(async () => {
    for (const s of servers) s.kill("SIGKILL");
    await mesh?.cleanup();
  }, 60_000);

  test("weights 100/0 then 0/100 send every connection to one subset", async () => {
    mesh.writeConfig("routed", routedConfig(100, 0));
    const v1 = await until((c) => c["v1"] === N, "100/0: every connection to v1");
    expect(v1).toEqual({ v1: N });
    mesh.writeConfig("routed", routedConfig(0, 100));
    const v2 = await until((c) => c["v2"] === N, "0/100: every connection to v2");
    expect(v2).toEqual({ v2: N });
  }, 180_000);

  test("weights 50/50 split connections between both subsets", async () => {
    mesh.writeConfig("routed", routedConfig(50, 50));
    // Under 0/100 (before the change arrives) v1 gets none, so v1 > 0 shows the new weights apply.
    const split = await until((c) => (c["v1"] ?? 0) > 0, "50/50: some connections to v1");
    const fresh = await round();
    expect(fresh["v1"] ?? 0).toBeGreaterThan(0);
    expect(fresh["v2"] ?? 0).toBeGreaterThan(0);
    expect((fresh["v1"] ?? 0) + (fresh["v2"] ?? 0)).toBe(N);
    expect((split["v1"] ?? 0) + (split["v2"] ?? 0)).toBe(N);
  }, 180_000);

  test("the access log names the source's and the chosen subset's app and version", async () => {
    const entry = await agentA.waitFor((l) =>
      l.reporter === "source" && l.destinationPort === PORT && l.destinationVersion === "v2"
    );
    expect(entry).toMatchObject({
      sourceWorkload: "client-a",
      sourceApp: "client",
      sourceVersion: "v9",
      destinationApp: "routed",
      destinationVersion: "v2",
      destinationService: HOST,
    });
  });
});
