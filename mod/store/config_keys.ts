/**
 * Where config lives in etcd: one key per resource, `PREFIX/config/GROUP/KIND/NAMESPACE/NAME`
 * (e.g. `/meshd/config/networking.istio.io/VirtualService/bookinfo/reviews`), whose value is the
 * resource as a JSON document with apiVersion, kind, metadata (name, namespace, labels,
 * annotations) and spec.
 *
 * @module
 */
import type { Resource } from "../api/resource.ts";

/** The identity of a resource, as its key spells it. */
export interface ConfigKeyParts {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

/** The folder of every config key under a store prefix: `PREFIX/config/`. */
export function configPrefix(prefix: string): string {
  return `${prefix}/config/`;
}

/** The folder of one kind's keys: `PREFIX/config/GROUP/KIND/`. */
export function kindPrefix(prefix: string, group: string, kind: string): string {
  return `${configPrefix(prefix)}${group}/${kind}/`;
}

/** The key of one resource. */
export function configKey(prefix: string, r: ConfigKeyParts): string {
  return `${kindPrefix(prefix, r.group, r.kind)}${r.namespace}/${r.name}`;
}

/** The key of a parsed resource. */
export function resourceConfigKey(prefix: string, r: Pick<Resource, "group" | "kind" | "metadata">): string {
  return configKey(prefix, {
    group: r.group,
    kind: r.kind,
    namespace: r.metadata.namespace,
    name: r.metadata.name,
  });
}

/** Reads a key back into its parts; undefined when it is not `PREFIX/config/G/K/NS/NAME`. */
export function parseConfigKey(prefix: string, key: string): ConfigKeyParts | undefined {
  const folder = configPrefix(prefix);
  if (!key.startsWith(folder)) return undefined;
  const parts = key.slice(folder.length).split("/");
  if (parts.length !== 4 || parts.some((p) => p === "")) return undefined;
  const [group, kind, namespace, name] = parts as [string, string, string, string];
  return { group, kind, namespace, name };
}

/** The document stored for a resource: what it says, without where it was read from. */
export function resourceDocument(r: Resource): Record<string, unknown> {
  const { name, namespace, labels, annotations } = r.metadata;
  return {
    apiVersion: r.group === "" ? r.version : `${r.group}/${r.version}`,
    kind: r.kind,
    metadata: {
      name,
      namespace,
      ...(labels === undefined ? {} : { labels }),
      ...(annotations === undefined ? {} : { annotations }),
    },
    spec: r.spec ?? {},
  };
}

const encoder = new TextEncoder();

/** The value stored for a resource: its document as indented JSON, so errors point at a line. */
export function encodeResource(r: Resource): Uint8Array {
  return encoder.encode(JSON.stringify(resourceDocument(r), null, 2) + "\n");
}

/**
 * Checks that a stored value is one JSON document of the resource its key names. Returns a
 * reason when it is not (the key's resource is then rejected, naming the key), else undefined.
 * The spec is not looked at here; galley validates it as it validates a file.
 */
export function identityProblem(parts: ConfigKeyParts, value: string): string | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(value);
  } catch (err) {
    return `the value is not a JSON document (${(err as Error).message}); meshd config apply writes JSON`;
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return "the value is not a JSON object with apiVersion, kind, metadata and spec";
  }
  const d = doc as {
    apiVersion?: unknown;
    kind?: unknown;
    metadata?: { name?: unknown; namespace?: unknown };
  };
  const apiVersion = typeof d.apiVersion === "string" ? d.apiVersion : "";
  const group = apiVersion.includes("/") ? apiVersion.slice(0, apiVersion.lastIndexOf("/")) : "";
  const meta = typeof d.metadata === "object" && d.metadata !== null ? d.metadata : {};
  const namespace = meta.namespace === undefined ? "default" : meta.namespace;
  if (
    group !== parts.group || d.kind !== parts.kind || meta.name !== parts.name ||
    namespace !== parts.namespace
  ) {
    const said = `${String(d.kind)} ${String(namespace)}/${String(meta.name)} (${
      apiVersion || "no apiVersion"
    })`;
    return `the key names ${parts.kind} ${parts.namespace}/${parts.name} (${parts.group}) but its value is ${said}`;
  }
  return undefined;
}
