/**
 * Traffic capture: the rules each backend renders, and, inside network-namespace machines, that
 * nftables and iptables rules are installed, updated, removed (also when a crashed run left them),
 * and that they capture for real: a non-excluded uid's connection to a mesh address reaches the
 * outbound port, the excluded uid's and an excluded port's reach the real destination, inbound
 * connections to a service port reach the inbound port, and DNS reaches the DNS proxy port.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createLogger } from "../../../mod/shared/logger.ts";
import {
  type CaptureOptions,
  installCapture,
  removeLeftoverCapture,
} from "../../../mod/agent/node_proxy/capture.ts";
import { capturePlan, captureTargets, normaliseCidr } from "../../../mod/agent/node_proxy/capture_plan.ts";
import { nftRuleset, nftSetUpdate } from "../../../mod/agent/node_proxy/capture_nft.ts";
import {
  IPTABLES_FAMILIES,
  iptablesRemoval,
  iptablesRules,
} from "../../../mod/agent/node_proxy/capture_iptables.ts";
import { type CommandRunner, runChecked, runLocalCommand } from "../../../mod/agent/node_proxy/command.ts";
import { createTestNetwork, type Machine, netnsUnavailable, type TestNetwork } from "../../netns/_harness.ts";

const logger = createLogger({ level: "error" });

function options(o: Partial<CaptureOptions> = {}): CaptureOptions {
  return {
    mode: "mesh",
    outboundPort: 15001,
    inboundPort: 15006,
    dnsPort: 15053,
    tunnelPort: 15008,
    excludeUids: [0],
    excludePorts: [81],
    excludeCidrs: [],
    inboundPorts: [8080],
    meshCidrs: ["198.19.0.10"],
    captureDns: true,
    logger,
    ...o,
  };
}

describe("capture plan", () => {
  test("normaliseCidr() clears host bits and drops full-length prefixes, for IPv4 and IPv6", () => {
    expect(normaliseCidr("f", "10.1.2.3/8")).toEqual({ family: 4, cidr: "10.0.0.0/8" });
    expect(normaliseCidr("f", "198.19.0.10/32")).toEqual({ family: 4, cidr: "198.19.0.10" });
    expect(normaliseCidr("f", "0.0.0.0/0")).toEqual({ family: 4, cidr: "0.0.0.0/0" });
    expect(normaliseCidr("f", "fd00::1:2/112")).toEqual({ family: 6, cidr: "fd00:0:0:0:0:0:1:0/112" });
    expect(normaliseCidr("f", "::ffff:1.2.3.4")).toEqual({ family: 6, cidr: "0:0:0:0:0:ffff:102:304" });
  });

  test("capturePlan() and captureTargets() name the field that is wrong", () => {
    expect(() => capturePlan(options({ meshCidrs: [], excludeCidrs: ["10.0.0.0/8", "nope"] }) as never))
      .toThrow('capture: excludeCidrs[1]: "nope" is not an IP address or CIDR');
    expect(() => capturePlan(options({ outboundPort: 70000 }) as never)).toThrow(
      "capture: outboundPort: 70000",
    );
    expect(() => capturePlan(options({ excludeUids: [-1] }) as never)).toThrow("capture: excludeUids[0]");
    const plan = capturePlan(options() as never);
    expect(() => captureTargets(plan, { inboundPorts: [], meshCidrs: ["10.0.0.1/33"] })).toThrow(
      'capture: meshCidrs[0]: "10.0.0.1/33"',
    );
  });

  test("captureTargets() leaves out port 0 and the proxy's own ports, splits families, dedupes", () => {
    const plan = capturePlan(options() as never);
    expect(
      captureTargets(plan, {
        inboundPorts: [0, 9080, 15008, 15006, 9080],
        meshCidrs: ["fd00::1", "10.0.0.1", "10.0.0.1/32"],
      }),
    )
      .toEqual({ inboundPorts: [9080], meshCidrs: { v4: ["10.0.0.1"], v6: ["fd00:0:0:0:0:0:0:1"] } });
    expect(plan.excludePorts).toEqual([81, 15001, 15006, 15008, 15053]);
  });

  test("nftRuleset() replaces the table atomically and captures mesh addresses after every exclusion", () => {
    const plan = capturePlan(options() as never);
    const text = nftRuleset(plan, captureTargets(plan, options()));
    expect(text).toStartWith("add table inet meshd\ndelete table inet meshd\ntable inet meshd {");
    const rules = text.split("\n").map((l) => l.trim());
    const at = (r: string) => rules.indexOf(r);
    // DNS of both families (inet table, no nfproto): IPv6 DNS goes to the proxy on ::1.
    expect(at("meta skuid @exclude_uids return")).toBeLessThan(at("udp dport 53 redirect to :15053"));
    expect(at("udp dport 53 redirect to :15053")).toBeLessThan(at("ip daddr 127.0.0.0/8 return"));
    expect(at("tcp dport 53 redirect to :15053")).toBeLessThan(at("ip6 daddr ::1 return"));
    expect(text).not.toContain("nfproto");
    expect(at("tcp dport @exclude_ports return")).toBeLessThan(
      at("ip daddr @mesh_v4 meta l4proto tcp redirect to :15001"),
    );
    expect(rules).toContain("fib daddr type local tcp dport @inbound_ports redirect to :15006");
    const all = nftRuleset(
      capturePlan(options({ mode: "all", captureDns: false }) as never),
      captureTargets(plan, options()),
    );
    expect(all).toContain("meta l4proto tcp redirect to :15001");
    expect(all).not.toContain("@mesh_v4 meta");
    expect(all).not.toContain("dport 53");
    expect(nftSetUpdate(captureTargets(plan, { inboundPorts: [], meshCidrs: ["10.0.0.0/8"] }))).toBe(
      "flush set inet meshd mesh_v4\nadd element inet meshd mesh_v4 { 10.0.0.0/8 }\n" +
        "flush set inet meshd mesh_v6\nflush set inet meshd inbound_ports\n",
    );
  });

  test("iptablesRules() and iptablesRemoval() cover the same rules and undo only the agent's", () => {
    const plan = capturePlan(options() as never);
    const v4 = iptablesRules(
      IPTABLES_FAMILIES[0]!,
      plan,
      captureTargets(plan, options({ meshCidrs: ["198.19.0.10", "fd00::10"] })),
      true,
    );
    expect(v4).toContain("-A MESHD_OUTPUT -m owner --uid-owner 0 -j RETURN");
    expect(v4).toContain("-A MESHD_OUTPUT -p tcp -d 198.19.0.10 -j REDIRECT --to-ports 15001");
    expect(v4).not.toContain("fd00");
    expect(v4).toContain("-A MESHD_OUTPUT -p udp --dport 53 -j REDIRECT --to-ports 15053");
    const v6 = iptablesRules(
      IPTABLES_FAMILIES[1]!,
      plan,
      captureTargets(plan, options({ meshCidrs: ["fd00::10"] })),
      true,
    );
    expect(v6).toContain("-A MESHD_OUTPUT -p tcp -d fd00:0:0:0:0:0:0:10 -j REDIRECT --to-ports 15001");
    expect(v6).toContain("-A MESHD_OUTPUT -d ::1/128 -j RETURN");
    expect(v6).toContain("-A MESHD_OUTPUT -p udp --dport 53 -j REDIRECT --to-ports 15053");
    expect(v6).toContain("-A MESHD_OUTPUT -p tcp --dport 53 -j REDIRECT --to-ports 15053");
    expect(v4).toContain(
      "-A MESHD_PREROUTING -p tcp --dport 8080 -m addrtype --dst-type LOCAL -j REDIRECT --to-ports 15006",
    );
    expect(v4).toContain("-A OUTPUT -j MESHD_OUTPUT");
    const saved =
      "*nat\n:OUTPUT ACCEPT [0:0]\n:MESHD_OUTPUT - [0:0]\n:OTHER - [0:0]\n-A OUTPUT -j MESHD_OUTPUT\n" +
      "-A OUTPUT -j OTHER\n-A MESHD_OUTPUT -j RETURN\nCOMMIT\n";
    expect(iptablesRemoval(saved)).toBe(
      "*nat\n-D OUTPUT -j MESHD_OUTPUT\n-F MESHD_OUTPUT\n-X MESHD_OUTPUT\nCOMMIT\n",
    );
    expect(iptablesRemoval("*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")).toBeUndefined();
  });
});

const unavailable = netnsUnavailable();
if (unavailable !== undefined) console.warn(`skipping capture tests in network namespaces: ${unavailable}`);

/** Answers every TCP connection on PORT with TAG; with "udp", answers every datagram with TAG. */
const SERVE = `
const [host, port, tag, proto] = process.argv.slice(-4);
if (proto === "udp") {
  const s = require("node:dgram").createSocket(host.includes(":") ? "udp6" : "udp4");
  s.on("message", (m, r) => s.send(tag, r.port, r.address));
  s.bind(Number(port), host, () => console.log("listening"));
} else {
  require("node:net").createServer((s) => s.end(tag)).listen(Number(port), host, () => console.log("listening"));
}
`;
/** Connects to HOST PORT (TCP, or UDP sending one datagram) and prints what it read, or ERR. */
const CONNECT = `
const [host, port, proto] = process.argv.slice(-3);
setTimeout(() => { console.log("ERR TIMEOUT"); process.exit(0); }, 3000);
if (proto === "udp") {
  const s = require("node:dgram").createSocket(host.includes(":") ? "udp6" : "udp4");
  s.on("message", (m) => { console.log("OK " + m); process.exit(0); });
  s.send("q", Number(port), host);
} else {
  const s = require("node:net").connect(Number(port), host);
  let got = "";
  s.on("data", (c) => (got += c));
  s.on("end", () => { console.log("OK " + got); process.exit(0); });
  s.on("error", (e) => { console.log("ERR " + e.code); process.exit(0); });
}
`;
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

