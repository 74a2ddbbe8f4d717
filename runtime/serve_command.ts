/**
 * `meshd serve`: run the control-plane modules.
 */
import type { Command } from "../mod/cli/command.ts";
import type { SettingSpec } from "../mod/cli/setting.ts";
import { createLogger, type LogLevel } from "../mod/shared/logger.ts";
import { MODULES } from "./catalogue.ts";
import { DAEMON_SETTINGS, startDaemon } from "./daemon.ts";
import type { ModuleDefinition } from "../mod/runtime/module.ts";

/** `--modules`, whose values are the catalogue's names. */
export function modulesSetting(catalogue: readonly ModuleDefinition[]): SettingSpec {
  const names = catalogue.map((m) => m.name);
  return {
    name: "modules",
    kind: { type: "list", values: names },
    default: names,
    help: `modules to run (${names.join(", ") || "none built"})`,
  };
}

/** The named modules plus every module they require, in catalogue order. */
export function selectModules(
  catalogue: readonly ModuleDefinition[],
  names: readonly string[],
): ModuleDefinition[] {
  const wanted = new Set<string>();
  const add = (name: string) => {
    if (wanted.has(name)) return;
    wanted.add(name);
    for (const r of catalogue.find((m) => m.name === name)?.requires ?? []) add(r);
  };
  names.forEach(add);
  return catalogue.filter((m) => wanted.has(m.name));
}

/** Settings of `meshd serve` with a given catalogue: the daemon's, then each module's. */
export function serveSettings(catalogue: readonly ModuleDefinition[]): SettingSpec[] {
  const seen = new Set<string>();
  const all = [modulesSetting(catalogue), ...DAEMON_SETTINGS, ...catalogue.flatMap((m) => m.settings)];
  return all.filter((s) => !seen.has(s.name) && seen.add(s.name));
}

/** Builds the serve command over a catalogue of modules (tests pass their own). */
export function createServeCommand(catalogue: readonly ModuleDefinition[] = MODULES): Command {
  return {
    name: "serve",
    summary: "run the control plane (all modules, or those named by --modules)",
    usage: "meshd serve [flags]",
    description: `Modules: ${catalogue.map((m) => `${m.name} (${m.summary})`).join("; ") || "none"}.`,
    settings: () => serveSettings(catalogue),
    async run(inv) {
      const s = inv.settings;
      const logger = createLogger({
        level: s.string("log-level") as LogLevel,
        format: s.string("log-format") as "auto" | "json" | "text",
      });
      const modules = selectModules(catalogue, s.list("modules"));
      const daemon = await startDaemon({ settings: s, modules, logger });
      if (!inv.signal.aborted) {
        await new Promise<void>((resolve) =>
          inv.signal.addEventListener("abort", () => resolve(), { once: true })
        );
      }
      await daemon.shutdown();
      return 0;
    },
  };
}
