import { describe, expect, test } from "bun:test";
import { createEndpoints, parseAddrList } from "../../mod/agent/endpoints.ts";
import { failsOver } from "../../mod/agent/failure.ts";
import { AGENT_SETTINGS, resolveAgentConfig } from "../../mod/agent/settings.ts";
import { parseCommandLine } from "../../mod/cli/flags.ts";

function resolve(argv: string[], clusterEnv = "") {
  const readFile = () => clusterEnv;
  const parsed = parseCommandLine(AGENT_SETTINGS, argv, { command: "meshd agent", env: {}, readFile });
  return resolveAgentConfig(parsed.settings, { readFile, hostname: "vm", instanceIp: () => "192.0.2.10" });
}

describe("parseAddrList()", () => {
  test("splits a comma list, trimming blanks", () => {
    expect(parseAddrList("a:15012, 10.0.0.2:15012 ,[::1]:15012", "--discovery-addr")).toEqual([
      "a:15012",
      "10.0.0.2:15012",
      "[::1]:15012",
    ]);
  });

  test("errors name the flag and the bad item", () => {
    expect(() => parseAddrList("a:15012,b", "--discovery-addr (PILOT_ADDRESS)")).toThrow(
      '--discovery-addr (PILOT_ADDRESS): item 2 of the list: want HOST:PORT (port 0-65535), got "b"',
    );
    expect(() => parseAddrList(" , ", "--ca-tls-addr")).toThrow(
      "--ca-tls-addr: want HOST:PORT[,HOST:PORT...]",
    );
    expect(() => parseAddrList("a:99999", "--ca-tls-addr")).toThrow(
      '--ca-tls-addr: want HOST:PORT (port 0-65535), got "a:99999"',
    );
  });
});

describe("createEndpoints()", () => {
  test("starts at the first address, keeps it while it works and moves on after a failure", async () => {
    const e = createEndpoints(["10.0.0.1:15012", "10.0.0.2:15012", "10.0.0.3:15012"]);
    expect((await e.current()).dialAddr).toBe("10.0.0.1:15012");
    e.succeeded();
    expect((await e.current()).dialAddr).toBe("10.0.0.1:15012");
    expect(e.failed()).toBe(false);
    expect((await e.current()).dialAddr).toBe("10.0.0.2:15012");
    expect(e.failed()).toBe(false);
    expect((await e.current()).dialAddr).toBe("10.0.0.3:15012");
    // The third failure in a row completes a round: the caller backs off.
    expect(e.failed()).toBe(true);
    expect((await e.current()).dialAddr).toBe("10.0.0.1:15012");
    expect(e.failed()).toBe(false);
    e.succeeded();
    expect(e.failed()).toBe(false);
    expect(e.failed()).toBe(false);
    expect(e.failed()).toBe(true);
  });

  test("a name with several addresses counts as several, each dialled with the name as server name", async () => {
    const lookups: string[] = [];
    const e = createEndpoints(["meshd.example.internal:15012", "[fd00::9]:15012"], {
      lookup: (host) => {
        lookups.push(host);
        return Promise.resolve(["10.0.0.1", "10.0.0.2", "fd00::3"]);
      },
    });
    const seen = [];
    for (let i = 0; i < 4; i++) {
      seen.push(await e.current());
      e.failed();
    }
    expect(seen).toEqual([
      {
        addr: "meshd.example.internal:15012",
        dialAddr: "10.0.0.1:15012",
        serverName: "meshd.example.internal",
      },
      {
        addr: "meshd.example.internal:15012",
        dialAddr: "10.0.0.2:15012",
        serverName: "meshd.example.internal",
      },
      {
        addr: "meshd.example.internal:15012",
        dialAddr: "[fd00::3]:15012",
        serverName: "meshd.example.internal",
      },
      { addr: "[fd00::9]:15012", dialAddr: "[fd00::9]:15012" },
    ]);
    // Resolved again when its turn comes back.
    expect((await e.current()).dialAddr).toBe("10.0.0.1:15012");
    expect(lookups).toEqual(["meshd.example.internal", "meshd.example.internal"]);
  });

  test("a name that does not resolve is skipped like an unreachable address", async () => {
    const e = createEndpoints(["nowhere.invalid:15012", "127.0.0.1:15012"]);
    let err: unknown;
    try {
      await e.current();
    } catch (x) {
      err = x;
    }
    expect(failsOver(err)).toBe(true);
    expect(e.failed()).toBe(false);
    expect((await e.current()).dialAddr).toBe("127.0.0.1:15012");
  });
});

test("resolveAgentConfig() takes a list in --discovery-addr and PILOT_ADDRESS, naming the key of a bad one", () => {
  const base = ["--namespace=vms", "--service-account=sa"];
  const flag = resolve([...base, "--discovery-addr=a:15012, b:15012"]);
  expect(flag.config.discoveryAddr).toBe("a:15012,b:15012");
  expect(flag.config.caTlsAddr).toBe("a:15012,b:15012");
  const env = (text: string) => resolve([...base, "--cluster-env=/x/cluster.env"], text);
  expect(env("PILOT_ADDRESS=10.0.0.1:15012,10.0.0.2:15012\n").config.discoveryAddr).toBe(
    "10.0.0.1:15012,10.0.0.2:15012",
  );
  expect(() => env("\nPILOT_ADDRESS=10.0.0.1:15012,10.0.0.2\n")).toThrow(
    '/x/cluster.env:2: PILOT_ADDRESS (--discovery-addr): item 2 of the list: want HOST:PORT (port 0-65535), got "10.0.0.2"',
  );
});
