/**
 * Golden-test inputs: `tests/pilot/golden/<case>.input.yaml` holds config documents and one
 * `kind: TestProxy` document naming the proxy (node id and metadata) and, optionally, config
 * directories to include (`include`, relative to the repository root). This reads a case into
 * a PushContext and a Proxy, and renders translation output as proto3 JSON.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse } from "yaml";
import { type JsonObject, toJson } from "@bufbuild/protobuf";
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import type { PushContext } from "../../../mod/pilot/model/push_context.ts";
import { type Proxy, proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import {
  buildClusters,
  buildEndpoints,
  buildListeners,
  buildRoutes,
} from "../../../mod/pilot/translate/mod.ts";
import { TRANSLATE_REGISTRY } from "../../../mod/pilot/translate/type_registry.ts";
import { pushFrom } from "../_push.ts";

/** The repository root. */
export const ROOT = resolve(import.meta.dir, "../../..");
/** Where golden inputs and outputs live. */
export const GOLDEN_DIR = join(ROOT, "tests/pilot/golden");

/** One golden case, read. */
export interface GoldenCase {
  readonly name: string;
  readonly push: PushContext;
  readonly proxy: Proxy;
}

interface TestProxySpec {
  id: string;
  metadata?: JsonObject;
  include?: string[];
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /\.(ya?ml)$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}

/** Reads `<name>.input.yaml`: its config (plus included directories) and its TestProxy. */
export function readCase(name: string): GoldenCase {
  const text = readFileSync(join(GOLDEN_DIR, `${name}.input.yaml`), "utf8");
  const docs = text.split(/^---[ \t]*$/m);
  let spec: TestProxySpec | undefined;
  const config: string[] = [];
  for (const doc of docs) {
    const parsed = parse(doc) as { kind?: string; spec?: TestProxySpec } | null;
    if (parsed?.kind === "TestProxy") spec = parsed.spec;
    else if (parsed) config.push(doc);
  }
  if (!spec) throw new Error(`${name}.input.yaml: no TestProxy document`);
  const included = (spec.include ?? []).flatMap((p) => {
    const abs = join(ROOT, p);
    return statSync(abs).isDirectory() ? yamlFiles(abs) : [abs];
  }).map((f) => readFileSync(f, "utf8"));
  const push = pushFrom(...included, config.join("\n---\n"));
  return { name, push, proxy: proxyFromNode({ id: spec.id, metadata: spec.metadata ?? {} }) };
}

/** The names of every golden case, sorted. */
export function caseNames(): string[] {
  return readdirSync(GOLDEN_DIR)
    .filter((f) => f.endsWith(".input.yaml"))
    .map((f) => f.slice(0, -".input.yaml".length))
    .sort();
}

/** Translation output for a proxy as proto3 JSON, as Envoy's protos decode it. */
export function renderGolden(push: PushContext, proxy: Proxy): JsonObject {
  const opts = { registry: TRANSLATE_REGISTRY };
  return {
    clusters: buildClusters(push, proxy).map((m) => toJson(ClusterSchema, m, opts)),
    listeners: buildListeners(push, proxy).map((m) => toJson(ListenerSchema, m, opts)),
    routes: buildRoutes(push, proxy).map((m) => toJson(RouteConfigurationSchema, m, opts)),
    endpoints: buildEndpoints(push, proxy).map((m) => toJson(ClusterLoadAssignmentSchema, m, opts)),
  };
}

/**
 * The first place two JSON values differ, as a path ("routes[0].virtualHosts[2].name") with
 * both values; undefined when they are equal.
 */
export function firstDifference(
  want: unknown,
  got: unknown,
  path = "",
): { path: string; want: unknown; got: unknown } | undefined {
  if (want === got) return undefined;
  if (Array.isArray(want) && Array.isArray(got)) {
    for (let i = 0; i < Math.max(want.length, got.length); i++) {
      const d = firstDifference(want[i], got[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (
    want && got && typeof want === "object" && typeof got === "object" && !Array.isArray(want) &&
    !Array.isArray(got)
  ) {
    const keys = [...new Set([...Object.keys(want), ...Object.keys(got)])].sort();
    for (const k of keys) {
      const d = firstDifference(
        (want as Record<string, unknown>)[k],
        (got as Record<string, unknown>)[k],
        path ? `${path}.${k}` : k,
      );
      if (d) return d;
    }
    return undefined;
  }
  return { path: path || "(root)", want, got };
}
