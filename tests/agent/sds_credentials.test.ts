/**
 * Gateway credentials over the agent's SDS: the secrets a gateway listener names (pilot's
 * rendering of `credentialNames`) are served from the agent's credential directory, and a
 * change of the files is pushed on refresh.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connect as netConnect } from "node:net";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  type DiscoveryResponse,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { SecretDiscoveryService } from "#gen/envoy/service/secret/v3/sds_pb.ts";
import { type Secret, SecretSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.ts";
import { DownstreamTlsContextSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import type { CertBundle } from "../../mod/agent/certs.ts";
import {
  credentialSecret,
  credentialSecrets,
  type SdsServer,
  SECRET_TYPE_URL,
  startSdsServer,
} from "../../mod/agent/sds_server.ts";
import { proxyFromNode } from "../../mod/pilot/model/proxy.ts";
import { buildListeners } from "../../mod/pilot/translate/mod.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createChannel } from "../../mod/shared/channel.ts";
import { pushFrom } from "../pilot/_push.ts";

const quiet = createLogger({ write: () => {} });
const node = { id: "router~10.0.9.1~edge.app~app.svc.cluster.local" };
const text = new TextDecoder();

const BUNDLE: CertBundle = {
  chainPem: "CHAIN",
  keyPem: "KEY",
  rootPem: "ROOT",
  notBefore: 0,
  notAfter: 1,
  identity: "spiffe://cluster.local/ns/app/sa/edge",
};

const GATEWAY = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: app }
spec:
  selector: { istio: edge }
  servers:
    - port: { number: 443, name: https, protocol: HTTPS }
      hosts: ["shop.example.com"]
      tls: { mode: MUTUAL, credentialNames: [shop-rsa, shop-ecdsa] }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: app }
spec:
  hosts: [web.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: app }
spec:
  hosts: [shop.example.com]
  gateways: [edge]
  http: [{ route: [{ destination: { host: web.app.svc.cluster.local } }] }]
`;

/** The SDS secret names the gateway listener on 443 asks its agent for. */
function gatewaySecretNames(): string[] {
  const push = pushFrom(GATEWAY);
  const router = proxyFromNode({ id: node.id, metadata: { NAMESPACE: "app", LABELS: { istio: "edge" } } });
  const listener = buildListeners(push, router).find((l) => l.name === "0.0.0.0_443")!;
  const ts = listener.filterChains[0]!.transportSocket!.configType;
  if (ts.case !== "typedConfig") throw new Error("no TLS context");
  const common = anyUnpack(ts.value, DownstreamTlsContextSchema)!.commonTlsContext!;
  const ca = common.validationContextType.case === "combinedValidationContext"
    ? [common.validationContextType.value.validationContextSdsSecretConfig!.name]
    : [];
  return [...common.tlsCertificateSdsSecretConfigs.map((s) => s.name), ...ca];
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

async function first<T>(it: AsyncIterator<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    it.next(),
    new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error("no response")), 5000))),
  ]);
  clearTimeout(timer);
  if (r.done) throw new Error("stream ended");
  return r.value;
}

const secretsOf = (res: DiscoveryResponse): Secret[] => res.resources.map((a) => anyUnpack(a, SecretSchema)!);

/** The PEM text of a secret: chain and key of a certificate, or the trusted CA. */
function pemOf(s: Secret): string {
  if (s.type.case === "tlsCertificate") {
    const v = s.type.value;
    return `${text.decode(v.certificateChain!.specifier.value as Uint8Array)}|${
      text.decode(v.privateKey!.specifier.value as Uint8Array)
    }`;
  }
  if (s.type.case === "validationContext") {
    return text.decode(s.type.value.trustedCa!.specifier.value as Uint8Array);
  }
  return "";
}

let dir: string;
let creds: string;
let sds: SdsServer;

