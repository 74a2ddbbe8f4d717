/**
 * The node proxy end to end, across network-namespace machines (tests/e2e/_node_proxy_mesh.ts):
 * the control plane in machine 1, `meshd agent --node-proxy` in machines 2 (A, identity
 * clients/client-a) and 3 (B, auto-registered into WorkloadGroup apps/b, running
 * `python3 -m http.server` and `redis-server`), and machine 4 outside the mesh. Applications run
 * unmodified as uid 65534: `curl`, `redis-cli` and `getent` on A name mesh hosts, which only
 * the node proxy's DNS knows, and their connections are captured and carried to B's node proxy
 * in an mTLS HBONE tunnel. Checked from the outside: what the applications get, B's access log,
 * the bytes on B's veth (tcpdump), the test DNS server's queries and `nft list ruleset`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { netnsUnavailable } from "../netns/_harness.ts";
import { eventually } from "./_meshd.ts";
import {
  APPS_NS,
  authorizationPolicy,
  CLIENT_ID,
  CLIENT_NS,
  CLIENT_SA,
  type MachineAgent,
  type NodeProxyMesh,
  peerAuthentication,
  REDIS_HOST,
  REDIS_PORT,
  SERVER_ID,
  SERVER_SA,
  startNodeProxyMesh,
  UPSTREAM_NAMES,
  VIP_RANGE,
  WEB_HOST,
  WEB_PORT,
} from "./_node_proxy_mesh.ts";
import { containsBytes, onlyTlsRecords, tcpFlows } from "./_node_proxy_pcap.ts";

const unavailable = netnsUnavailable();
if (unavailable !== undefined) console.warn(`skipping the node proxy tests across machines: ${unavailable}`);

/** What B's web server serves at /hello. */
const HELLO = "hello from B's web server";
/** The certificate lifetime the agents ask for: renewed every 10 s or so. */
const CERT_TTL = "20s";

let mesh: NodeProxyMesh;
let agentA: MachineAgent;
let agentB: MachineAgent;
/** The request lines B's web server logged. */
const webLog: string[] = [];
let webDir: string;

/** Whether `ip` is inside `cidr` (IPv4). */
function inCidr(ip: string, cidr: string): boolean {
  const n = (s: string) => s.split(".").reduce((a, b) => a * 256 + Number(b), 0);
  const [net, bits] = cidr.split("/") as [string, string];
  const size = 2 ** (32 - Number(bits));
  return Math.floor(n(ip) / size) === Math.floor(n(net) / size);
}

/** `curl` of `url` from `m` as an application; ok when the body is B's page. */
async function curl(from: "a" | "outside", url: string): Promise<{ ok: boolean; out: string }> {
  const r = await mesh.runApp(mesh[from], ["curl", "-sS", "-m", "5", url], 15_000);
  return {
    ok: r.exitCode === 0 && r.stdout.includes(HELLO),
    out: `exit ${r.exitCode} ${r.stdout}${r.stderr}`,
  };
}

/** A's application calls B's web service by its mesh name; `tag` marks the request in B's log. */
const fromA = (tag: string) => curl("a", `http://${WEB_HOST}:${WEB_PORT}/hello?${tag}`);
/** Machine 4 (outside the mesh) calls B's web server on B's address, in plain text. */
const fromOutside = (tag: string) => curl("outside", `http://${mesh.b.ip}:${WEB_PORT}/hello?${tag}`);

/** Whether B's web server received the request tagged `tag`. */
const served = (tag: string) => webLog.some((l) => l.includes(`?${tag} `));

/** The IPv4 addresses `getent ahostsv4 NAME` gives an application on A (the system resolver). */
async function resolveOnA(name: string): Promise<string[]> {
  const r = await mesh.runApp(mesh.a, ["getent", "ahostsv4", name], 15_000);
  return [...new Set(r.stdout.split("\n").map((l) => l.split(/\s+/)[0]!).filter((s) => s !== ""))];
}

/** Polls `probe` until `want(result)`; returns the last result. */
async function until<T>(probe: () => Promise<T>, want: (r: T) => boolean, timeoutMs = 30_000): Promise<T> {
  let last!: T;
  await eventually(async () => want(last = await probe()), timeoutMs, 300);
  return last;
}

let tagCount = 0;
const tag = (what: string) => `${what}-${++tagCount}`;

