import { describe, expect, test } from "bun:test";
import type { Command } from "../../mod/cli/command.ts";
import { runCli } from "../../mod/cli/run.ts";
import { versionCommand } from "../../mod/cli/version_command.ts";
import { createServeCommand } from "../../runtime/serve_command.ts";

const commands: Command[] = [createServeCommand(), versionCommand];

async function run(argv: string[], env: Record<string, string> = {}) {
  let out = "";
  let err = "";
  const code = await runCli(commands, argv, {
    env,
    out: (t) => (out += t),
    err: (t) => (err += t),
    signal: new AbortController().signal,
  });
  return { code, out, err };
}

describe("runCli()", () => {
  test("an unknown flag exits 2 with one line naming it", async () => {
    const r = await run(["serve", "--admin-adr", "127.0.0.1:0"]);
    expect(r.code).toBe(2);
    expect(r.err).toBe("meshd serve: unknown flag --admin-adr (did you mean --admin-addr?)\n");
  });

  test("a bad value exits 2", async () => {
    const r = await run(["serve", "--shutdown-grace", "-1s"]);
    expect(r.code).toBe(2);
    expect(r.err.trim().split("\n")).toHaveLength(1);
    expect(r.err).toContain("--shutdown-grace");
  });

  test("an unknown command exits 2 and suggests", async () => {
    const r = await run(["serv"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("unknown command serv (did you mean serve?)");
  });

  test("every command has --help listing its flags", async () => {
    for (const c of commands) {
      const r = await run([c.name, "--help"]);
      expect(r.code).toBe(0);
      expect(r.out).toContain(`Usage: ${c.usage}`);
      expect(r.out).toContain("--config PATH");
    }
    const serve = await run(["help", "serve"]);
    expect(serve.out).toContain("--grpc-addr HOST:PORT");
    expect(serve.out).toContain("(default 127.0.0.1:15014)");
  });

  test("help lists the commands", async () => {
    const r = await run(["help"]);
    expect(r.code).toBe(0);
    for (const c of commands) expect(r.out).toContain(`  ${c.name}`);
  });

  test("version prints JSON with -o json", async () => {
    const r = await run(["version", "-o", "json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).version).toMatch(/^\d+\.\d+\.\d+/);
  });

  test("extra arguments are refused", async () => {
    const r = await run(["version", "extra"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("unexpected argument extra");
  });
});
