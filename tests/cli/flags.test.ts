import { describe, expect, test } from "bun:test";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import type { SettingSpec } from "../../mod/cli/setting.ts";
import { UsageError } from "../../mod/shared/errors.ts";

const specs: SettingSpec[] = [
  { name: "grpc-addr", kind: { type: "addr" }, default: "0.0.0.0:15010", help: "gRPC address" },
  { name: "shutdown-grace", kind: { type: "duration" }, default: 10_000, help: "grace" },
  { name: "log-level", kind: { type: "enum", values: ["debug", "info"] }, default: "info", help: "level" },
  { name: "verbose", kind: { type: "bool" }, default: false, help: "more" },
  { name: "workers", kind: { type: "int", min: 1, max: 8 }, help: "workers" },
  {
    name: "modules",
    kind: { type: "list", values: ["galley", "pilot"] },
    default: ["galley", "pilot"],
    help: "modules",
  },
];

function parse(argv: string[], env: Record<string, string> = {}, file?: string) {
  return parseCommandLine(specs, argv, { command: "meshd serve", env, readFile: () => file ?? "" });
}

function usageError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as UsageError).exitCode).toBe(2);
    return (e as Error).message;
  }
  throw new Error("expected a UsageError");
}

describe("parseCommandLine()", () => {
  test("applies defaults and converts durations to milliseconds", () => {
    const { settings, args } = parse(["--shutdown-grace", "1m30s", "file.yaml"]);
    expect(settings.string("grpc-addr")).toBe("0.0.0.0:15010");
    expect(settings.number("shutdown-grace")).toBe(90_000);
    expect(settings.source("shutdown-grace")).toBe("flag");
    expect(settings.source("grpc-addr")).toBe("default");
    expect(args).toEqual(["file.yaml"]);
  });

  test("accepts --flag=value, bare booleans and lists", () => {
    const { settings } = parse(["--grpc-addr=[::1]:0", "--verbose", "--modules", "pilot"]);
    expect(settings.string("grpc-addr")).toBe("[::1]:0");
    expect(settings.bool("verbose")).toBe(true);
    expect(settings.list("modules")).toEqual(["pilot"]);
  });

  test("a list flag given again adds to the list; the environment does not add to flags", () => {
    const { settings } = parse(["--modules", "pilot", "--modules=galley"], { MESHD_MODULES: "pilot" });
    expect(settings.list("modules")).toEqual(["pilot", "galley"]);
    expect(parse([], { MESHD_MODULES: "galley,pilot" }).settings.list("modules")).toEqual([
      "galley",
      "pilot",
    ]);
    expect(parse(["--workers", "2", "--workers", "3"]).settings.number("workers")).toBe(3);
  });

  test("an unknown flag names the flag and suggests the closest one", () => {
    expect(usageError(() => parse(["--grpc-adr", "x"]))).toBe(
      "meshd serve: unknown flag --grpc-adr (did you mean --grpc-addr?)",
    );
  });

  test("a bad value names the flag and what was wanted", () => {
    expect(usageError(() => parse(["--grpc-addr", "nope"]))).toBe(
      'meshd serve: flag --grpc-addr: want HOST:PORT (port 0-65535), got "nope"',
    );
    expect(usageError(() => parse(["--grpc-addr", "1.2.3.4:70000"]))).toContain("--grpc-addr");
    expect(usageError(() => parse(["--workers", "9"]))).toBe(
      "meshd serve: flag --workers: must be at most 8, got 9",
    );
    expect(usageError(() => parse(["--shutdown-grace", "ten"]))).toContain(
      "--shutdown-grace: want a duration",
    );
    expect(usageError(() => parse(["--modules", "galley,mixr"]))).toContain('unknown value "mixr"');
    expect(usageError(() => parse(["--workers"]))).toBe("meshd serve: flag --workers needs a value");
  });

  test("flags win over MESHD_* variables, which win over the config file", () => {
    const file = "grpcAddr: 127.0.0.1:1\nlogLevel: debug\nworkers: 3\n";
    const env = { MESHD_GRPC_ADDR: "127.0.0.1:2", MESHD_WORKERS: "4" };
    const { settings } = parse(["--config", "meshd.yaml", "--workers", "5"], env, file);
    expect(settings.string("grpc-addr")).toBe("127.0.0.1:2");
    expect(settings.source("grpc-addr")).toBe("env");
    expect(settings.number("workers")).toBe(5);
    expect(settings.string("log-level")).toBe("debug");
    expect(settings.source("log-level")).toBe("file");
  });

  test("a bad environment variable is named", () => {
    expect(usageError(() => parse([], { MESHD_LOG_LEVEL: "loud" }))).toBe(
      'meshd serve: environment variable MESHD_LOG_LEVEL: want one of debug, info, got "loud"',
    );
  });

  test("config file errors give file, line and column", () => {
    expect(usageError(() => parse(["--config", "m.yaml"], {}, "logLevel: info\nworkerz: 2\n"))).toBe(
      "meshd serve: m.yaml:2:1: unknown setting workerz (did you mean workers?)",
    );
    expect(usageError(() => parse(["--config", "m.yaml"], {}, "logLevel: info\nworkers: many\n"))).toBe(
      'meshd serve: m.yaml:2:1: workers: want an integer, got "many"',
    );
    expect(usageError(() => parse(["--config", "m.yaml"], {}, "a: [\n"))).toMatch(
      /^meshd serve: m\.yaml:\d+:\d+: /,
    );
  });

  test("an unreadable config file is a usage error", () => {
    const msg = usageError(() =>
      parseCommandLine(specs, ["--config", "/nonexistent/meshd.yaml"], { command: "meshd serve", env: {} })
    );
    expect(msg).toContain("cannot read /nonexistent/meshd.yaml");
  });

  test("-h and --help ask for help", () => {
    expect(parse(["--help"]).help).toBe(true);
    expect(parse(["-h"]).help).toBe(true);
  });
});