/** The meshd table of `nft list ruleset`, rule handles and counters taken out. */
function meshdTable(ruleset: string): string | undefined {
  const m = /^table inet meshd \{[\s\S]*?^\}/m.exec(ruleset);
  return m?.[0].replace(/ # handle \d+/g, "").replace(/counter packets \d+ bytes \d+/g, "counter");
}

beforeAll(async () => {
  if (unavailable !== undefined) return;
  mesh = await startNodeProxyMesh({ extraConfig: { peer: peerAuthentication("STRICT") } });
  // B's applications, as the unprivileged user, on every address.
  webDir = join(mesh.dir, "www");
  mkdirSync(webDir, { mode: 0o755 });
  writeFileSync(join(webDir, "hello"), HELLO + "\n", { mode: 0o644 });
  const web = mesh.execApp(mesh.b, [
    "/usr/bin/python3",
    "-u",
    "-m",
    "http.server",
    String(WEB_PORT),
    "--bind",
    "0.0.0.0",
    "--directory",
    webDir,
  ]);
  void collect(web, webLog);
  mesh.execApp(mesh.b, [
    "redis-server",
    "--port",
    String(REDIS_PORT),
    "--bind",
    "0.0.0.0",
    "--protected-mode",
    "no",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/tmp",
  ]);
  [agentB, agentA] = await Promise.all([
    mesh.startAgent(mesh.b, {
      namespace: APPS_NS,
      serviceAccount: SERVER_SA,
      workloadName: "b",
      workloadGroup: "b",
      // The WorkloadGroup's labels, as the onboarding bundle gives them to the agent.
      labels: ["app=b"],
      certTtl: CERT_TTL,
    }),
    mesh.startAgent(mesh.a, {
      namespace: CLIENT_NS,
      serviceAccount: CLIENT_SA,
      workloadName: "a",
      labels: ["app=a"],
      certTtl: CERT_TTL,
    }),
  ]);
  // Ready when A's applications can name the service and reach it.
  const first = await until(() => fromA(tag("warm-up")), (r) => r.ok, 60_000);
  if (!first.ok) {
    throw new Error(`A never reached ${WEB_HOST}: ${first.out}\n${mesh.diagnostics()}`);
  }
}, 180_000);

afterAll(async () => {
  await mesh?.cleanup();
}, 60_000);

/** Appends `proc`'s standard error lines to `into`. */
async function collect(proc: Subprocess<"ignore", "pipe", "pipe">, into: string[]): Promise<void> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of proc.stderr) {
    buf += dec.decode(chunk, { stream: true });
    const lines = buf.split("\n");
    buf = lines.pop()!;
    into.push(...lines);
  }
}

