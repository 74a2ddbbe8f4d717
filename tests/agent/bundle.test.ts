/**
 * `meshd vm bundle` against a real control plane (galley and citadel in-process, on loopback):
 * the files and modes it writes, the addresses it refuses because the CA's TLS certificate does
 * not name them, the service account taken from the WorkloadGroup's template, and the binary.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { agentUnit, vmCommand } from "../../mod/agent/bundle_command.ts";
import { defaultInstanceIp, parseClusterEnv } from "../../mod/agent/settings.ts";
import { tar, tarGz } from "../../mod/agent/tar.ts";
import { citadelModule, loadOrCreateTokenKey, SERVER_CERT_FILE, verifyToken } from "../../mod/citadel/mod.ts";
import { hostAddresses } from "../../mod/citadel/server_names.ts";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { runCli } from "../../mod/cli/run.ts";
import { galleyModule } from "../../mod/galley/mod.ts";
import { type Daemon, startDaemon } from "../../runtime/daemon.ts";
import { serveSettings } from "../../runtime/serve_command.ts";
import { compiledExecutable } from "../../mod/shared/executable.ts";
import { createLogger } from "../../mod/shared/logger.ts";

const ROOT = resolve(import.meta.dir, "../..");
let dir: string;
let dataDir: string;
let rootPem: string;
let daemon: Daemon;
let admin: string;

const GROUPS = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: ratings, namespace: vms }
spec:
  metadata: { labels: { app: ratings, version: v1 } }
  template: { serviceAccount: ratings-sa, network: vm-net }
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: plain, namespace: vms }
spec:
  metadata: { labels: { app: plain } }
  template: {}
`;

async function vm(args: string[]) {
  let out = "";
  let err = "";
  const code = await runCli([vmCommand], ["vm", ...args], {
    env: {},
    out: (t) => (out += t),
    err: (t) => (err += t),
    signal: new AbortController().signal,
  });
  return { code, out, err };
}

/** `vm bundle` for vms/ratings against the test daemon, plus `args`. */
function bundle(out: string, args: string[] = []) {
  return vm([
    "bundle",
    "--workload-group=vms/ratings",
    `--out=${out}`,
    `--data-dir=${dataDir}`,
    `--admin-addr=${admin}`,
    ...args,
  ]);
}

