import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connect as netConnect, createServer } from "node:net";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type DeltaDiscoveryRequest,
  DeltaDiscoveryRequestSchema,
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  type DiscoveryResponse,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { SecretDiscoveryService } from "#gen/envoy/service/secret/v3/sds_pb.ts";
import { type Secret, SecretSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.ts";
import type { CertBundle } from "../../mod/agent/certs.ts";
import { type SdsServer, SECRET_TYPE_URL, startSdsServer } from "../../mod/agent/sds_server.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createChannel } from "../../mod/shared/channel.ts";

const quiet = createLogger({ write: () => {} });
const node = { id: "sidecar~10.0.0.5~vm1.vms~vms.svc.cluster.local" };
const text = new TextDecoder();

function bundle(tag: string, root = "ROOT-1"): CertBundle {
  return {
    chainPem: `CHAIN-${tag}`,
    keyPem: `KEY-${tag}`,
    rootPem: root,
    notBefore: 0,
    notAfter: 1,
    identity: "spiffe://cluster.local/ns/vms/sa/app",
  };
}

function sdsClient(path: string) {
  return createClient(
    SecretDiscoveryService,
    createGrpcTransport({
      baseUrl: "http://localhost",
      nodeOptions: { createConnection: () => netConnect(path) } as never,
    }),
  );
}

/** Reads stream messages with a timeout; a timed-out read is resumed by the next call. */
function reader<T>(it: AsyncIterable<T>) {
  const iter = it[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | undefined;
  return async (ms = 2000): Promise<T | "timeout"> => {
    pending ??= iter.next();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      pending,
      new Promise<"timeout">((res) => (timer = setTimeout(() => res("timeout"), ms))),
    ]);
    clearTimeout(timer);
    if (r === "timeout") return r;
    pending = undefined;
    if (r.done) throw new Error("stream ended");
    return r.value;
  };
}

function secrets(res: DiscoveryResponse | "timeout"): Secret[] {
  if (res === "timeout") throw new Error("no response");
  return res.resources.map((a) => anyUnpack(a, SecretSchema)!);
}

