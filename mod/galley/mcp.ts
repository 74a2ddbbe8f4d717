/**
 * MCP-over-xDS: galley distributes its accepted resources to other meshd instances over ADS.
 * Each kind is one type URL, its Istio collection name `group/version/Kind`; each resource is an
 * istio.mcp.v1alpha1.Resource named "namespace/name", whose body is the spec as a Struct.
 */
import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type Any, anyIs, anyPack, anyUnpack, StructSchema } from "@bufbuild/protobuf/wkt";
import { ResourceSchema as McpResourceSchema } from "#gen/istio/mcp/v1alpha1/resource_pb.ts";
import type { ResourceProvider, XdsResource } from "../xds/mod.ts";
import { contentVersion } from "../shared/content_version.ts";
import type { Resource } from "../api/resource.ts";
import type { ConfigSnapshot, ConfigStore } from "./store.ts";

/** A kind that galley distributes: its group, kind and the version it is served as. */
export interface McpCollection {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

/** The MCP type URL (collection) of a kind: "networking.istio.io/v1/VirtualService". */
export function collectionOf(c: McpCollection): string {
  return `${c.group}/${c.version}/${c.kind}`;
}

/** Encodes one resource as an MCP envelope inside an Any. */
export function encodeMcpResource(r: Resource, version: string): Any {
  const spec = (r.spec ?? {}) as JsonValue;
  const env = create(McpResourceSchema, {
    metadata: {
      name: `${r.metadata.namespace}/${r.metadata.name}`,
      version,
      labels: { ...r.metadata.labels },
      annotations: { ...r.metadata.annotations },
    },
    body: anyPack(StructSchema, fromJson(StructSchema, spec)),
  });
  return anyPack(McpResourceSchema, env);
}

/**
 * Decodes an MCP envelope back into a JSON document of the collection's kind, for galley to
 * parse and validate like any other input. Throws on an envelope that is not one.
 */
export function decodeMcpResource(any: Any, c: McpCollection): { name: string; document: string } {
  if (!anyIs(any, McpResourceSchema)) {
    throw new Error(`resource has type ${any.typeUrl}, want istio.mcp.v1alpha1.Resource`);
  }
  const env = anyUnpack(any, McpResourceSchema)!;
  const full = env.metadata?.name ?? "";
  const slash = full.indexOf("/");
  const namespace = slash >= 0 ? full.slice(0, slash) : "default";
  const name = slash >= 0 ? full.slice(slash + 1) : full;
  if (name === "") throw new Error("resource metadata.name is empty");
  let spec: JsonValue = {};
  if (env.body) {
    if (!anyIs(env.body, StructSchema)) {
      throw new Error(`${full}: body has type ${env.body.typeUrl}, want google.protobuf.Struct`);
    }
    spec = toJson(StructSchema, anyUnpack(env.body, StructSchema)!);
  }
  const metadata: Record<string, unknown> = { name, namespace };
  if (env.metadata && Object.keys(env.metadata.labels).length) metadata.labels = env.metadata.labels;
  if (env.metadata && Object.keys(env.metadata.annotations).length) {
    metadata.annotations = env.metadata.annotations;
  }
  const apiVersion = c.group === "" ? c.version : `${c.group}/${c.version}`;
  return { name: full, document: JSON.stringify({ apiVersion, kind: c.kind, metadata, spec }) };
}

/** Options for createMcpProvider. */
export interface McpProviderOptions {
  /**
   * Whether the store holds the complete config yet (every source synced), and a promise that
   * settles when it does. Until then nothing is served: a replica must never take a half-loaded
   * config for the whole. Absent means ready.
   */
  ready?: { now(): boolean; promise: Promise<void> };
}

/**
 * An xDS resource provider serving a store's snapshot as MCP collections. Encodes each resource
 * once per content; every client gets the same bytes.
 */
export function createMcpProvider(
  store: ConfigStore,
  collections: readonly McpCollection[],
  opts: McpProviderOptions = {},
): ResourceProvider {
  const byUrl = new Map(collections.map((c) => [collectionOf(c), c]));
  const encoded = new WeakMap<Resource, XdsResource>();
  let cache: { snapshot: ConfigSnapshot; byUrl: Map<string, Map<string, XdsResource>> } | undefined;

  function build(snapshot: ConfigSnapshot, url: string): Map<string, XdsResource> {
    const c = byUrl.get(url)!;
    const out = new Map<string, XdsResource>();
    for (const r of snapshot.list(c.group, c.kind)) {
      let x = encoded.get(r);
      if (!x) {
        const version = contentVersion(
          JSON.stringify([r.metadata.labels ?? null, r.metadata.annotations ?? null, r.spec]),
        );
        x = {
          name: `${r.metadata.namespace}/${r.metadata.name}`,
          version,
          resource: encodeMcpResource(r, version),
        };
        encoded.set(r, x);
      }
      out.set(x.name, x);
    }
    return out;
  }

  return {
    typeUrls: [...byUrl.keys()],
    ready: () => opts.ready?.now() ?? true,
    resources(_client, typeUrl) {
      const snapshot = store.snapshot();
      if (cache?.snapshot !== snapshot) cache = { snapshot, byUrl: new Map() };
      let m = cache.byUrl.get(typeUrl);
      if (!m) {
        m = build(snapshot, typeUrl);
        cache.byUrl.set(typeUrl, m);
      }
      return m;
    },
    watch(listener) {
      opts.ready?.promise.then(() => listener(new Set(byUrl.keys())));
      return store.subscribe((change) => {
        const urls = new Set<string>();
        for (const key of [...change.added, ...change.updated, ...change.removed]) {
          const r = change.snapshot.resources.get(key) ?? change.previous.resources.get(key);
          if (!r) continue;
          for (const [url, c] of byUrl) if (c.group === r.group && c.kind === r.kind) urls.add(url);
        }
        if (urls.size > 0) listener(urls);
      });
    },
  };
}
