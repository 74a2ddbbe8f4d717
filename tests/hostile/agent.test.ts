/**
 * `meshd agent` as a real process against the real CA (tests/agent/_citadel.ts) with settings
 * that cannot work: it must exit with code 1 and exactly one line saying which setting to change,
 * instead of retrying for ever under systemd; failures that pass by themselves (the CA not
 * listening) are retried and the agent stays up.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentProcess, startAgentProcess } from "../agent/_agent_proc.ts";
import { type Citadel, startCitadel } from "../agent/_citadel.ts";
import { eventually } from "../e2e/_meshd.ts";

let ca: Citadel;
let other: Citadel;
let dir: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  ca = await startCitadel();
  other = await startCitadel();
  dir = mkdtempSync(join(tmpdir(), "meshd-hostile-agent-"));
  writeFileSync(join(dir, "root.pem"), ca.rootPem);
  writeFileSync(join(dir, "other-root.pem"), other.rootPem);
}, 20_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await ca.close();
  await other.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts an agent with its own directories under `name`, a token file if `token` is given, and `extra`. */
function agent(name: string, token: string | undefined, extra: string[]): AgentProcess {
  const base = join(dir, name);
  mkdirSync(base, { recursive: true });
  const args = [
    "--namespace=vms",
    "--service-account=app",
    "--instance-ip=127.0.0.1",
    `--output-dir=${join(base, "out")}`,
    `--data-dir=${join(base, "data")}`,
    ...extra,
  ];
  if (token !== undefined) {
    writeFileSync(join(base, "token"), token);
    args.push(`--token-file=${join(base, "token")}`);
  }
  const a = startAgentProcess(args);
  agents.push(a);
  return a;
}

/** Waits for the agent to exit by itself; returns its exit code and its error lines. */
async function outcome(a: AgentProcess): Promise<{ code: number | undefined; errors: string[] }> {
  const code = await a.exited(20_000);
  const errors = a.lines.filter((l) => {
    try {
      return (JSON.parse(l) as { level?: string }).level === "error";
    } catch {
      return l.trim() !== ""; // a line that is not a log record explains too
    }
  });
  return { code, errors };
}

/** No line of the agent's log speaks of retrying. */
const noRetries = (a: AgentProcess) => a.lines.filter((l) => l.includes("retrying"));

