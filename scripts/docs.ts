/**
 * Prints the Markdown settings table of a command, as README.md carries it.
 * Usage: bun scripts/docs.ts serve
 */
import { renderSettingsTable } from "../mod/cli/command.ts";
import { CONFIG_SETTING } from "../mod/cli/flags.ts";
import { createServeCommand } from "../runtime/serve_command.ts";

/** The settings table of `meshd serve`, as README.md must carry it. */
export function serveSettingsTable(): string {
  return renderSettingsTable([...createServeCommand().settings(), CONFIG_SETTING]);
}

if (import.meta.main) console.log(serveSettingsTable());