async function waitListening(p: { stdout: ReadableStream<Uint8Array> }): Promise<void> {
  const reader = p.stdout.getReader();
  let text = "";
  while (!text.includes("listening")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited before listening: ${text}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
}

describe.skipIf(unavailable !== undefined)("capture in network namespaces", () => {
  let net: TestNetwork;
  let server: Machine;
  const inside = (m: Machine): CommandRunner => (argv, input) =>
    runLocalCommand(["ip", "netns", "exec", m.netns, ...argv], input);
  const serve = async (m: Machine, args: string[]) => {
    const p = net.exec(m, [process.execPath, "-e", SERVE, ...args]);
    await waitListening(p);
  };
  const connect = async (m: Machine, prefix: string[], host: string, port: number, proto = "tcp") =>
    (await net.run(m, [...prefix, process.execPath, "-e", CONNECT, host, String(port), proto])).stdout.trim();

  beforeAll(async () => {
    net = createTestNetwork({ machines: 3 });
    server = net.machines[2]!;
    // The "mesh service" 198.19.0.10 lives on machine 3 and answers "direct".
    await net.run(server, ["ip", "addr", "add", "198.19.0.10/32", "dev", "eth0"]);
    for (const port of ["80", "81"]) await serve(server, ["198.19.0.10", port, "direct", "tcp"]);
    for (const [i, m] of net.machines.slice(0, 2).entries()) {
      await runChecked(inside(m), ["ip", "route", "add", "198.19.0.0/16", "dev", "eth0"]);
      await serve(m, ["0.0.0.0", "15001", "outbound", "tcp"]);
      await serve(m, ["0.0.0.0", "15006", "inbound", "tcp"]);
      await serve(m, ["0.0.0.0", "8080", "app", "tcp"]);
      await serve(m, ["127.0.0.1", "15053", "dns-proxy", "udp"]);
      await serve(m, ["::1", "15053", "dns-proxy-v6", "udp"]);
      // An IPv6 address (no duplicate detection, so it is usable at once) and with it a route,
      // so a resolver on fd00::53 is reachable as far as the capture rules.
      await runChecked(inside(m), ["ip", "-6", "addr", "add", `fd00::${i + 1}/64`, "dev", "eth0", "nodad"]);
    }
  });
  afterAll(() => net?.cleanup());

  for (const [i, backend] of (["nft", "iptables"] as const).entries()) {
    const listRules = async (m: Machine) =>
      backend === "nft"
        ? (await inside(m)(["nft", "list", "table", "inet", "meshd"])).stdout
        : (await runChecked(inside(m), ["iptables-save", "-t", "nat"])) +
          (await runChecked(inside(m), ["ip6tables-save", "-t", "nat"]));

    test(`${backend}: installCapture() installs rules, update() changes the mesh addresses, remove() removes them`, async () => {
      const m = net.machines[i]!;
      const cap = await installCapture(
        options({ backend, exec: inside(m), meshCidrs: ["198.19.0.10", "fd00::10"] }),
      );
      expect(cap.backend).toBe(backend);
      let rules = await listRules(m);
      expect(rules).toContain("198.19.0.10");
      expect(rules).toContain("fd00::10");
      expect(rules).toContain("15001");
      await cap.update({ inboundPorts: [8080, 9090], meshCidrs: ["198.19.0.0/24", "198.19.1.7"] });
      rules = await listRules(m);
      expect(rules).toContain("198.19.0.0/24");
      expect(rules).toContain("198.19.1.7");
      expect(rules).toContain("9090");
      expect(rules).not.toContain("fd00::10");
      await cap.remove();
      await cap.remove();
      rules = await listRules(m);
      expect(rules).not.toContain("meshd");
      expect(rules).not.toContain("MESHD");
      await removeLeftoverCapture(logger, { exec: inside(m) });
    });

    test(`${backend}: a second installCapture() replaces a crashed run's rules, of either backend`, async () => {
      const m = net.machines[i]!;
      const other = backend === "nft" ? "iptables" : "nft";
      await installCapture(options({ backend: other, exec: inside(m), meshCidrs: ["198.19.5.5"] }));
      await installCapture(options({ backend, exec: inside(m), meshCidrs: ["198.19.6.6"] }));
      const cap = await installCapture(options({ backend, exec: inside(m), meshCidrs: ["198.19.7.7"] }));
      const all = (await runChecked(inside(m), ["nft", "list", "ruleset"])) +
        (await runChecked(inside(m), ["iptables-save", "-t", "nat"]));
      expect(all).not.toContain("198.19.5.5");
      expect(all).not.toContain("198.19.6.6");
      expect(all).toContain("198.19.7.7");
      if (backend === "iptables") expect(all.split("-A OUTPUT -j MESHD_OUTPUT").length).toBe(2);
      else expect(all.split("table inet meshd").length).toBe(2);
      await removeLeftoverCapture(logger, { exec: inside(m) });
      expect(await listRules(m)).not.toMatch(/meshd|MESHD/);
      await cap.remove();
    });

    test(`${backend}: captured connections reach the proxy's ports; excluded uids and ports pass`, async () => {
      const m = net.machines[i]!;
      const before = await connect(m, NOBODY, "198.19.0.10", 80);
      expect(before).toBe("OK direct");
      const cap = await installCapture(options({ backend, exec: inside(m) }));
      try {
        expect(await connect(m, NOBODY, "198.19.0.10", 80)).toBe("OK outbound");
        expect(await connect(m, [], "198.19.0.10", 80)).toBe("OK direct"); // uid 0 is excluded
        expect(await connect(m, NOBODY, "198.19.0.10", 81)).toBe("OK direct"); // port 81 is excluded
        expect(await connect(m, NOBODY, "127.0.0.1", 8080)).toBe("OK app"); // loopback passes
        expect(await connect(m, NOBODY, "198.18.0.3", 53, "udp")).toBe("OK dns-proxy");
        expect(await connect(m, NOBODY, "fd00::53", 53, "udp")).toBe("OK dns-proxy-v6");
        expect(await connect(server, [], m.ip, 8080)).toBe("OK inbound");
        await cap.update({ inboundPorts: [], meshCidrs: [] });
        expect(await connect(m, NOBODY, "198.19.0.10", 80)).toBe("OK direct");
        expect(await connect(server, [], m.ip, 8080)).toBe("OK app");
      } finally {
        await cap.remove();
      }
      expect(await connect(m, NOBODY, "198.19.0.10", 80)).toBe("OK direct");
    });
  }
});
