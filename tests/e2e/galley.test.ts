import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "./_meshd.ts";

const vs = (timeout: string) =>
  `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts:
  - reviews.bookinfo.svc.cluster.local
  http:
  - timeout: ${timeout}
    route:
    - destination:
        host: reviews.bookinfo.svc.cluster.local
`;

interface Configz {
  version: number;
  resources: Array<{ key: string; state: string; errors: string[]; servingPrevious: boolean }>;
  origins: Array<{ origin: string; state: string }>;
}

const KEY = "networking.istio.io/VirtualService/bookinfo/reviews";

describe("galley in a running meshd", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-e2e-config-"));
  let primary: MeshdProcess;
  let replica: MeshdProcess;
  const configz = async (m: MeshdProcess) =>
    (await (await fetch(`http://${m.adminAddr}/debug/configz`)).json()) as Configz;
  const timeoutIn = async (m: MeshdProcess) => {
    const res = await fetch(`http://${m.adminAddr}/debug/configz?key=${encodeURIComponent(KEY)}`);
    if (res.status !== 200) return undefined;
    return ((await res.json()) as { spec: { http: { timeout: string }[] } }).spec.http[0]!.timeout;
  };

  beforeAll(async () => {
    writeFileSync(join(dir, "reviews.yaml"), vs("5s"));
    // The last test removes the only file: a source going from some resources to none needs
    // --allow-empty-config (tests/hostile/config.test.ts covers the refusal without it).
    primary = await startMeshd({
      args: [`--config-dir=${dir}`, "--config-debounce=20ms", "--allow-empty-config"],
    });
    replica = await startMeshd({
      args: [`--config-source=xds://${primary.grpcAddr}`, "--allow-empty-config"],
    });
  });
  afterAll(async () => {
    await replica?.stop();
    await primary?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("serves the directory's config and is ready", async () => {
    expect(
      await eventually(async () => (await fetch(`http://${primary.adminAddr}/healthz/ready`)).status === 200),
    ).toBe(true);
    const c = await configz(primary);
    expect(c.resources.map((r) => [r.key, r.state])).toEqual([[KEY, "accepted"]]);
    expect(await timeoutIn(primary)).toBe("5s");
  });

  test("a replica with no local files takes the config over MCP-over-xDS", async () => {
    expect(
      await eventually(async () => (await fetch(`http://${replica.adminAddr}/healthz/ready`)).status === 200),
    ).toBe(true);
    const got = await timeoutIn(replica);
    if (got !== "5s") {
      console.error(JSON.stringify(replica.logs, null, 1), JSON.stringify(await configz(replica)));
    }
    expect(got).toBe("5s");
  });

  test("a file that turns invalid keeps the last good version, shows the rejection and counts it", async () => {
    writeFileSync(join(dir, "reviews.yaml"), vs("fast"));
    expect(await eventually(async () => (await configz(primary)).resources[0]?.state === "rejected")).toBe(
      true,
    );
    const r = (await configz(primary)).resources[0]!;
    expect(r.servingPrevious).toBe(true);
    expect(r.errors[0]).toStartWith(`${join(dir, "reviews.yaml")}:10:`);
    expect(r.errors[0]).toContain("VirtualService bookinfo/reviews: spec.http[0].timeout:");
    expect(await timeoutIn(primary)).toBe("5s");
    const cli = Bun.spawnSync([
      process.execPath,
      join(ROOT, "main.ts"),
      "config-status",
      `--admin-addr=${primary.adminAddr}`,
    ], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(cli.exitCode).toBe(1);
    expect(cli.stdout.toString()).toMatch(
      /VirtualService bookinfo\/reviews\s+REJECTED \(previous in force\)\s+\S+reviews\.yaml\s+\S+:10:/,
    );
    const metrics = await (await fetch(`http://${primary.adminAddr}/metrics`)).text();
    expect(metrics).toMatch(/^galley_validation_failed_total\{kind="VirtualService"\} [1-9]/m);
  });

  test("a fixed file applies, and the change reaches the replica", async () => {
    writeFileSync(join(dir, "reviews.yaml"), vs("9s"));
    expect(await eventually(async () => (await timeoutIn(primary)) === "9s")).toBe(true);
    expect(await eventually(async () => (await timeoutIn(replica)) === "9s")).toBe(true);
  });

  test("a deleted file removes its resources everywhere", async () => {
    rmSync(join(dir, "reviews.yaml"));
    expect(await eventually(async () => (await configz(primary)).resources.length === 0)).toBe(true);
    expect(await eventually(async () => (await timeoutIn(replica)) === undefined)).toBe(true);
  });

  test("the admission webhook answers AdmissionReview over HTTPS with the same messages", async () => {
    const addr = await primary.addrOf("admission webhook listening");
    const review = (object: unknown) => ({
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      request: { uid: "u-1", operation: "CREATE", namespace: "bookinfo", object },
    });
    const post = async (body: unknown) => {
      const res = await fetch(`https://${addr}/validate`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: { "content-type": "application/json" },
        tls: { rejectUnauthorized: false },
      });
      return {
        status: res.status,
        body: (await res.json()) as {
          response?: { uid: string; allowed: boolean; status?: { message: string } };
        },
      };
    };
    const good = {
      apiVersion: "networking.istio.io/v1",
      kind: "VirtualService",
      metadata: { name: "r" },
      spec: { hosts: ["r.example.com"], http: [{ route: [{ destination: { host: "r.example.com" } }] }] },
    };
    const ok = await post(review(good));
    expect(ok.status).toBe(200);
    expect(ok.body.response).toEqual({ uid: "u-1", allowed: true });
    const bad = {
      ...good,
      spec: {
        ...good.spec,
        http: [{ timeout: "fast", route: [{ destination: { host: "r.example.com" } }] }],
      },
    };
    const denied = await post(review(bad));
    expect(denied.body.response?.allowed).toBe(false);
    expect(denied.body.response?.status?.message).toStartWith(
      "VirtualService bookinfo/r: spec.http[0].timeout:",
    );
    expect((await post({ kind: "Nope" })).status).toBe(400);
  });
});
