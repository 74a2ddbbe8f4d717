import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { anyPack, StringValueSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AggregatedDiscoveryService } from "#gen/envoy/service/discovery/v3/ads_pb.ts";
import {
  type DeltaDiscoveryRequest,
  DeltaDiscoveryRequestSchema,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  type DiscoveryResponse,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { createGrpcServer, type GrpcServer } from "../../mod/grpc/server.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createChannel } from "../../mod/shared/channel.ts";
import type { ResourceProvider, XdsResource } from "../../mod/xds/provider.ts";
import { type AdsServer, createAdsServer } from "../../mod/xds/server.ts";
import { contentVersion } from "../../mod/shared/content_version.ts";

const TYPE = "type.googleapis.com/google.protobuf.StringValue";
const EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/** A provider over a mutable map of name -> text. */
function mapProvider(type = TYPE) {
  const data = new Map<string, string>();
  const listeners = new Set<(t: ReadonlySet<string>) => void>();
  const provider: ResourceProvider = {
    typeUrls: [type],
    resources() {
      const out = new Map<string, XdsResource>();
      for (const [name, text] of data) {
        out.set(name, {
          name,
          version: contentVersion(text),
          resource: anyPack(StringValueSchema, create(StringValueSchema, { value: text })),
        });
      }
      return out;
    },
    watch(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
  return {
    provider,
    set(name: string, text: string | undefined) {
      if (text === undefined) data.delete(name);
      else data.set(name, text);
      for (const l of listeners) l(new Set([type]));
    },
  };
}

/** Reads responses one at a time with a timeout; a read that timed out is resumed by the next call. */
function reader<T>(it: AsyncIterable<T>) {
  const iter = it[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | undefined;
  return {
    next: async (ms = 2000): Promise<T | "timeout"> => {
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
    },
  };
}

const node = { id: "sidecar~127.0.0.1~app.default~default.svc.cluster.local" };
let grpc: GrpcServer;
let ads: AdsServer;
let data: ReturnType<typeof mapProvider>;
let eds: ReturnType<typeof mapProvider>;
let client: ReturnType<typeof createClient<typeof AggregatedDiscoveryService>>;

beforeAll(async () => {
  grpc = createGrpcServer({ logger: createLogger({ write: () => {} }) });
  ads = createAdsServer({ logger: createLogger({ write: () => {} }) });
  data = mapProvider();
  ads.addProvider(data.provider);
  eds = mapProvider(EDS);
  ads.addProvider(eds.provider);
  ads.register(grpc);
  const addr = await grpc.listen("127.0.0.1:0");
  client = createClient(
    AggregatedDiscoveryService,
    createGrpcTransport({ baseUrl: `http://127.0.0.1:${addr.port}` }),
  );
});
afterAll(() => grpc.shutdown(200));

describe("ADS State of the World", () => {
  test("answers, records ACK and NACK, never re-sends a NACKed version, and ignores stale nonces", async () => {
    data.set("a", "one");
    const reqs = createChannel<DiscoveryRequest>();
    const abort = new AbortController();
    const res = reader<DiscoveryResponse>(client.streamAggregatedResources(reqs, { signal: abort.signal }));
    reqs.push(create(DiscoveryRequestSchema, { node, typeUrl: TYPE }));
    const r1 = await res.next();
    if (r1 === "timeout") throw new Error("no response");
    expect(r1.resources).toHaveLength(1);
    reqs.push(
      create(DiscoveryRequestSchema, { typeUrl: TYPE, versionInfo: r1.versionInfo, responseNonce: r1.nonce }),
    );
    // Let the ACK arrive first: an ACK carrying an older nonce than the latest push is stale.
    await Bun.sleep(50);
    expect(ads.streams()[0]!.types[0]!.ackedVersion).toBe(r1.versionInfo);
    data.set("b", "two");
    const r2 = await res.next();
    if (r2 === "timeout") throw new Error("no push");
    expect(r2.resources).toHaveLength(2);
    // NACK r2: nothing is re-sent until the data changes again.
    reqs.push(create(DiscoveryRequestSchema, {
      typeUrl: TYPE,
      versionInfo: r1.versionInfo,
      responseNonce: r2.nonce,
      errorDetail: { code: 3, message: "bad b" },
    }));
    expect(await res.next(300)).toBe("timeout");
    let st = ads.streams()[0]!.types[0]!;
    expect(st.nackedVersion).toBe(r2.versionInfo);
    expect(st.lastNack).toBe("bad b");
    expect(st.ackedVersion).toBe(r1.versionInfo);
    // A stale nonce (r1's) is ignored.
    reqs.push(
      create(DiscoveryRequestSchema, { typeUrl: TYPE, versionInfo: r1.versionInfo, responseNonce: r1.nonce }),
    );
    expect(await res.next(300)).toBe("timeout");
    data.set("b", "two, fixed");
    const r3 = await res.next();
    if (r3 === "timeout") throw new Error("no push after fix");
    expect(r3.versionInfo).not.toBe(r2.versionInfo);
    reqs.push(
      create(DiscoveryRequestSchema, { typeUrl: TYPE, versionInfo: r3.versionInfo, responseNonce: r3.nonce }),
    );
    await Bun.sleep(50);
    st = ads.streams()[0]!.types[0]!;
    expect(st.ackedVersion).toBe(r3.versionInfo);
    abort.abort();
    data.set("b", undefined);
  });

  test("a named subscription gets only the named resources", async () => {
    data.set("a", "one");
    data.set("c", "three");
    const reqs = createChannel<DiscoveryRequest>();
    const abort = new AbortController();
    const res = reader<DiscoveryResponse>(client.streamAggregatedResources(reqs, { signal: abort.signal }));
    reqs.push(create(DiscoveryRequestSchema, { node, typeUrl: TYPE, resourceNames: ["c"] }));
    const r = await res.next();
    if (r === "timeout") throw new Error("no response");
    expect(r.resources).toHaveLength(1);
    abort.abort();
  });

  test("refuses a stream without node id and an unknown type URL", async () => {
    const reqs = createChannel<DiscoveryRequest>();
    reqs.push(create(DiscoveryRequestSchema, { typeUrl: TYPE }));
    await expect(reader(client.streamAggregatedResources(reqs)).next()).rejects.toThrow("node.id");
    const reqs2 = createChannel<DiscoveryRequest>();
    reqs2.push(create(DiscoveryRequestSchema, { node, typeUrl: "type.googleapis.com/nope" }));
    await expect(reader(client.streamAggregatedResources(reqs2)).next()).rejects.toThrow("not served here");
  });
});

describe("ADS State of the World, incremental types", () => {
  test("endpoints (and routes) are re-sent only where they changed; a named subscription is answered even if empty", async () => {
    eds.set("x", "1");
    eds.set("y", "2");
    const reqs = createChannel<DiscoveryRequest>();
    const abort = new AbortController();
    const res = reader<DiscoveryResponse>(client.streamAggregatedResources(reqs, { signal: abort.signal }));
    reqs.push(create(DiscoveryRequestSchema, { node, typeUrl: EDS, resourceNames: ["x", "y", "z"] }));
    const r1 = await res.next();
    if (r1 === "timeout") throw new Error("no response");
    expect(r1.resources).toHaveLength(2);
    // A SotW ACK restates the subscription.
    reqs.push(
      create(DiscoveryRequestSchema, {
        typeUrl: EDS,
        versionInfo: r1.versionInfo,
        responseNonce: r1.nonce,
        resourceNames: ["x", "y", "z"],
      }),
    );
    await Bun.sleep(50);
    eds.set("y", "2b");
    const r2 = await res.next();
    if (r2 === "timeout") throw new Error("no push");
    expect(r2.resources).toHaveLength(1);
    expect(r2.versionInfo).not.toBe(r1.versionInfo);
    abort.abort();
  });
});

describe("ADS Delta", () => {
  test("sends only what changed, removals by name, and honours unsubscribe", async () => {
    data.set("a", "one");
    data.set("c", "three");
    const reqs = createChannel<DeltaDiscoveryRequest>();
    const abort = new AbortController();
    const res = reader<DeltaDiscoveryResponse>(
      client.deltaAggregatedResources(reqs, { signal: abort.signal }),
    );
    reqs.push(
      create(DeltaDiscoveryRequestSchema, {
        node,
        typeUrl: TYPE,
        initialResourceVersions: { a: contentVersion("one") },
      }),
    );
    const r1 = await res.next();
    if (r1 === "timeout") throw new Error("no response");
    expect(r1.resources.map((r) => r.name)).toEqual(["c"]);
    reqs.push(create(DeltaDiscoveryRequestSchema, { typeUrl: TYPE, responseNonce: r1.nonce }));
    data.set("c", undefined);
    const r2 = await res.next();
    if (r2 === "timeout") throw new Error("no removal");
    expect(r2.resources).toHaveLength(0);
    expect(r2.removedResources).toEqual(["c"]);
    reqs.push(create(DeltaDiscoveryRequestSchema, { typeUrl: TYPE, responseNonce: r2.nonce }));
    data.set("a", "one, changed");
    const r3 = await res.next();
    if (r3 === "timeout") throw new Error("no update");
    expect(r3.resources.map((r) => r.name)).toEqual(["a"]);
    abort.abort();
  });
});
