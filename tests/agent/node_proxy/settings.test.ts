/**
 * `meshd agent --node-proxy` settings: off by default, Istio's ports and capture of mesh
 * addresses by default, the agent's own uid excluded unless told otherwise, lists checked with
 * errors naming the flag, MESHD_* in cluster.env, and the tunnel label added to the workload's
 * labels (so its node metadata LABELS carry it).
 */
import { describe, expect, test } from "bun:test";
import { parseCommandLine } from "../../../mod/cli/flags.ts";
import { nodeMetadata } from "../../../mod/agent/node.ts";
import { AGENT_SETTINGS, resolveAgentConfig } from "../../../mod/agent/settings.ts";

const BASE = ["--namespace", "vms", "--service-account", "sa", "--ca-tls-addr", "ca.example:15012"];

function resolve(argv: string[], files: Record<string, string> = {}) {
  const read = (p: string) => {
    if (!(p in files)) throw new Error(`ENOENT: ${p}`);
    return files[p]!;
  };
  const parsed = parseCommandLine(AGENT_SETTINGS, [...BASE, ...argv], {
    command: "meshd agent",
    env: {},
    readFile: read,
  });
  return resolveAgentConfig(parsed.settings, {
    readFile: read,
    hostname: "vm",
    instanceIp: () => "192.0.2.10",
    uid: 990,
  }).config;
}

describe("node proxy settings", () => {
  test("off by default: no node proxy settings and no tunnel label", () => {
    const c = resolve([]);
    expect(c.nodeProxy).toBeUndefined();
    expect(c.workload.labels["networking.istio.io/tunnel"]).toBeUndefined();
  });

  test("--node-proxy: Istio's ports, mesh capture, the agent's uid excluded, the tunnel label", () => {
    const c = resolve(["--node-proxy", "--labels", "app=ratings"]);
    expect(c.nodeProxy).toEqual({
      capture: "mesh",
      captureBackend: "auto",
      excludePorts: [],
      excludeCidrs: [],
      excludeUids: [990],
      outboundPort: 15001,
      inboundPort: 15006,
      tunnelPort: 15008,
      dnsAddr: "127.0.0.1:15053",
      dnsCapture: true,
    });
    expect(nodeMetadata(c.workload).LABELS).toEqual({ app: "ratings", "networking.istio.io/tunnel": "http" });
  });

  test("every flag is read, also as MESHD_* in cluster.env", () => {
    const c = resolve([
      "--node-proxy",
      "--capture=none",
      "--capture-backend",
      "iptables",
      "--capture-exclude-ports",
      "22,9100",
      "--capture-exclude-cidrs",
      "198.18.0.0/15,fd00::1",
      "--capture-exclude-uids",
      "0,1000",
      "--outbound-port",
      "25001",
      "--dns-capture=false",
      "--cluster-env",
      "/c.env",
    ], { "/c.env": "MESHD_INBOUND_PORT=25006\nMESHD_TUNNEL_PORT=25008\nMESHD_DNS_ADDR=127.0.0.1:25053\n" });
    expect(c.nodeProxy).toMatchObject({
      capture: "none",
      captureBackend: "iptables",
      excludePorts: [22, 9100],
      excludeCidrs: ["198.18.0.0/15", "fd00::1/128"],
      excludeUids: [0, 1000],
      outboundPort: 25001,
      inboundPort: 25006,
      tunnelPort: 25008,
      dnsAddr: "127.0.0.1:25053",
      dnsCapture: false,
    });
  });

  test("bad values name the flag", () => {
    expect(() => resolve(["--node-proxy", "--capture-exclude-ports", "22,http"])).toThrow(
      /--capture-exclude-ports: want integers from 1 to 65535, got "http"/,
    );
    expect(() => resolve(["--node-proxy", "--capture-exclude-cidrs", "198.18.0.0/33"])).toThrow(
      /--capture-exclude-cidrs: want ADDRESS\/LENGTH, got "198.18.0.0\/33"/,
    );
    expect(() => resolve(["--node-proxy", "--capture-exclude-uids", "-1"])).toThrow(/--capture-exclude-uids/);
    expect(() => resolve(["--node-proxy", "--inbound-port", "15008"])).toThrow(
      /--tunnel-port and --inbound-port are both 15008/,
    );
    expect(() => resolve(["--capture", "some"])).toThrow(/--capture/);
  });
});
