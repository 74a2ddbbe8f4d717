/**
 * meshd: CLI wiring only. Commands come from their modules; signals end the process.
 * Each command's module is loaded only when that command runs, so `meshd version` does not pay
 * for loading pilot's or citadel's protobuf descriptors.
 */
import type { Command } from "./mod/cli/command.ts";
import { runCli } from "./mod/cli/run.ts";

/** Every command, by name, in the order `meshd help` lists them. */
const COMMANDS: ReadonlyArray<readonly [string, () => Promise<Command>]> = [
  ["serve", async () => (await import("./runtime/serve_command.ts")).createServeCommand()],
  ["validate", async () => (await import("./mod/galley/cli.ts")).validateCommand],
  ["analyze", async () => (await import("./mod/galley/cli.ts")).analyzeCommand],
  ["config-status", async () => (await import("./mod/galley/cli.ts")).configStatusCommand],
  ["config", async () => (await import("./mod/galley/config_command.ts")).configCommand],
  ["proxy-status", async () => (await import("./mod/pilot/cli.ts")).proxyStatusCommand],
  ["proxy-config", async () => (await import("./mod/pilot/cli.ts")).proxyConfigCommand],
  ["simulate", async () => (await import("./mod/pilot/simulate/command.ts")).simulateCommand],
  ["token", async () => (await import("./mod/citadel/cli.ts")).tokenCommand],
  ["ca", async () => (await import("./mod/citadel/cli.ts")).caCommand],
  ["agent", async () => (await import("./mod/agent/mod.ts")).agentCommand],
  ["vm", async () => (await import("./mod/agent/mod.ts")).vmCommand],
  ["dashboard", async () => (await import("./mod/console/dashboard_command.ts")).dashboardCommand],
  ["version", async () => (await import("./mod/cli/version_command.ts")).versionCommand],
];

const argv = process.argv.slice(2);
const wanted = argv[0] === "--version" ? "version" : argv[0];
const one = COMMANDS.find(([name]) => name === wanted);
const commands: readonly Command[] = one
  ? [await one[1]()]
  : await Promise.all(COMMANDS.map(([, load]) => load()));

const stop = new AbortController();
let signals = 0;
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  process.on(sig, () => {
    if (++signals > 1) process.exit(130);
    stop.abort();
  });
}

const code = await runCli(commands, argv, {
  env: process.env,
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  signal: stop.signal,
});
process.exit(code);