function writeCredential(name: string, files: Record<string, string>): void {
  mkdirSync(join(creds, name), { recursive: true });
  for (const [f, content] of Object.entries(files)) writeFileSync(join(creds, name, f), content);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshd-agent-sds-cred-"));
  creds = join(dir, "credentials");
  writeCredential("shop-rsa", { "tls.crt": "RSA-CHAIN", "tls.key": "RSA-KEY", "ca.crt": "CLIENT-CA" });
  writeCredential("shop-ecdsa", { cert: "EC-CHAIN", key: "EC-KEY" });
  sds = await startSdsServer({
    path: join(dir, "sds.sock"),
    logger: quiet,
    initial: BUNDLE,
    credentialDir: creds,
  });
});
afterAll(async () => {
  await sds.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("credential directory", () => {
  test("credentialSecret() reads NAME/tls.crt+tls.key (or cert+key) and NAME-cacert from ca.crt", () => {
    expect(pemOf(anyUnpack(credentialSecret(creds, "shop-rsa")!.resource, SecretSchema)!)).toBe(
      "RSA-CHAIN|RSA-KEY",
    );
    expect(pemOf(anyUnpack(credentialSecret(creds, "shop-ecdsa")!.resource, SecretSchema)!)).toBe(
      "EC-CHAIN|EC-KEY",
    );
    expect(pemOf(anyUnpack(credentialSecret(creds, "shop-rsa-cacert")!.resource, SecretSchema)!)).toBe(
      "CLIENT-CA",
    );
    expect(credentialSecret(creds, "shop-ecdsa-cacert")).toBeUndefined();
    expect(credentialSecret(creds, "missing")).toBeUndefined();
  });

  test("credentialSecret() refuses names that are not one path segment", () => {
    writeFileSync(join(dir, "tls.crt"), "OUTSIDE");
    writeFileSync(join(dir, "tls.key"), "OUTSIDE");
    for (const name of ["..", "../credentials/shop-rsa", "a/b", ".hidden", ""]) {
      expect(credentialSecret(creds, name)).toBeUndefined();
    }
  });

  test("credentialSecrets() lists every credential and CA in the directory", () => {
    expect([...credentialSecrets(creds).keys()]).toEqual(["shop-ecdsa", "shop-rsa", "shop-rsa-cacert"]);
  });
});

describe("SDS serves what a gateway listener names", () => {
  test("the gateway's credentialNames and their CA come from the credential directory", async () => {
    const names = gatewaySecretNames();
    expect(names).toEqual(["shop-rsa", "shop-ecdsa", "shop-rsa-cacert"]);
    const req = createChannel<DiscoveryRequest>();
    const it = sdsClient(sds.path).streamSecrets(req)[Symbol.asyncIterator]();
    req.push(create(DiscoveryRequestSchema, { node, typeUrl: SECRET_TYPE_URL, resourceNames: names }));
    const res = await first(it);
    const got = Object.fromEntries(secretsOf(res).map((s) => [s.name, pemOf(s)]));
    expect(got).toEqual({
      "shop-rsa": "RSA-CHAIN|RSA-KEY",
      "shop-ecdsa": "EC-CHAIN|EC-KEY",
      "shop-rsa-cacert": "CLIENT-CA",
    });

    // A renewed certificate is pushed on refresh.
    req.push(create(DiscoveryRequestSchema, {
      typeUrl: SECRET_TYPE_URL,
      resourceNames: names,
      versionInfo: res.versionInfo,
      responseNonce: res.nonce,
    }));
    writeCredential("shop-ecdsa", { cert: "EC-CHAIN-2", key: "EC-KEY-2" });
    sds.refresh();
    const pushed = Object.fromEntries(secretsOf(await first(it)).map((s) => [s.name, pemOf(s)]));
    expect(pushed["shop-ecdsa"]).toBe("EC-CHAIN-2|EC-KEY-2");
    req.close();
  });

  test("FetchSecrets serves credentials next to the workload's own secrets", async () => {
    const res = await sdsClient(sds.path).fetchSecrets({
      node,
      typeUrl: SECRET_TYPE_URL,
      resourceNames: ["default", "shop-rsa", "missing"],
    });
    expect(secretsOf(res).map((s) => s.name)).toEqual(["default", "shop-rsa"]);
  });
});
