/**
 * meshd: CLI wiring only. Commands come from their modules; signals end the process.
 */
import { agentCommand, vmCommand } from "./mod/agent/mod.ts";
import { caCommand, tokenCommand } from "./mod/citadel/mod.ts";
import type { Command } from "./mod/cli/command.ts";
import { runCli } from "./mod/cli/run.ts";
import { versionCommand } from "./mod/cli/version_command.ts";
import { analyzeCommand, configStatusCommand, validateCommand } from "./mod/galley/mod.ts";
import { proxyConfigCommand, proxyStatusCommand, simulateCommand } from "./mod/pilot/mod.ts";
import { createServeCommand } from "./mod/runtime/serve_command.ts";

const commands: readonly Command[] = [
  createServeCommand(),
  validateCommand,
  analyzeCommand,
  configStatusCommand,
  proxyStatusCommand,
  proxyConfigCommand,
  simulateCommand,
  tokenCommand,
  caCommand,
  agentCommand,
  vmCommand,
  versionCommand,
];

const stop = new AbortController();
let signals = 0;
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  process.on(sig, () => {
    if (++signals > 1) process.exit(130);
    stop.abort();
  });
}

const code = await runCli(commands, process.argv.slice(2), {
  env: process.env,
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  signal: stop.signal,
});
process.exit(code);
