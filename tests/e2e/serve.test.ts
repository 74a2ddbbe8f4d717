import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { join } from "node:path";
import { bareStartMs, buildBinary, measureStartup } from "../../bench/startup.ts";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "./_meshd.ts";

/** A grpc-js client for grpc.health.v1, built from the project's own proto. */
function healthClient(addr: string) {
  const def = protoLoader.loadSync(join(ROOT, "proto/api/grpc/health/v1/health.proto"), {
    keepCase: true,
    enums: String,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: new (addr: string, creds: grpc.ChannelCredentials) => grpc.Client } } };
  };
  return new pkg.grpc.health.v1.Health(addr, grpc.credentials.createInsecure()) as grpc.Client & {
    Check(req: object, cb: (err: grpc.ServiceError | null, res: { status: string }) => void): void;
    Watch(req: object): grpc.ClientReadableStream<{ status: string }>;
  };
}

describe("meshd serve (process)", () => {
  let meshd: MeshdProcess;
  beforeAll(async () => {
    meshd = await startMeshd({ args: ["--shutdown-grace=3s"] });
  });
  afterAll(() => {
    if (meshd.proc.exitCode === null) meshd.proc.kill("SIGKILL");
  });

  test("becomes ready and says so over HTTP and gRPC health", async () => {
    expect(
      await eventually(async () => (await fetch(`http://${meshd.adminAddr}/healthz/ready`)).status === 200),
    ).toBe(true);
    const client = healthClient(meshd.grpcAddr);
    const res = await new Promise<{ status: string }>((resolve, reject) =>
      client.Check({ service: "" }, (err, r) => (err ? reject(err) : resolve(r)))
    );
    expect(res.status).toBe("SERVING");
    const unknown = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.Check({ service: "nope" }, (err) => resolve(err))
    );
    expect(unknown?.code).toBe(grpc.status.NOT_FOUND);
    client.close();
  });

  test("SIGTERM ends open streams and exits 0 within the grace period", async () => {
    const client = healthClient(meshd.grpcAddr);
    const stream = client.Watch({ service: "" });
    const first = await new Promise<{ status: string }>((resolve, reject) => {
      stream.once("data", resolve);
      stream.once("error", reject);
    });
    expect(first.status).toBe("SERVING");
    const ended = new Promise<string>((resolve) => {
      stream.on("error", (e: grpc.ServiceError) => resolve(`error ${e.code}`));
      stream.on("end", () => resolve("end"));
    });
    const t0 = Date.now();
    const code = await meshd.stop();
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(await ended).toBeString();
    expect(meshd.logs.some((l) => l.msg === "stopped")).toBe(true);
    client.close();
  });
});

describe("dist/meshd (compiled binary)", () => {
  const built = buildBinary();
  afterAll(() => built.cleanup());

  test("answers --help from /, refuses a bad flag with exit 2", () => {
    const help = Bun.spawnSync([built.bin, "--help"], { cwd: "/", stdout: "pipe", stderr: "pipe" });
    expect(help.exitCode).toBe(0);
    expect(help.stdout.toString()).toContain("Usage: meshd <command>");
    const bad = Bun.spawnSync([built.bin, "serve", "--nope"], { cwd: "/", stdout: "pipe", stderr: "pipe" });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toBe("meshd serve: unknown flag --nope\n");
  });

  test(
    "serves the samples from /, becomes ready, and exits 0 on SIGTERM (bench/startup.ts, once)",
    async () => {
      const s = await measureStartup(built.bin, join(ROOT, "config/samples"), 50);
      expect(s.readyMs).toBeGreaterThan(0);
      expect(s.idleRssKiB).toBeGreaterThan(0);
      expect(bareStartMs(built.bin)).toBeGreaterThan(0);
    },
    60_000,
  );
});