let dir: string;
let sds: SdsServer;
let path: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshd-agent-sds-"));
  path = join(dir, "run", "sds.sock");
  sds = await startSdsServer({ path, logger: quiet });
});
afterAll(async () => {
  await sds.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("SDS server", () => {
  test("listens on a 0600 socket in a 0750 directory", () => {
    expect(statSync(path).isSocket()).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "run")).mode & 0o777).toBe(0o750);
  });

  test("StreamSecrets: waits for the first certificate, serves default and ROOTCA, pushes rotations", async () => {
    const req = createChannel<DiscoveryRequest>();
    const next = reader(sdsClient(path).streamSecrets(req));
    req.push(create(DiscoveryRequestSchema, { node, typeUrl: SECRET_TYPE_URL, resourceNames: ["default"] }));
    expect(await next(300)).toBe("timeout");

    sds.update(bundle("1"));
    const r1 = await next();
    const [def] = secrets(r1);
    expect(def!.name).toBe("default");
    expect(def!.type.case).toBe("tlsCertificate");
    const tls = def!.type.value as {
      certificateChain?: { specifier: { value: Uint8Array } };
      privateKey?: { specifier: { value: Uint8Array } };
    };
    expect(text.decode(tls.certificateChain!.specifier.value)).toBe("CHAIN-1");
    expect(text.decode(tls.privateKey!.specifier.value)).toBe("KEY-1");
    const nonce1 = (r1 as DiscoveryResponse).nonce;
    req.push(create(DiscoveryRequestSchema, {
      typeUrl: SECRET_TYPE_URL,
      resourceNames: ["default"],
      versionInfo: (r1 as DiscoveryResponse).versionInfo,
      responseNonce: nonce1,
    }));

    const roots = createChannel<DiscoveryRequest>();
    const nextRoot = reader(sdsClient(path).streamSecrets(roots));
    roots.push(create(DiscoveryRequestSchema, { node, typeUrl: SECRET_TYPE_URL, resourceNames: ["ROOTCA"] }));
    const [rootca] = secrets(await nextRoot());
    expect(rootca!.name).toBe("ROOTCA");
    expect(rootca!.type.case).toBe("validationContext");
    expect(
      text.decode(
        (rootca!.type.value as { trustedCa?: { specifier: { value: Uint8Array } } }).trustedCa!.specifier
          .value,
      ),
    )
      .toBe("ROOT-1");

    sds.update(bundle("2"));
    const r2 = await next();
    const [def2] = secrets(r2);
    expect(
      text.decode(
        (def2!.type.value as { privateKey?: { specifier: { value: Uint8Array } } }).privateKey!.specifier
          .value,
      ),
    )
      .toBe("KEY-2");
    expect((r2 as DiscoveryResponse).nonce).not.toBe(nonce1);
    // The roots did not change: nothing is pushed on the ROOTCA stream.
    expect(await nextRoot(300)).toBe("timeout");
    sds.update(bundle("2", "ROOT-2"));
    expect(secrets(await nextRoot())[0]!.name).toBe("ROOTCA");
    expect(sds.streams().length).toBe(2);
    req.close();
    roots.close();
  });

  test("DeltaSecrets: subscribes to both and receives changes", async () => {
    sds.update(bundle("3"));
    const req = createChannel<DeltaDiscoveryRequest>();
    const next = reader(sdsClient(path).deltaSecrets(req));
    req.push(
      create(DeltaDiscoveryRequestSchema, {
        node,
        typeUrl: SECRET_TYPE_URL,
        resourceNamesSubscribe: ["default", "ROOTCA"],
      }),
    );
    const r = await next();
    if (r === "timeout") throw new Error("no delta response");
    expect(r.resources.map((x) => x.name).sort()).toEqual(["ROOTCA", "default"]);
    req.push(create(DeltaDiscoveryRequestSchema, { typeUrl: SECRET_TYPE_URL, responseNonce: r.nonce }));
    sds.update(bundle("4"));
    const r2 = await next();
    if (r2 === "timeout") throw new Error("no delta push");
    expect(r2.resources.map((x) => x.name)).toEqual(["default"]);
    req.close();
  });

  test("FetchSecrets answers with the named secrets", async () => {
    const res = await sdsClient(path).fetchSecrets({
      node,
      typeUrl: SECRET_TYPE_URL,
      resourceNames: ["ROOTCA"],
    });
    expect(secrets(res).map((s) => s.name)).toEqual(["ROOTCA"]);
  });

  test("a stale socket file is replaced; a live one or a non-socket is refused, naming --sds-socket", async () => {
    const stale = join(dir, "stale.sock");
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(stale, () => r()));
    await expect(startSdsServer({ path: stale, logger: quiet })).rejects.toThrow(
      /--sds-socket .*stale.sock: another process/,
    );
    await new Promise<void>((r) => srv.close(() => r()));
    // A process that bound the socket and died leaves the file behind.
    const dead = join(dir, "dead.sock");
    const py = Bun.spawnSync([
      "python3",
      "-c",
      `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(dead)})`,
    ]);
    expect(py.exitCode).toBe(0);
    expect(statSync(dead).isSocket()).toBe(true);
    const again = await startSdsServer({ path: dead, logger: quiet });
    expect(
      await sdsClient(dead).fetchSecrets({ node, typeUrl: SECRET_TYPE_URL }).catch((e: Error) => e.message),
    )
      .toContain("no certificate yet");
    await again.close();
    expect(() => statSync(dead)).toThrow();
    writeFileSync(join(dir, "not-a-socket"), "x");
    await expect(startSdsServer({ path: join(dir, "not-a-socket"), logger: quiet })).rejects.toThrow(
      /exists and is not a socket/,
    );
  });
});
