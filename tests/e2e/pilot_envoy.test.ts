import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import { CDS, connectEnvoy, EDS, type EnvoyClient, LDS, RDS } from "./_envoy_client.ts";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "./_meshd.ts";

const NODE = "sidecar~192.0.2.10~productpage-v1.bookinfo~bookinfo.svc.cluster.local";
const META = {
  NAMESPACE: "bookinfo",
  LABELS: { app: "productpage", version: "v1" },
  SERVICE_ACCOUNT: "bookinfo-productpage",
};

function cli(m: MeshdProcess, ...args: string[]) {
  const r = Bun.spawnSync([process.execPath, join(ROOT, "main.ts"), ...args, `--admin-addr=${m.adminAddr}`], {
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

describe("pilot serving an Envoy-like client (bookinfo)", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-pilot-"));
  let meshd: MeshdProcess;
  let replica: MeshdProcess;
  let envoy: EnvoyClient;
  const allAcked = (c: EnvoyClient) => [CDS, LDS, EDS, RDS].every((t) => c.last.has(t));

  beforeAll(async () => {
    cpSync(join(ROOT, "config/samples"), dir, { recursive: true });
    meshd = await startMeshd({
      args: ["--modules=pilot", `--config-dir=${dir}`, "--push-debounce=10ms", "--config-debounce=10ms"],
    });
    replica = await startMeshd({
      args: ["--modules=pilot", `--config-source=xds://${meshd.grpcAddr}`, "--push-debounce=10ms"],
    });
    envoy = connectEnvoy(meshd.grpcAddr, NODE, META);
  });
  afterAll(async () => {
    envoy?.close();
    await replica?.stop();
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the proxy gets CDS, LDS, EDS and RDS, and proxy-status shows it SYNCED", async () => {
    expect(await eventually(() => allAcked(envoy))).toBe(true);
    expect(envoy.names.get(EDS)).toContain("outbound|9080|v1|reviews.bookinfo.svc.cluster.local");
    expect(envoy.names.get(RDS)).toContain("9080");
    expect(
      await eventually(() => cli(meshd, "proxy-status").out.includes("SYNCED   SYNCED   SYNCED   SYNCED")),
    ).toBe(true);
    const status = cli(meshd, "proxy-status");
    expect(status.code).toBe(0);
    expect(status.out).toMatch(
      new RegExp(
        `^NAME\\s+CDS\\s+LDS\\s+EDS\\s+RDS\\s+MODE\\n${
          NODE.replaceAll(".", "\\.")
        }\\s+SYNCED\\s+SYNCED\\s+SYNCED\\s+SYNCED\\s+sotw`,
      ),
    );
  });

  test("proxy-config shows the proxy's clusters and listeners", () => {
    const r = cli(meshd, "proxy-config", NODE, "--type", "cluster");
    expect(r.code).toBe(0);
    expect(r.out).toContain("outbound|9080||reviews.bookinfo.svc.cluster.local");
    const json = JSON.parse(cli(meshd, "proxy-config", NODE, "-o", "json").out) as {
      listeners: Array<{ name: string }>;
    };
    expect(json.listeners.map((l) => l.name)).toContain("virtualOutbound");
  });

  test("a VirtualService edit reaches the proxy as a new RDS version on the same stream", async () => {
    const before = envoy.last.get(RDS)!.versionInfo;
    const cds = envoy.last.get(CDS)!.versionInfo;
    const file = join(dir, "routing.yaml");
    const text = readFileSync(file, "utf8");
    expect(text).toContain("weight: 90");
    writeFileSync(file, text.replace("weight: 90", "weight: 70").replace("weight: 10", "weight: 30"));
    expect(await eventually(() => envoy.last.get(RDS)!.versionInfo !== before)).toBe(true);
    const routes = envoy.last.get(RDS)!.resources.map((a) => fromBinary(RouteConfigurationSchema, a.value));
    expect(JSON.stringify(routes.map((r) => r.name))).toContain("9080");
    expect(envoy.last.get(CDS)!.versionInfo).toBe(cds);
  });

  test("a NACK is recorded, shown by proxy-status, and not re-sent in a loop", async () => {
    const count = envoy.responses.length;
    envoy.nackNext(RDS, "rejected for the test");
    const file = join(dir, "routing.yaml");
    writeFileSync(
      file,
      readFileSync(file, "utf8").replace("weight: 70", "weight: 60").replace("weight: 30", "weight: 40"),
    );
    expect(await eventually(() => cli(meshd, "proxy-status").out.includes("NACKED (rejected for the test)")))
      .toBe(true);
    await Bun.sleep(300);
    expect(envoy.responses.length - count).toBeLessThanOrEqual(2);
    const metrics = await (await fetch(`http://${meshd.adminAddr}/metrics`)).text();
    expect(metrics).toMatch(/^pilot_total_xds_rejects\{type="rds"\} 1$/m);
    expect(metrics).toMatch(/^pilot_xds_connected 1$/m);
  });

  test("a pilot-only replica with no local files serves the same config from MCP-over-xDS", async () => {
    const other = connectEnvoy(replica.grpcAddr, NODE, META);
    try {
      expect(await eventually(() => allAcked(other))).toBe(true);
      expect(other.names.get(EDS)).toEqual(envoy.names.get(EDS));
    } finally {
      other.close();
    }
  });
});
