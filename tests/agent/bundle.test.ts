import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { agentUnit, vmCommand } from "../../mod/agent/bundle_command.ts";
import { parseClusterEnv } from "../../mod/agent/settings.ts";
import { tar, tarGz } from "../../mod/agent/tar.ts";
import { initCa } from "../../mod/citadel/ca_store.ts";
import { loadOrCreateTokenKey, verifyToken } from "../../mod/citadel/mod.ts";
import { runCli } from "../../mod/cli/run.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";

const ROOT = resolve(import.meta.dir, "../..");
let dir: string;
let dataDir: string;
let rootPem: string;

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

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshd-agent-bundle-"));
  dataDir = join(dir, "data");
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // The real CA store: a self-signed root in <data-dir>/ca, its bundle in ca/root-cert.pem.
  const store = await initCa(
    { dataDir, keyType: "ec-p256", clock: systemClock, logger: createLogger({ write: () => {} }) },
    "example.org",
  );
  rootPem = store.current().trustBundle;
  expect(readFileSync(join(dataDir, "ca", "root-cert.pem"), "utf8")).toBe(rootPem);
  writeFileSync(join(dataDir, "trust-domain"), "example.org\n");
  loadOrCreateTokenKey(dataDir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("meshd vm bundle", () => {
  test("writes cluster.env, a single-use token, the roots, the unit and a README into a directory", async () => {
    const out = join(dir, "bundle");
    const r = await vm([
      "bundle",
      "--workload-group=vms/ratings",
      `--out=${out}`,
      `--data-dir=${dataDir}`,
      "--service-account=ratings-sa",
      "--discovery-addr=10.0.0.1:15012",
      "--ca-addr=10.0.0.1:15010",
      "--token-ttl=2h",
    ]);
    expect(r.code).toBe(0);
    expect(r.err).toContain("bundle for vms/ratings (spiffe://example.org/ns/vms/sa/ratings-sa) written to");
    expect(statSync(out).mode & 0o777).toBe(0o700);
    expect(statSync(join(out, "token")).mode & 0o777).toBe(0o600);
    const env = parseClusterEnv(readFileSync(join(out, "cluster.env"), "utf8"), "cluster.env");
    expect(Object.fromEntries([...env].map(([k, v]) => [k, v.value]))).toEqual({
      CA_ADDR: "10.0.0.1:15012",
      MESHD_CA_ADDR: "10.0.0.1:15010",
      PILOT_ADDRESS: "10.0.0.1:15012",
      CONTROL_PLANE_AUTH_POLICY: "MUTUAL_TLS",
      POD_NAMESPACE: "vms",
      SERVICE_ACCOUNT: "ratings-sa",
      ISTIO_META_WORKLOAD_GROUP: "ratings",
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

  test("writes a .tar.gz that tar extracts with the same files and modes", async () => {
    const out = join(dir, "vm.tar.gz");
    const r = await vm([
      "bundle",
      "--workload-group=vms/ratings",
      `--out=${out}`,
      `--data-dir=${dataDir}`,
      "--discovery-addr=10.0.0.1:15012",
    ]);
    expect(r.code).toBe(0);
    const x = join(dir, "extract");
    mkdirSync(x);
    const t = Bun.spawnSync(["tar", "-xzf", out, "-C", x]);
    expect(t.exitCode).toBe(0);
    const top = join(x, "meshd-vm-vms-ratings");
    expect(statSync(join(top, "token")).mode & 0o777).toBe(0o600);
    expect(statSync(join(top, "cluster.env")).mode & 0o777).toBe(0o644);
    expect(readFileSync(join(top, "root-cert.pem"), "utf8")).toBe(rootPem);
    expect(readFileSync(join(top, "cluster.env"), "utf8")).toContain("SERVICE_ACCOUNT=default\n");
    const list = Bun.spawnSync(["tar", "-tzf", out]).stdout.toString().trim().split("\n").sort();
    expect(list).toEqual([
      "meshd-vm-vms-ratings/",
      "meshd-vm-vms-ratings/README.md",
      "meshd-vm-vms-ratings/cluster.env",
      "meshd-vm-vms-ratings/meshd-agent.service",
      "meshd-vm-vms-ratings/root-cert.pem",
      "meshd-vm-vms-ratings/token",
    ]);
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
    expect(r4.err).toContain("DNS-1123");
    const r5 = await vm(["make", "--workload-group=vms/r"]);
    expect(r5.code).toBe(2);
    expect(r5.err).toContain("unknown subcommand make");
  });

  test("config/systemd/meshd-agent.service is the unit the bundle ships", () => {
    expect(readFileSync(join(ROOT, "config/systemd/meshd-agent.service"), "utf8")).toBe(agentUnit());
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
