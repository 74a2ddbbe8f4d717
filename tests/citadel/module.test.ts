/**
 * The citadel module inside an in-process daemon with galley: the trust domain from MeshConfig
 * (and the flag that wins over it), the CA link, and the admin endpoints for rotation.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "node:tls";
import { readAdminToken } from "../../mod/admin/token.ts";
import { CA, type CertificateAuthority, citadelModule } from "../../mod/citadel/mod.ts";
import { createToken, loadOrCreateTokenKey } from "../../mod/citadel/token.ts";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { galleyModule } from "../../mod/galley/mod.ts";
import { type Daemon, startDaemon } from "../../runtime/daemon.ts";
import type { ModuleDefinition } from "../../mod/runtime/module.ts";
import { serveSettings } from "../../runtime/serve_command.ts";
import { createManualClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { caClient, csrFor, tempDir } from "./_ca.ts";

function meshConfig(trustDomain: string): string {
  return `apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec: { trustDomain: ${trustDomain} }
`;
}

/** A module that catches the CA link for the test. */
function probe(): { def: ModuleDefinition; ca(): CertificateAuthority } {
  let ca: CertificateAuthority | undefined;
  return {
    def: {
      name: "probe",
      summary: "test probe",
      settings: [],
      create(ctx) {
        ca = ctx.links.find(CA);
        return { start: () => Promise.resolve(), ready: () => true, stop: () => Promise.resolve() };
      },
    },
    ca: () => ca!,
  };
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(args: string[]) {
  const data = tempDir();
  const config = tempDir();
  cleanups.push(data.cleanup, config.cleanup);
  writeFileSync(join(config.path, "mesh.yaml"), meshConfig("example.org"));
  const p = probe();
  const modules = [galleyModule, citadelModule, p.def];
  const { settings } = parseCommandLine(
    serveSettings(modules),
    [
      "--grpc-addr=127.0.0.1:0",
      "--admin-addr=127.0.0.1:0",
      "--webhook-addr=127.0.0.1:0",
      "--grpc-tls-addr=127.0.0.1:0",
      `--data-dir=${data.path}`,
      `--config-dir=${config.path}`,
      "--config-debounce=10ms",
      "--shutdown-grace=1s",
      ...args,
    ],
    { command: "test", env: {} },
  );
  const logs: Array<Record<string, unknown>> = [];
  const daemon: Daemon = await startDaemon({
    settings,
    modules,
    logger: createLogger({ format: "json", write: (l) => logs.push(JSON.parse(l)) }),
  });
  cleanups.push(() => daemon.shutdown());
  return { daemon, ca: p.ca(), data: data.path, config: config.path, logs };
}

async function waitFor(fn: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error("timed out");
    await Bun.sleep(20);
  }
}