describe("meshd agent with settings that cannot work", () => {
  test("no token and no stored certificate: exit 1, one line naming --token-file", async () => {
    const a = agent("no-token", undefined, [`--ca-addr=${ca.plainAddr}`, `--ca-tls-addr=${ca.tlsAddr}`]);
    const { code, errors } = await outcome(a);
    expect(code).toBe(1);
    expect(errors.length).toBe(1);
    expect(errors[0]).toContain("no --token-file (TOKEN_FILE) to request one with");
    expect(noRetries(a)).toEqual([]);
  }, 30_000);

  test("a token already redeemed: exit 1, one line naming --token-file and the CA's reason", async () => {
    const token = ca.token("vms", "app", { singleUse: true });
    const first = agent("redeem", token, [`--ca-addr=${ca.plainAddr}`, `--ca-tls-addr=${ca.tlsAddr}`]);
    await first.waitFor((l) => l.msg === "certificate issued");
    expect(await first.stop()).toBe(0);
    const calls = ca.calls.length;
    const a = agent("redeemed", token, [`--ca-addr=${ca.plainAddr}`, `--ca-tls-addr=${ca.tlsAddr}`]);
    const { code, errors } = await outcome(a);
    expect(code).toBe(1);
    expect(errors.length).toBe(1);
    expect(errors[0]).toContain(
      `refused the token in --token-file (TOKEN_FILE) ${join(dir, "redeemed", "token")}`,
    );
    expect(errors[0]).toContain("this single-use token was already redeemed");
    expect(noRetries(a)).toEqual([]);
    expect(ca.calls.length - calls).toBe(1);
  }, 30_000);

  test("a token signed by another CA's key: exit 1, one line naming --token-file", async () => {
    const a = agent("foreign-token", other.token("vms", "app"), [
      `--ca-addr=${ca.plainAddr}`,
      `--ca-tls-addr=${ca.tlsAddr}`,
    ]);
    const { code, errors } = await outcome(a);
    expect(code).toBe(1);
    expect(errors.length).toBe(1);
    expect(errors[0]).toContain("refused the token in --token-file (TOKEN_FILE)");
    expect(errors[0]).toContain("token is signed by an unknown key");
  }, 30_000);

  test(
    "TLS spoken to the plaintext port: exit 1, one line saying it is plaintext and naming --ca-tls-addr",
    async () => {
      const a = agent("tls-to-plain", ca.token("vms", "app"), [
        `--ca-tls-addr=${ca.plainAddr}`,
        `--root-cert=${join(dir, "root.pem")}`,
      ]);
      const { code, errors } = await outcome(a);
      expect(code).toBe(1);
      expect(errors.length).toBe(1);
      expect(errors[0]).toContain(`${ca.plainAddr} is plaintext, not TLS`);
      expect(errors[0]).toContain("set --ca-tls-addr (CA_ADDR) to the TLS port");
      expect(errors[0]).not.toContain("retrying");
      expect(noRetries(a)).toEqual([]);
    },
    30_000,
  );

  test(
    "a --root-cert that does not sign the CA's certificate: exit 1, one line naming --root-cert",
    async () => {
      const a = agent("wrong-root", ca.token("vms", "app"), [
        `--ca-tls-addr=${ca.tlsAddr}`,
        `--root-cert=${join(dir, "other-root.pem")}`,
      ]);
      const { code, errors } = await outcome(a);
      expect(code).toBe(1);
      expect(errors.length).toBe(1);
      expect(errors[0]).toContain(
        `the server certificate of ${ca.tlsAddr} is not signed by --root-cert (CA_ROOT_CA)`,
      );
      expect(errors[0]).toContain("set --root-cert (CA_ROOT_CA) to this mesh's root certificate");
    },
    30_000,
  );

  test(
    "a --ca-server-name the CA's certificate does not carry: exit 1, one line naming --ca-server-name",
    async () => {
      const a = agent("wrong-name", ca.token("vms", "app"), [
        `--ca-tls-addr=${ca.tlsAddr}`,
        `--root-cert=${join(dir, "root.pem")}`,
        "--ca-server-name=meshd.example",
      ]);
      const { code, errors } = await outcome(a);
      expect(code).toBe(1);
      expect(errors.length).toBe(1);
      expect(errors[0]).toContain("set --ca-server-name (MESHD_CA_SERVER_NAME) to one of its names");
    },
    30_000,
  );

  test(
    "mutual TLS to a plaintext --discovery-addr: exit 1 once the certificate is in, naming --discovery-addr",
    async () => {
      const a = agent("plain-discovery", ca.token("vms", "app"), [
        `--ca-tls-addr=${ca.tlsAddr}`,
        `--root-cert=${join(dir, "root.pem")}`,
        `--discovery-addr=${ca.plainAddr}`,
        "--workload-group=ratings",
      ]);
      const { code, errors } = await outcome(a);
      expect(code).toBe(1);
      expect(a.logs.some((l) => l.msg === "certificate issued")).toBe(true);
      expect(errors.length).toBe(1);
      expect(errors[0]).toContain(
        `${ca.plainAddr} is plaintext, not TLS (error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER): ` +
          "set --discovery-addr (PILOT_ADDRESS) to the TLS port",
      );
      expect(noRetries(a)).toEqual([]);
    },
    30_000,
  );

  test("an unknown flag: exit 2, one line naming it", async () => {
    const a = agent("usage", undefined, ["--ca-tls-adr=127.0.0.1:1"]);
    const { code, errors } = await outcome(a);
    expect(code).toBe(2);
    expect(errors.length).toBe(1);
    expect(errors[0]).toContain("--ca-tls-adr");
  }, 30_000);
});

describe("meshd agent while the CA cannot be reached", () => {
  test("connection refused is retried with backoff; the agent stays up and stops with 0", async () => {
    // A port nothing listens on: bound, then closed.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", () => r()));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const a = agent("unreachable", ca.token("vms", "app"), [
      `--ca-tls-addr=127.0.0.1:${port}`,
      `--root-cert=${join(dir, "root.pem")}`,
    ]);
    expect(
      await eventually(
        () => a.logs.filter((l) => l.msg === "certificate request failed; retrying").length >= 2,
        15_000,
      ),
    ).toBe(true);
    const retry = a.logs.find((l) => l.msg === "certificate request failed; retrying")!;
    expect(retry.level).toBe("warn");
    expect(String(retry.err)).toContain("ECONNREFUSED");
    expect(a.proc.exitCode).toBeNull();
    expect(a.logs.some((l) => l.level === "error")).toBe(false);
    expect(await a.stop()).toBe(0);
  }, 30_000);
});