describe.skipIf(unavailable !== undefined)("node proxy across machines", () => {
  test(
    "an unmodified application on A calls B's services by mesh name, in an mTLS tunnel to 15008",
    async () => {
      const cap = await mesh.capture(mesh.b);
      const t = tag("mtls");
      const web = await fromA(t);
      const set = await mesh.runApp(mesh.a, [
        "redis-cli",
        "-h",
        REDIS_HOST,
        "-p",
        String(REDIS_PORT),
        "SET",
        "greeting",
        "secret-value-42",
      ]);
      const get = await mesh.runApp(mesh.a, [
        "redis-cli",
        "-h",
        REDIS_HOST,
        "-p",
        String(REDIS_PORT),
        "GET",
        "greeting",
      ]);
      await Bun.sleep(300);
      const flows = tcpFlows(await cap.stop());
      expect(web.ok, web.out).toBe(true);
      expect(served(t)).toBe(true);
      expect({ set: set.stdout.trim(), get: get.stdout.trim() }).toEqual({
        set: "OK",
        get: "secret-value-42",
      });

      // On B's veth: A and B talk only through 15008, in TLS, and
      // neither the HTTP request, the page nor the Redis value ever crossed in clear.
      const between = flows.filter((f) =>
        [f.src, f.dst].includes(mesh.a.ip) && [f.src, f.dst].includes(mesh.b.ip) && f.bytes.length > 0
      );
      expect(between.length).toBeGreaterThan(0);
      const ports = between.map((f) => (f.src === mesh.a.ip ? f.dstPort : f.srcPort));
      expect([...new Set(ports)]).toEqual([15008]);
      // Every stream is TLS records from its first byte (the tunnel may predate the capture, so
      // the handshake is not always in it).
      for (const f of between) expect(onlyTlsRecords(f.bytes)).toBe(true);
      const text = (s: string) => new TextEncoder().encode(s);
      for (const f of between) {
        expect(containsBytes(f.bytes, text(`GET /hello?${t}`))).toBe(false);
        expect(containsBytes(f.bytes, text(HELLO))).toBe(false);
        expect(containsBytes(f.bytes, text("secret-value-42"))).toBe(false);
      }

      // B's node proxy logged the connection with A's SPIFFE identity and its own.
      const entry = await agentB.waitFor((l) =>
        l.reporter === "destination" && l.sourcePrincipal === CLIENT_ID && l.destinationPort === WEB_PORT
      );
      expect(entry).toMatchObject({ sourcePrincipal: CLIENT_ID, destinationPrincipal: SERVER_ID });
      // And counted it in Istio's TCP metrics on its metrics endpoint.
      const metrics = await mesh.net.run(mesh.b, ["curl", "-sS", "http://127.0.0.1:15020/metrics"]);
      const opened = metrics.stdout.split("\n").filter((l) =>
        l.startsWith("istio_tcp_connections_opened_total{") && l.includes('reporter="destination"') &&
        l.includes(`source_principal="${CLIENT_ID}"`)
      );
      expect(opened.length, metrics.stdout.slice(0, 3000)).toBeGreaterThan(0);
      expect(metrics.stdout).toContain("istio_tcp_received_bytes_total{");
    },
    60_000,
  );

  test(
    "DNS: mesh names resolve to allocated virtual IPs; other names go to the machine's resolver",
    async () => {
      const before = mesh.dnsQueries.length;
      const [web, redis, outside, missing] = [
        await resolveOnA(WEB_HOST),
        await resolveOnA(REDIS_HOST),
        await resolveOnA("outside.example.test"),
        await resolveOnA("nowhere.example.test"),
      ];
      expect(web).toHaveLength(1);
      expect(redis).toHaveLength(1);
      expect(inCidr(web[0]!, VIP_RANGE)).toBe(true);
      expect(inCidr(redis[0]!, VIP_RANGE)).toBe(true);
      expect(web[0]).not.toBe(redis[0]);
      expect(outside).toEqual([UPSTREAM_NAMES["outside.example.test"]!]);
      expect(missing).toEqual([]);
      const asked = mesh.dnsQueries.slice(before).map((q) => q.name.toLowerCase());
      expect(asked).toContain("outside.example.test");
      expect(asked).toContain("nowhere.example.test");
      // Mesh names were answered on A and never reached the upstream.
      expect(asked.filter((n) => n.endsWith(".svc.cluster.local"))).toEqual([]);

      // The DNS proxy itself, asked directly on 127.0.0.1:15053 by a resolver client (as root,
      // which capture leaves alone): the same answers.
      const direct = await mesh.net.run(mesh.a, [
        process.execPath,
        "-e",
        `const r = new (require("node:dns").promises.Resolver)(); r.setServers(["127.0.0.1:15053"]);
       const out = {}; for (const n of process.argv.slice(1)) out[n] = await r.resolve4(n).catch((e) => e.code);
       console.log(JSON.stringify(out));`,
        WEB_HOST,
        "outside.example.test",
        `web.${APPS_NS}`,
      ]);
      expect(JSON.parse(direct.stdout || "{}"), direct.stderr).toEqual({
        [WEB_HOST]: web,
        "outside.example.test": outside,
        [`web.${APPS_NS}`]: web,
      });
    },
    60_000,
  );

  test(
    "PeerAuthentication: STRICT refuses plaintext from outside the mesh, PERMISSIVE accepts both, DISABLE passes plaintext",
    async () => {
      // STRICT (the starting config).
      const strict = tag("strict-outside");
      expect((await fromOutside(strict)).ok).toBe(false);
      expect(served(strict)).toBe(false);
      expect((await fromA(tag("strict-a"))).ok).toBe(true);

      mesh.writeConfig("peer", peerAuthentication("PERMISSIVE"));
      const permissive = await until(() => fromOutside(tag("permissive-outside")), (r) => r.ok);
      expect(permissive.ok, permissive.out).toBe(true);
      // What plain text looks like on B's veth, so the capture checks of the first test can fail:
      // machine 4's request crosses in clear and is no TLS.
      const cap = await mesh.capture(mesh.b);
      const clear = tag("permissive-clear");
      expect((await fromOutside(clear)).ok).toBe(true);
      await Bun.sleep(300);
      const plain = tcpFlows(await cap.stop()).filter((f) => f.src === mesh.outside.ip && f.bytes.length > 0);
      expect(plain.some((f) => containsBytes(f.bytes, new TextEncoder().encode(`GET /hello?${clear}`)))).toBe(
        true,
      );
      expect(plain.every((f) => onlyTlsRecords(f.bytes))).toBe(false);
      const permissiveA = await fromA(tag("permissive-a"));
      expect(permissiveA.ok, permissiveA.out).toBe(true);

      mesh.writeConfig("peer", peerAuthentication("DISABLE"));
      await Bun.sleep(2000);
      const disabled = await until(() => fromOutside(tag("disable-outside")), (r) => r.ok);
      expect(disabled.ok, disabled.out).toBe(true);
      const disabledA = await fromA(tag("disable-a"));
      expect(disabledA.ok, disabledA.out).toBe(true);

      mesh.writeConfig("peer", peerAuthentication("STRICT"));
      const again = await until(() => fromOutside(tag("strict-again")), (r) => !r.ok);
      expect(again.ok, again.out).toBe(false);
      expect((await fromA(tag("strict-again-a"))).ok).toBe(true);
    },
    120_000,
  );

  test(
    "AuthorizationPolicy: DENY of A's identity refuses its connections; ALLOW by namespace admits them",
    async () => {
      mesh.writeConfig(
        "authz",
        authorizationPolicy("deny-a", "DENY", { principals: [CLIENT_ID.slice("spiffe://".length)] }),
      );
      const denied = await until(() => fromA(tag("deny")), (r) => !r.ok);
      expect(denied.ok, denied.out).toBe(false);
      const deniedTag = tag("deny-check");
      expect((await fromA(deniedTag)).ok).toBe(false);
      expect(served(deniedTag)).toBe(false);
      const refusal = await agentB.waitFor((l) =>
        l.reporter === "destination" && l.sourcePrincipal === CLIENT_ID && l.decision === "deny"
      );
      expect(refusal.sourcePrincipal).toBe(CLIENT_ID);

      // ALLOW for A's namespace, with plaintext accepted too: A is admitted, machine 4 (no
      // identity, so no namespace) is not.
      mesh.writeConfig("peer", peerAuthentication("PERMISSIVE"));
      mesh.writeConfig("authz", authorizationPolicy("allow-clients", "ALLOW", { namespaces: [CLIENT_NS] }));
      const allowed = await until(() => fromA(tag("allow")), (r) => r.ok);
      expect(allowed.ok, allowed.out).toBe(true);
      const outsider = tag("allow-outside");
      expect((await fromOutside(outsider)).ok).toBe(false);
      expect(served(outsider)).toBe(false);

      mesh.removeConfig("authz");
      mesh.writeConfig("peer", peerAuthentication("STRICT"));
      await until(() => fromOutside(tag("reset")), (r) => !r.ok);
    },
    120_000,
  );

  test("certificate renewal and a root rotation under an open connection drop nothing", async () => {
    const [vip] = await resolveOnA(REDIS_HOST);
    expect(vip).toBeDefined();
    const pinger = mesh.execProgram(mesh.a, ["pinger", vip!, String(REDIS_PORT), "100"]);
    const out: string[] = [];
    void (async () => {
      const dec = new TextDecoder();
      for await (const c of pinger.stdout) out.push(...dec.decode(c).split("\n").filter(Boolean));
    })();
    expect(
      await eventually(
        () => out.some((l) => l.includes('"connected":true')) || pinger.exitCode !== null,
        10_000,
      ),
    )
      .toBe(true);
    const certs = { a: certState(mesh.a.index), b: certState(mesh.b.index) };

    // Renewal: both leaves replaced (20 s certificates renew at about half-life).
    const renewed = await eventually(
      () =>
        certState(mesh.a.index).serial !== certs.a.serial &&
        certState(mesh.b.index).serial !== certs.b.serial,
      30_000,
      200,
    );
    expect(renewed).toBe(true);
    expect((await fromA(tag("after-renewal"))).ok).toBe(true);

    // Root rotation: prepare (both roots trusted), activate (leaves under the new root), retire.
    const oldRoot = certs.a.signedBy;
    await mesh.adminPost("/debug/ca/rotate");
    expect(await eventually(() => bothHave((s) => s.roots.length === 2), 40_000, 200)).toBe(true);
    await mesh.adminPost("/debug/ca/activate");
    expect(
      await eventually(() => bothHave((s) => s.roots.length === 2 && s.signedBy !== oldRoot), 40_000, 200),
    )
      .toBe(true);
    const mixed = tag("mixed-roots");
    expect((await fromA(mixed)).ok).toBe(true);
    await mesh.adminPost("/debug/ca/retire");
    expect(
      await eventually(() => bothHave((s) => s.roots.length === 1 && s.signedBy !== oldRoot), 40_000, 200),
    )
      .toBe(true);
    // A fresh connection after the retirement works (both sides hold leaves of the new root).
    const fresh = await until(() => fromA(tag("new-root")), (r) => r.ok, 15_000);
    expect(fresh.ok, fresh.out).toBe(true);

    pinger.kill("SIGTERM");
    await pinger.exited;
    const summary = JSON.parse(out.at(-1) ?? "{}") as { ok: number; failed: number; error?: string };
    expect(summary).toMatchObject({ failed: 0 });
    expect(summary.error).toBeUndefined();
    // About ten a second for the whole test: the one connection carried on throughout.
    expect(summary.ok).toBeGreaterThan(100);
  }, 180_000);

  test(
    "capture rules go with a stopped agent, stay after kill -9, and a restart removes the leftovers first",
    async () => {
      const installed = meshdTable(await mesh.nftRuleset(mesh.a));
      expect(installed).toBeDefined();
      expect(installed).toContain("redirect");

      expect(await agentA.stop()).toBe(0);
      expect(meshdTable(await mesh.nftRuleset(mesh.a))).toBeUndefined();
      // Without the node proxy, the mesh name means nothing on A.
      expect(await resolveOnA(WEB_HOST)).toEqual([]);

      const spec = {
        namespace: CLIENT_NS,
        serviceAccount: CLIENT_SA,
        workloadName: "a",
        labels: ["app=a"],
        certTtl: CERT_TTL,
      };
      let again = await mesh.startAgent(mesh.a, spec);
      expect((await until(() => fromA(tag("restart")), (r) => r.ok, 60_000)).ok).toBe(true);
      await again.kill9();
      // A crash leaves the rules behind...
      expect(meshdTable(await mesh.nftRuleset(mesh.a))).toBe(installed);

      // ...until the next start, which removes them before installing its own.
      again = await mesh.startAgent(mesh.a, spec);
      await again.waitFor((l) => l.msg === "removed leftover traffic capture rules");
      expect((await until(() => fromA(tag("after-crash")), (r) => r.ok, 60_000)).ok).toBe(true);
      const ruleset = await mesh.nftRuleset(mesh.a);
      expect(ruleset.match(/^table inet meshd /gm)).toHaveLength(1);
      expect(meshdTable(ruleset)).toBe(installed);
      expect(await again.stop()).toBe(0);
      expect(meshdTable(await mesh.nftRuleset(mesh.a))).toBeUndefined();
    },
    180_000,
  );
});

/** A certificate state on disk: the leaf's serial, the roots' fingerprints and which signed it. */
interface CertState {
  serial: string;
  roots: string[];
  signedBy: string | undefined;
}

function certState(machineIndex: number): CertState {
  const out = join(mesh.dir, `machine${machineIndex}`, "out");
  try {
    const leaf = new X509Certificate(readFileSync(join(out, "cert-chain.pem"), "utf8"));
    const roots = [
      ...readFileSync(join(out, "root-cert.pem"), "utf8").matchAll(
        /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g,
      ),
    ].map((m) => new X509Certificate(m[0]));
    return {
      serial: leaf.serialNumber,
      roots: roots.map((r) => r.fingerprint256),
      signedBy: roots.find((r) => leaf.verify(r.publicKey))?.fingerprint256,
    };
  } catch {
    // caught between two renames
    return { serial: "", roots: [], signedBy: undefined };
  }
}

function bothHave(pred: (s: CertState) => boolean): boolean {
  return pred(certState(mesh.a.index)) && pred(certState(mesh.b.index));
}
