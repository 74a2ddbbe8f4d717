/**
 * How a Mixer rule names handlers and instances: `NAME` (the rule's namespace), `NAME.NAMESPACE`,
 * or Istio's fully qualified `NAME.KIND.NAMESPACE`. Galley's analyzers and mixer's dispatch both
 * resolve references with this one function.
 *
 * @module
 */
import { LEGACY_KINDS } from "./legacy.ts";

/**
 * The namespace and name a handler or instance reference written in `namespace` points at.
 * `NAME.X` is ambiguous, as in Istio: X is a kind (`denyall.denier`, Istio 1.x) or a namespace.
 * With `exists`, the kind reading is taken when X is a Mixer kind and NAME exists in `namespace`;
 * otherwise X is the namespace.
 */
export function parseMixerRef(
  ref: string,
  namespace: string,
  exists?: (namespace: string, name: string) => boolean,
): { namespace: string; name: string } {
  const parts = ref.split(".");
  if (parts.length === 1) return { namespace, name: ref };
  if (parts.length === 2) {
    const kind = parts[1]!;
    const isKind = kind === "handler" || kind === "instance" || LEGACY_KINDS.includes(kind);
    if (exists && isKind && exists(namespace, parts[0]!)) return { namespace, name: parts[0]! };
    return { namespace: parts[1]!, name: parts[0]! };
  }
  return { namespace: parts[2]!, name: parts[0]! };
}