function envOf(path: string): Record<string, string> {
  const env = parseClusterEnv(readFileSync(path, "utf8"), path);
  return Object.fromEntries([...env].map(([k, v]) => [k, v.value]));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshd-agent-bundle-"));
  dataDir = join(dir, "data");
  mkdirSync(join(dir, "config"));
  writeFileSync(join(dir, "config", "groups.yaml"), GROUPS);
  const modules = [galleyModule, citadelModule];
  const { settings } = parseCommandLine(
    serveSettings(modules),
    [
      "--grpc-addr=127.0.0.1:0",
      "--admin-addr=127.0.0.1:0",
      "--webhook-addr=127.0.0.1:0",
      "--grpc-tls-addr=127.0.0.1:0",
      `--data-dir=${dataDir}`,
      `--config-dir=${join(dir, "config")}`,
      "--trust-domain=example.org",
      "--ca-server-ips=10.0.0.1",
      "--ca-server-dns-names=meshd,cp.example.org",
      "--shutdown-grace=1s",
    ],
    { command: "test", env: {} },
  );
  daemon = await startDaemon({ settings, modules, logger: createLogger({ write: () => {} }) });
  admin = daemon.adminAddr;
  for (let i = 0; i < 200 && !daemon.ready(); i++) await Bun.sleep(25);
  expect(daemon.ready()).toBe(true);
  rootPem = readFileSync(join(dataDir, "ca", "root-cert.pem"), "utf8");
});
afterAll(async () => {
  await daemon?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

describe("meshd vm bundle", () => {
  test("writes cluster.env, a single-use token, the roots, the unit and a README into a directory", async () => {
    const out = join(dir, "bundle");
    const r = await bundle(out, [
      "--service-account=ratings-sa",
      "--discovery-addr=10.0.0.1:15012",
      "--ca-addr=10.0.0.1:15010",
      "--token-ttl=2h",
    ]);
    expect(r.code).toBe(0);
    expect(r.err).toContain("bundle for vms/ratings (spiffe://example.org/ns/vms/sa/ratings-sa) written to");
    expect(statSync(out).mode & 0o777).toBe(0o700);
    expect(statSync(join(out, "token")).mode & 0o777).toBe(0o600);
    expect(envOf(join(out, "cluster.env"))).toEqual({
      CA_ADDR: "10.0.0.1:15012",
      MESHD_CA_ADDR: "10.0.0.1:15010",
      PILOT_ADDRESS: "10.0.0.1:15012",
      CONTROL_PLANE_AUTH_POLICY: "MUTUAL_TLS",
      POD_NAMESPACE: "vms",
      SERVICE_ACCOUNT: "ratings-sa",
      ISTIO_META_WORKLOAD_GROUP: "ratings",
      ISTIO_METAJSON_LABELS: '{"app":"ratings","version":"v1"}',
      ISTIO_META_NETWORK: "vm-net",
      TRUST_DOMAIN: "example.org",
      TOKEN_FILE: "/etc/meshd/token",
      CA_ROOT_CA: "/etc/meshd/root-cert.pem",
    });
    const token = readFileSync(join(out, "token"), "utf8").trim();
    const v = verifyToken(loadOrCreateTokenKey(dataDir), token, Date.now());
    expect(v.claims).toMatchObject({ ns: "vms", sa: "ratings-sa", wg: "ratings", single_use: true });
    expect(v.claims.exp - v.claims.iat).toBe(7200);
    expect(readFileSync(join(out, "root-cert.pem"), "utf8")).toBe(rootPem);
    expect(readFileSync(join(out, "meshd-agent.service"), "utf8")).toBe(agentUnit());
    expect(readFileSync(join(out, "README.md"), "utf8")).toContain("systemctl enable --now meshd-agent");
  });

  test("without flags: the template's service account, this host's address, and a warning that no binary is in it", async () => {
    const out = join(dir, "defaults");
    const r = await bundle(out);
    expect(r.code).toBe(0);
    expect(compiledExecutable()).toBeUndefined();
    expect(r.err).toContain(
      "warning: the bundle holds no meshd binary (this is not the compiled meshd): build it with `npm run build` and give --binary dist/meshd",
    );
    expect(envOf(join(out, "cluster.env"))).toMatchObject({
      SERVICE_ACCOUNT: "ratings-sa",
      PILOT_ADDRESS: `${defaultInstanceIp()}:15012`,
      CA_ADDR: `${defaultInstanceIp()}:15012`,
    });
    const readme = readFileSync(join(out, "README.md"), "utf8");
    expect(readme).toContain(
      "This bundle holds no meshd binary. Build it from meshd's source tree with `npm ci && npm run build`",
    );
    // A group whose template names no service account gets Istio's default, and any other is let through.
    const plain = await vm([
      "bundle",
      "--workload-group=vms/plain",
      `--out=${join(dir, "plain")}`,
      `--data-dir=${dataDir}`,
      `--admin-addr=${admin}`,
    ]);
    expect(plain.code).toBe(0);
    expect(envOf(join(dir, "plain", "cluster.env")).SERVICE_ACCOUNT).toBe("default");
  });

  test("writes a .tar.gz with the --binary as meshd (mode 0755) that tar extracts with the same files and modes", async () => {
    const out = join(dir, "vm.tar.gz");
    const binary = join(dir, "meshd-build");
    writeFileSync(binary, "#!/bin/sh\necho meshd\n");
    const r = await bundle(out, ["--discovery-addr=10.0.0.1:15012", `--binary=${binary}`]);
    expect(r.code).toBe(0);
    expect(r.err).not.toContain("warning");
    const x = join(dir, "extract");
    mkdirSync(x);
    const t = Bun.spawnSync(["tar", "-xzf", out, "-C", x]);
    expect(t.exitCode).toBe(0);
    const top = join(x, "meshd-vm-vms-ratings");
    expect(statSync(join(top, "token")).mode & 0o777).toBe(0o600);
    expect(statSync(join(top, "cluster.env")).mode & 0o777).toBe(0o644);
    expect(statSync(join(top, "meshd")).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(top, "meshd"), "utf8")).toBe("#!/bin/sh\necho meshd\n");
    expect(readFileSync(join(top, "root-cert.pem"), "utf8")).toBe(rootPem);
    expect(readFileSync(join(top, "cluster.env"), "utf8")).toContain("SERVICE_ACCOUNT=ratings-sa\n");
    const readme = readFileSync(join(top, "README.md"), "utf8");
    expect(readme).toContain("install -m 0755 meshd /usr/local/bin/meshd");
    expect(readme).not.toContain("holds no meshd binary");
    const list = Bun.spawnSync(["tar", "-tzf", out]).stdout.toString().trim().split("\n").sort();
    expect(list).toEqual([
      "meshd-vm-vms-ratings/",
      "meshd-vm-vms-ratings/README.md",
      "meshd-vm-vms-ratings/cluster.env",
      "meshd-vm-vms-ratings/meshd",
      "meshd-vm-vms-ratings/meshd-agent.service",
      "meshd-vm-vms-ratings/root-cert.pem",
      "meshd-vm-vms-ratings/token",
    ]);
    // Into a directory the binary is copied with the same mode.
    const d = join(dir, "with-binary");
    expect((await bundle(d, ["--discovery-addr=10.0.0.1:15012", `--binary=${binary}`])).code).toBe(0);
    expect(statSync(join(d, "meshd")).mode & 0o777).toBe(0o755);
    const missing = await bundle(join(dir, "x"), [`--binary=${join(dir, "nope")}`]);
    expect([missing.code, missing.err]).toEqual([
      2,
      `meshd vm bundle: --binary: ${join(dir, "nope")} is not a file\n`,
    ]);
  });

  test("refuses an address the CA's TLS certificate does not name, naming the flags that fix it", async () => {
    const served = join(dataDir, SERVER_CERT_FILE);
    const ip = await bundle(join(dir, "x"), ["--discovery-addr=10.0.0.2:15012"]);
    expect(ip.code).toBe(2);
    expect(ip.err).toBe(
      `meshd vm bundle: --discovery-addr 10.0.0.2:15012: the certificate meshd serve presents on its TLS port (${served}) ` +
        "does not name 10.0.0.2; it names " +
        ["meshd", "cp.example.org", "127.0.0.1", "::1", ...hostAddresses(), "10.0.0.1"].join(", ") +
        ". Add --ca-server-ips 10.0.0.2 to meshd serve's settings and restart it, " +
        "or give --discovery-addr an address the certificate names\n",
    );
    const dns = await bundle(join(dir, "x"), ["--discovery-addr=vms.example.org:15012"]);
    expect(dns.code).toBe(2);
    expect(dns.err).toContain("does not name vms.example.org");
    expect(dns.err).toContain("Add --ca-server-dns-names vms.example.org to meshd serve's settings");
    // The CA's own TLS address is checked too; with NONE the discovery address is plaintext and is not.
    const ca = await bundle(join(dir, "x"), [
      "--control-plane-auth=NONE",
      "--discovery-addr=10.0.0.9:15010",
      "--ca-tls-addr=10.0.0.3:15012",
    ]);
    expect(ca.code).toBe(2);
    expect(ca.err).toContain("meshd vm bundle: --ca-tls-addr 10.0.0.3:15012: the certificate");
    const names = await bundle(join(dir, "names"), ["--discovery-addr=cp.example.org:15012"]);
    expect(names.code).toBe(0);
    // Every replica in a list is checked; a list the certificate covers is written as given.
    const third = await bundle(join(dir, "x"), [
      "--discovery-addr=10.0.0.1:15012,cp.example.org:15012,10.0.0.4:15012",
    ]);
    expect(third.code).toBe(2);
    expect(third.err).toContain("meshd vm bundle: --discovery-addr 10.0.0.4:15012: the certificate");
    const list = await bundle(join(dir, "list"), ["--discovery-addr=10.0.0.1:15012, cp.example.org:15012"]);
    expect(list.code).toBe(0);
    expect(envOf(join(dir, "list", "cluster.env"))).toMatchObject({
      CA_ADDR: "10.0.0.1:15012,cp.example.org:15012",
      PILOT_ADDRESS: "10.0.0.1:15012,cp.example.org:15012",
    });
    const plaintext = await bundle(join(dir, "plaintext"), [
      "--control-plane-auth=NONE",
      "--discovery-addr=10.0.0.9:15010",
      "--ca-tls-addr=10.0.0.1:15012",
    ]);
    expect(plaintext.code).toBe(0);
  });

  test("without the daemon's record, checks against what a daemon with default settings would serve", async () => {
    const copy = join(dir, "data-without-record");
    cpSync(dataDir, copy, { recursive: true, filter: (src) => !src.endsWith(SERVER_CERT_FILE) });
    const r = await vm([
      "bundle",
      "--workload-group=vms/ratings",
      `--out=${join(dir, "x")}`,
      `--data-dir=${copy}`,
      `--admin-addr=${admin}`,
      "--discovery-addr=10.0.0.1:15012",
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(
      `the certificate meshd serve would present with default settings (it has not recorded one in ${
        join(copy, SERVER_CERT_FILE)
      } yet) does not name 10.0.0.1; it names meshd, meshd.istio-system.svc, localhost, 127.0.0.1, ::1`,
    );
    const local = await vm([
      "bundle",
      "--workload-group=vms/ratings",
      `--out=${join(dir, "local")}`,
      `--data-dir=${copy}`,
      `--admin-addr=${admin}`,
    ]);
    expect(local.code).toBe(0);
  });

  test("refuses a service account other than the template's, and a group the daemon does not have", async () => {
    const other = await bundle(join(dir, "x"), [
      "--discovery-addr=10.0.0.1:15012",
      "--service-account=default",
    ]);
    expect([other.code, other.err]).toEqual([
      2,
      "meshd vm bundle: --service-account default does not match WorkloadGroup vms/ratings, whose " +
      "template.serviceAccount is ratings-sa; pilot would not register the VM (leave --service-account out to use ratings-sa)\n",
    ]);
    const missing = await vm([
      "bundle",
      "--workload-group=vms/reviews",
      `--out=${join(dir, "x")}`,
      `--data-dir=${dataDir}`,
      `--admin-addr=${admin}`,
      "--discovery-addr=10.0.0.1:15012",
    ]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain(
      `meshd vm bundle: --workload-group vms/reviews: the config of meshd at ${admin} has no accepted WorkloadGroup vms/reviews`,
    );
  });

  test("without a daemon to ask: an error unless --service-account is given, then a warning", async () => {
    // A port nothing listens on: the daemon's admin port once it has stopped.
    const stopped = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const gone = `127.0.0.1:${stopped.port}`;
    stopped.stop(true);
    const base = [
      "bundle",
      "--workload-group=vms/ratings",
      `--data-dir=${dataDir}`,
      `--admin-addr=${gone}`,
      "--discovery-addr=10.0.0.1:15012",
    ];
    const r = await vm([...base, `--out=${join(dir, "x")}`]);
    expect(r.code).toBe(2);
    expect(r.err).toStartWith(
      `meshd vm bundle: cannot read WorkloadGroup vms/ratings (--admin-addr): cannot reach meshd at ${gone}`,
    );
    expect(r.err).toContain("give --service-account");
    const w = await vm([...base, `--out=${join(dir, "explicit")}`, "--service-account=ratings-sa"]);
    expect(w.code).toBe(0);
    expect(w.err).toContain("is not checked against the group's template");
  });

  test("refuses what it cannot do, saying why", async () => {
    const r1 = await vm([
      "bundle",
      "--workload-group=ratings",
      `--out=${join(dir, "x")}`,
      `--data-dir=${dataDir}`,
    ]);
    expect([r1.code, r1.err]).toEqual([
      2,
      'meshd vm bundle: --workload-group: want NAMESPACE/NAME, got "ratings"\n',
    ]);
    const empty = join(dir, "empty-data");
    mkdirSync(empty);
    const r2 = await vm([
      "bundle",
      "--workload-group=vms/r",
      `--out=${join(dir, "x")}`,
      `--data-dir=${empty}`,
    ]);
    expect(r2.code).toBe(2);
    expect(r2.err).toContain(`--data-dir: ${join(empty, "ca", "root-cert.pem")} does not exist`);
    writeFileSync(join(dir, "roots.pem"), rootPem);
    const r3 = await vm([
      "bundle",
      "--workload-group=vms/r",
      `--out=${join(dir, "x")}`,
      `--data-dir=${empty}`,
      `--root-cert=${join(dir, "roots.pem")}`,
    ]);
    expect(r3.code).toBe(2);
    expect(r3.err).toContain("token-signing-key.pem does not exist; run this with the daemon's --data-dir");
    const r4 = await vm([
      "bundle",
      "--workload-group=vms/Bad_Name",
      `--out=${join(dir, "x")}`,
      `--data-dir=${dataDir}`,
    ]);
    expect(r4.code).toBe(2);
    expect(r4.err).toContain(
      'meshd vm bundle: --workload-group: workload group "Bad_Name" must be a DNS-1123',
    );
    const r5 = await vm(["make", "--workload-group=vms/r"]);
    expect(r5.code).toBe(2);
    expect(r5.err).toContain("unknown subcommand make");
  });

  test("config/systemd/meshd-agent.service is the unit the bundle ships", () => {
    expect(readFileSync(join(ROOT, "config/systemd/meshd-agent.service"), "utf8")).toBe(agentUnit());
  });
});

describe("compiledExecutable()", () => {
  test("is the executable in a binary made by bun build --compile, and undefined under the runtime", () => {
    const d = mkdtempSync(join(tmpdir(), "meshd-compiled-"));
    try {
      const entry = join(d, "entry.ts");
      writeFileSync(
        entry,
        `import { compiledExecutable } from ${JSON.stringify(join(ROOT, "mod/shared/executable.ts"))};\n` +
          "console.log(String(compiledExecutable()));\n",
      );
      const build = Bun.spawnSync([
        process.execPath,
        "build",
        entry,
        "--compile",
        "--outfile",
        join(d, "probe"),
      ]);
      expect(build.exitCode).toBe(0);
      // Renamed to "bun": the name of the executable does not matter.
      const renamed = join(d, "bun");
      cpSync(join(d, "probe"), renamed);
      expect(Bun.spawnSync([renamed]).stdout.toString().trim()).toBe(renamed);
      expect(Bun.spawnSync([process.execPath, entry]).stdout.toString().trim()).toBe("undefined");
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe("tar writer", () => {
  test("long names use the ustar prefix field; the checksum is valid; gzip output extracts", () => {
    const long = `${"d".repeat(120)}/${"f".repeat(90)}`;
    const raw = tar([{ name: long, data: "x", mode: 0o640 }], 0);
    const h = raw.subarray(0, 512);
    const sum = [...h].reduce((s, b, i) => s + (i >= 148 && i < 156 ? 32 : b), 0);
    expect(parseInt(new TextDecoder().decode(h.subarray(148, 154)), 8)).toBe(sum);
    const d = mkdtempSync(join(tmpdir(), "meshd-tar-"));
    try {
      writeFileSync(join(d, "a.tgz"), tarGz([{ name: long, data: "x", mode: 0o640 }]));
      expect(Bun.spawnSync(["tar", "-xzf", join(d, "a.tgz"), "-C", d]).exitCode).toBe(0);
      expect(readFileSync(join(d, long), "utf8")).toBe("x");
      expect(statSync(join(d, long)).mode & 0o777).toBe(0o640);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
    expect(() => tar([{ name: "x".repeat(300), data: "" }])).toThrow(/too long/);
  });
});