describe("citadel module", () => {
  test("takes the trust domain from MeshConfig, records it, follows changes, and issues only inside it", async () => {
    const { daemon, ca, data, config } = await start([]);
    await waitFor(() => daemon.ready());
    expect(ca.trustDomain()).toBe("example.org");
    expect(new X509Certificate(ca.trustBundle()).subject).toBe("O=example.org");
    expect(readFileSync(join(data, "trust-domain"), "utf8")).toBe("example.org\n");

    const key = loadOrCreateTokenKey(data);
    const token = (td: string) =>
      createToken(key, {
        trustDomain: td,
        namespace: "app",
        serviceAccount: "web",
        ttlMs: 600_000,
        now: Date.now(),
      });
    const client = caClient(daemon.grpcAddr);
    const ok = await client.createCertificate(
      { csr: csrFor("spiffe://example.org/ns/app/sa/web").csr },
      { headers: { authorization: `Bearer ${token("example.org")}` } },
    );
    expect(ok.certChain).toHaveLength(2);
    const wrong = await client.createCertificate(
      { csr: csrFor("spiffe://cluster.local/ns/app/sa/web").csr },
      { headers: { authorization: `Bearer ${token("cluster.local")}` } },
    ).catch((e) => ConnectError.from(e));
    expect(wrong).toBeInstanceOf(ConnectError);
    expect((wrong as ConnectError).code).toBe(Code.PermissionDenied);
    expect((wrong as ConnectError).rawMessage).toContain("trust domain example.org");

    let changes = 0;
    const off = ca.onChange(() => changes++);
    writeFileSync(join(config, "mesh.yaml"), meshConfig("changed.example"));
    await waitFor(() => ca.trustDomain() === "changed.example");
    expect(changes).toBe(1);
    expect(readFileSync(join(data, "trust-domain"), "utf8")).toBe("changed.example\n");
    off();
  });

  test("--trust-domain wins over MeshConfig", async () => {
    const { daemon, ca } = await start(["--trust-domain=flag.example"]);
    await waitFor(() => daemon.ready());
    expect(ca.trustDomain()).toBe("flag.example");
    expect(new X509Certificate(ca.trustBundle()).subject).toBe("O=flag.example");
  });

  test("POST /debug/ca/rotate, /activate and /retire change the bundle the link reports and tell listeners", async () => {
    const { daemon, ca, data } = await start([]);
    await waitFor(() => daemon.ready());
    const base = `http://${daemon.adminAddr}/debug/ca`;
    const post = { method: "POST", headers: { authorization: `Bearer ${readAdminToken(data)}` } };
    let changes = 0;
    ca.onChange(() => changes++);
    expect((await fetch(`${base}/rotate`)).status).toBe(405);
    const before = ca.trustBundle();
    const prepared = await (await fetch(`${base}/rotate`, post)).json() as {
      roots: Array<{ signing: boolean; fingerprint: string }>;
    };
    // The old root keeps signing; the new one is trusted.
    expect(prepared.roots.map((r) => r.signing)).toEqual([true, false]);
    expect(ca.trustBundle().startsWith(before)).toBe(true);
    expect(ca.trustBundle().length).toBeGreaterThan(before.length);
    expect(changes).toBe(1);
    const early = await fetch(`${base}/retire`, post);
    expect(early.status).toBe(409);
    expect(((await early.json()) as { error: string }).error).toContain("activate it before retiring");
    const activated = await (await fetch(`${base}/activate`, post)).json() as {
      roots: Array<{ signing: boolean; fingerprint: string }>;
    };
    expect(activated.roots.map((r) => r.signing)).toEqual([true, false]);
    expect(activated.roots[0]!.fingerprint).toBe(prepared.roots[1]!.fingerprint);
    expect(ca.trustBundle().endsWith(before)).toBe(true);
    expect(changes).toBe(2);
    const status = await (await fetch(base)).json() as { mode: string; roots: unknown[] };
    expect(status).toMatchObject({ mode: "self-signed", roots: [{}, {}] });
    expect((await fetch(`${base}/retire`, post)).status).toBe(200);
    expect(ca.trustBundle()).not.toContain(before.split("\n")[1]!);
    expect(changes).toBe(3);
    const again = await fetch(`${base}/retire`, post);
    expect(again.status).toBe(409);
    expect(((await again.json()) as { error: string }).error).toContain("nothing to retire");
  });

  test("the TLS listener's certificate is renewed at half its life (injected clock)", async () => {
    const data = tempDir();
    cleanups.push(data.cleanup);
    const p = probe();
    const modules = [citadelModule, p.def];
    const { settings } = parseCommandLine(
      serveSettings(modules),
      [
        "--grpc-addr=127.0.0.1:0",
        "--admin-addr=127.0.0.1:0",
        "--grpc-tls-addr=127.0.0.1:0",
        `--data-dir=${data.path}`,
        "--workload-cert-ttl=2h",
        "--shutdown-grace=1s",
      ],
      { command: "test", env: {} },
    );
    const clock = createManualClock(Date.now());
    const logs: Array<Record<string, unknown>> = [];
    const daemon = await startDaemon({
      settings,
      modules,
      clock,
      logger: createLogger({ format: "json", write: (l) => logs.push(JSON.parse(l)) }),
    });
    cleanups.push(() => daemon.shutdown());
    const addr = logs.find((l) => l.msg === "citadel TLS listening")!.addr as string;
    const served = () =>
      new Promise<X509Certificate>((resolve, reject) => {
        const [host, port] = [
          addr.slice(0, addr.lastIndexOf(":")),
          Number(addr.slice(addr.lastIndexOf(":") + 1)),
        ];
        const sock = connect({
          host,
          port,
          rejectUnauthorized: false,
          ALPNProtocols: ["h2"],
          servername: "localhost",
        }, () => {
          const raw = sock.getPeerCertificate().raw;
          sock.destroy();
          resolve(new X509Certificate(raw));
        });
        sock.on("error", reject);
      });
    const first = await served();
    expect(first.checkHost("meshd.istio-system.svc")).toBe("meshd.istio-system.svc");
    expect(first.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(first.verify(new X509Certificate(p.ca().trustBundle()).publicKey)).toBe(true);
    expect(Date.parse(first.validTo) - Date.parse(first.validFrom)).toBe(2 * 3600_000 + 60_000);
    clock.advance(59 * 60_000);
    expect((await served()).serialNumber).toBe(first.serialNumber);
    clock.advance(2 * 60_000);
    const second = await served();
    expect(second.serialNumber).not.toBe(first.serialNumber);
    expect(Date.parse(second.validFrom)).toBeGreaterThan(Date.parse(first.validFrom));
  });
});
