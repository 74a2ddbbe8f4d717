/**
 * The names in the certificate of the CA's TLS port: computed from the settings and the host's
 * interfaces, served (a TLS client checking an address the certificate names accepts it, one
 * checking another address refuses it), and recorded in --data-dir for `meshd vm bundle`.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { checkServerIdentity, connect, type PeerCertificate } from "node:tls";
import { citadelModule } from "../../mod/citadel/mod.ts";
import {
  checkIpList,
  hostAddresses,
  type Interfaces,
  namesCover,
  readServedNames,
  SERVER_CERT_FILE,
  serverCertNames,
} from "../../mod/citadel/server_names.ts";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { startDaemon } from "../../runtime/daemon.ts";
import { serveSettings } from "../../runtime/serve_command.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { tempDir } from "./_ca.ts";

const IFACES: Interfaces = {
  lo: [
    { address: "127.0.0.1", netmask: "255.0.0.0", family: "IPv4", mac: "", internal: true, cidr: null },
    { address: "::1", netmask: "", family: "IPv6", mac: "", internal: true, cidr: null, scopeid: 0 },
  ],
  eth0: [
    { address: "198.18.0.1", netmask: "255.255.255.0", family: "IPv4", mac: "", internal: false, cidr: null },
    { address: "2001:db8::1", netmask: "", family: "IPv6", mac: "", internal: false, cidr: null, scopeid: 0 },
    { address: "fe80::1", netmask: "", family: "IPv6", mac: "", internal: false, cidr: null, scopeid: 2 },
  ],
};

describe("serverCertNames()", () => {
  test("names the DNS names, loopback, the host's non-loopback addresses without link-local, and the extra IPs, once each", () => {
    expect(hostAddresses(IFACES)).toEqual(["198.18.0.1", "2001:db8::1"]);
    const names = serverCertNames({
      dnsNames: ["meshd", "cp.example.com", "meshd"],
      ips: ["203.0.113.5", "2001:db8:0:0:0:0:0:1", "0:0:0:0:0:0:0:1"],
      interfaces: IFACES,
    });
    expect(names).toEqual([
      { type: "dns", value: "meshd" },
      { type: "dns", value: "cp.example.com" },
      { type: "ip", value: "127.0.0.1" },
      { type: "ip", value: "::1" },
      { type: "ip", value: "198.18.0.1" },
      { type: "ip", value: "2001:db8::1" },
      { type: "ip", value: "203.0.113.5" },
    ]);
  });

  test("namesCover() matches IPs whatever their spelling, DNS names without case, and one-label wildcards", () => {
    const names = {
      dns: ["cp.example.com", "*.mesh.example.com"],
      ips: ["127.0.0.1", "2001:db8:0:0:0:0:0:1"],
    };
    expect(namesCover(names, "2001:db8::1")).toBe(true);
    expect(namesCover(names, "127.0.0.1")).toBe(true);
    expect(namesCover(names, "127.0.0.2")).toBe(false);
    expect(namesCover(names, "CP.example.com")).toBe(true);
    expect(namesCover(names, "a.mesh.example.com")).toBe(true);
    expect(namesCover(names, "a.b.mesh.example.com")).toBe(false);
    expect(namesCover(names, "mesh.example.com")).toBe(false);
  });

  test("checkIpList() names the flag and the value that is not an IP", () => {
    expect(checkIpList(["10.0.0.1", "::1"], "--ca-server-ips")).toEqual(["10.0.0.1", "::1"]);
    expect(() => checkIpList(["10.0.0.1", "10.0.0"], "--ca-server-ips")).toThrow(
      '--ca-server-ips: "10.0.0" is not an IP address',
    );
  });
});

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startCitadel(args: string[]) {
  const data = tempDir();
  cleanups.push(data.cleanup);
  const modules = [citadelModule];
  const { settings } = parseCommandLine(
    serveSettings(modules),
    [
      "--grpc-addr=127.0.0.1:0",
      "--admin-addr=127.0.0.1:0",
      "--grpc-tls-addr=127.0.0.1:0",
      `--data-dir=${data.path}`,
      "--shutdown-grace=1s",
      ...args,
    ],
    { command: "test", env: {} },
  );
  const logs: Array<Record<string, unknown>> = [];
  const daemon = await startDaemon({
    settings,
    modules,
    logger: createLogger({ format: "json", write: (l) => logs.push(JSON.parse(l)) }),
  });
  cleanups.push(() => daemon.shutdown());
  const addr = logs.find((l) => l.msg === "citadel TLS listening")!.addr as string;
  const port = Number(addr.slice(addr.lastIndexOf(":") + 1));
  return { data: data.path, port, logs };
}

/**
 * Connects to the TLS port on loopback as a client that dialled `ip` would check it: no server
 * name sent, the certificate verified against the mesh's roots and checked for `ip`.
 */
function verifyFor(port: number, ip: string, roots: string): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const sock = connect({
      host: "127.0.0.1",
      port,
      ca: roots,
      ALPNProtocols: ["h2"],
      checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(ip, cert),
    }, () => {
      const cert = sock.getPeerCertificate();
      sock.destroy();
      resolve(cert);
    });
    sock.on("error", reject);
  });
}

describe("the CA's TLS port", () => {
  test("serves a certificate that verifies for the host's addresses and --ca-server-ips, and records it in --data-dir", async () => {
    const { data, port, logs } = await startCitadel(["--ca-server-ips=198.18.7.7,2001:db8::7"]);
    const roots = readFileSync(join(data, "ca", "root-cert.pem"), "utf8");
    const wanted = [...hostAddresses(), "198.18.7.7", "2001:db8::7", "::1", "127.0.0.1"];
    for (const ip of wanted) await expect(verifyFor(port, ip, roots)).resolves.toBeDefined();
    await expect(verifyFor(port, "198.18.7.8", roots)).rejects.toThrow(
      "IP: 198.18.7.8 is not in the cert's list",
    );
    // What is served is what is recorded, and the record names every address.
    const served = await verifyFor(port, "127.0.0.1", roots);
    const recorded = new X509Certificate(readFileSync(join(data, SERVER_CERT_FILE)));
    expect(recorded.raw.equals(served.raw)).toBe(true);
    const names = readServedNames(data)!;
    for (const ip of wanted) expect(namesCover(names, ip)).toBe(true);
    expect(logs.find((l) => l.msg === "citadel TLS listening")!.names).toContain("198.18.7.7");
  });

  test("a value of --ca-server-ips that is not an IP stops the start, naming the flag", async () => {
    await expect(startCitadel(["--ca-server-ips=198.18.7"])).rejects.toThrow(
      '--ca-server-ips: "198.18.7" is not an IP address',
    );
  });
});
