/** `meshd version`. */
import type { Command } from "./command.ts";
import { versionInfo } from "../shared/version.ts";

/** Prints the version, runtime and platform. */
export const versionCommand: Command = {
  name: "version",
  summary: "print the version",
  usage: "meshd version [-o text|json]",
  settings: () => [
    {
      name: "output",
      short: "o",
      kind: { type: "enum", values: ["text", "json"] },
      default: "text",
      help: "output format",
      flagOnly: true,
    },
  ],
  args: { min: 0, max: 0, name: "" },
  run(inv) {
    const v = versionInfo();
    inv.out(
      inv.settings.string("output") === "json"
        ? JSON.stringify(v) + "\n"
        : `meshd ${v.version} (${v.runtime}, ${v.platform})\n`,
    );
    return Promise.resolve(0);
  },
};
