/**
 * `meshd dashboard`: prints the address of a running meshd's console, checks that it answers, and
 * opens it in a browser when one is at hand (a graphical session and `xdg-open`), as `istioctl
 * dashboard` does. Beyond loopback the console wants the admin token; with `--data-dir` the
 * address printed carries it (`/ui/?token=...`, which the console turns into a cookie).
 *
 * @module
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { readAdminToken } from "../admin/mod.ts";
import type { Command } from "../cli/command.ts";
import { type SettingSpec, splitHostPort } from "../cli/setting.ts";
import { errorMessage, UsageError } from "../shared/errors.ts";
import { isLoopbackHost } from "./auth.ts";

const SETTINGS: readonly SettingSpec[] = [
  {
    name: "admin-addr",
    kind: { type: "addr" },
    default: "127.0.0.1:15014",
    help: "admin address of the daemon",
  },
  {
    name: "browser",
    kind: { type: "bool" },
    default: true,
    help:
      "open the console with xdg-open when a graphical session is at hand (--browser=false: only print it)",
  },
  {
    name: "data-dir",
    kind: { type: "path" },
    default: "",
    help:
      "the daemon's --data-dir: its admin token goes into the address when the console is beyond loopback",
  },
];

/** The console's address for an admin address (HOST:PORT; 0.0.0.0 and :: are reached on loopback). */
export function consoleUrl(adminAddr: string, token?: string): string {
  const hp = splitHostPort(adminAddr);
  if (hp === undefined) throw new UsageError(`meshd dashboard: --admin-addr ${adminAddr}: want HOST:PORT`);
  const host = hp.host === "" || hp.host === "0.0.0.0" ? "127.0.0.1" : hp.host === "::" ? "::1" : hp.host;
  const h = host.includes(":") ? `[${host}]` : host;
  return `http://${h}:${hp.port}/ui/${token ? `?token=${encodeURIComponent(token)}` : ""}`;
}

/** Where `name` is on `PATH`, if anywhere. */
export function onPath(name: string, path: string | undefined): string | undefined {
  for (const dir of (path ?? "").split(delimiter)) {
    if (dir !== "" && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Whether a browser can be opened: a graphical session and xdg-open on PATH. */
export function browserAtHand(env: Readonly<Record<string, string | undefined>>): string | undefined {
  if (!env.DISPLAY && !env.WAYLAND_DISPLAY) return undefined;
  return onPath("xdg-open", env.PATH);
}

/** `meshd dashboard`. */
export const dashboardCommand: Command = {
  name: "dashboard",
  summary: "print the address of a running meshd's web console (and open it in a browser)",
  usage: "meshd dashboard [--admin-addr HOST:PORT] [--browser=false] [--data-dir DIR]",
  description:
    "Checks that the console at --admin-addr answers, prints its address, and opens it with xdg-open " +
    "when DISPLAY or WAYLAND_DISPLAY is set. Exit status 1 when the console does not answer.",
  settings: () => SETTINGS,
  args: { min: 0, max: 0, name: "" },
  async run(inv) {
    const addr = inv.settings.string("admin-addr");
    const hp = splitHostPort(addr);
    const dataDir = inv.settings.string("data-dir");
    const remote = hp !== undefined && hp.host !== "" && hp.host !== "0.0.0.0" && hp.host !== "::" &&
      !isLoopbackHost(hp.host);
    let token: string | undefined;
    if (remote && dataDir !== "") token = readAdminToken(dataDir);
    const url = consoleUrl(addr, token);
    const probe = consoleUrl(addr);
    try {
      const res = await fetch(probe, {
        signal: AbortSignal.any([inv.signal, AbortSignal.timeout(5000)]),
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
      if (res.status !== 200 && !(res.status === 401 && remote)) {
        inv.err(
          `meshd dashboard: ${probe} answered HTTP ${res.status}: ${(await res.text()).slice(0, 200)}\n`,
        );
        return 1;
      }
    } catch (err) {
      inv.err(
        `meshd dashboard: cannot reach meshd's console at ${probe} (--admin-addr): ${errorMessage(err)}\n`,
      );
      return 1;
    }
    inv.out(`${url}\n`);
    const opener = inv.settings.bool("browser") ? browserAtHand(process.env) : undefined;
    if (opener !== undefined) {
      spawn(opener, [url], { stdio: "ignore", detached: true }).on("error", () => {}).unref();
    }
    return 0;
  },
};
