/**
 * How a Mixer rule names handlers and instances: `NAME` (the rule's namespace), `NAME.NAMESPACE`,
 * or Istio's fully qualified `NAME.KIND.NAMESPACE`. Galley's analyzers and mixer's dispatch both
 * resolve references with this one function.
 *
 * @module
 */

/** The namespace and name a handler or instance reference written in `namespace` points at. */
export function parseMixerRef(ref: string, namespace: string): { namespace: string; name: string } {
  const parts = ref.split(".");
  if (parts.length === 1) return { namespace, name: ref };
  if (parts.length === 2) return { namespace: parts[1]!, name: parts[0]! };
  return { namespace: parts[2]!, name: parts[0]! };
}
