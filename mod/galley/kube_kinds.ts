/**
 * Istio's custom resources as the Kubernetes API serves them: for every Istio kind galley
 * understands, its API group, the versions meshd reads (preferred first) and the plural name
 * that forms its REST path (`/apis/GROUP/VERSION/PLURAL`). The kubernetes config source
 * lists and watches each of these in all namespaces.
 *
 * meshd's own MeshConfig (`config.meshd.io`) is not an Istio CRD and is not read from the API
 * server; mesh settings reach a pod through its ConfigMap (`--config-dir`).
 *
 * @module
 */
import { type KindInfo, knownKinds } from "./validate.ts";

/** One Istio custom resource type. */
export interface CrdKind {
  readonly group: string;
  /** As written in `kind:` (the Mixer kinds are lower-case). */
  readonly kind: string;
  /** Versions meshd accepts, preferred first; the first one the server serves is read. */
  readonly versions: readonly string[];
  /** The resource name in REST paths, e.g. "virtualservices". */
  readonly plural: string;
}

/** The API groups whose kinds are Istio custom resources. */
export const ISTIO_GROUPS: readonly string[] = [
  "networking.istio.io",
  "security.istio.io",
  "telemetry.istio.io",
  "config.istio.io",
];

/**
 * Plurals Istio's CRDs spell otherwise than English rules would: Istio 1.x named the SignalFx
 * adapter's resources `signalfxs`.
 */
const IRREGULAR_PLURALS: Readonly<Record<string, string>> = { signalfx: "signalfxs" };

/**
 * The plural of a kind as Istio's CRDs name it: lower case, then `y` after a consonant becomes
 * `ies`, a final `s`, `x`, `ch` or `sh` takes `es`, anything else takes `s`
 * (`ServiceEntry` → `serviceentries`, `prometheus` → `prometheuses`, `cloudwatch` →
 * `cloudwatches`, `apikey` → `apikeys`).
 */
export function crdPlural(kind: string): string {
  const k = kind.toLowerCase();
  const irregular = IRREGULAR_PLURALS[k];
  if (irregular !== undefined) return irregular;
  if (/[^aeiou]y$/.test(k)) return `${k.slice(0, -1)}ies`;
  if (/(s|x|ch|sh)$/.test(k)) return `${k}es`;
  return `${k}s`;
}

/** The custom resource type of a kind galley knows. */
function crdOf(k: KindInfo): CrdKind {
  return { group: k.group, kind: k.kind, versions: k.versions, plural: crdPlural(k.kind) };
}

/** Every Istio kind galley knows, as custom resource types, in galley's order. */
export const ISTIO_CRDS: readonly CrdKind[] = knownKinds
  .filter((k) => ISTIO_GROUPS.includes(k.group))
  .map(crdOf);

/**
 * The REST path of a collection (`namespace` undefined: across all namespaces) or, with
 * `name`, of one object: `/apis/GROUP/VERSION[/namespaces/NS]/PLURAL[/NAME]`.
 */
export function crdPath(c: CrdKind, version: string, namespace?: string, name?: string): string {
  const ns = namespace === undefined ? "" : `/namespaces/${encodeURIComponent(namespace)}`;
  const one = name === undefined ? "" : `/${encodeURIComponent(name)}`;
  return `/apis/${c.group}/${version}${ns}/${c.plural}${one}`;
}
