/**
 * The WorkloadGroup `vms/ratings` (service account ratings-sa, port http 9080) that the
 * auto-registration tests register VMs into, in one place.
 */

/** Options for {@link ratingsGroupYaml}. */
export interface RatingsGroupOptions {
  /** Labels of the group besides `app: ratings`. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Labels of the template, if any. */
  readonly templateLabels?: Readonly<Record<string, string>>;
  /** YAML appended under `spec` (a probe, say), each line indented by two spaces. */
  readonly extra?: string;
}

/** The WorkloadGroup vms/ratings as YAML. */
export function ratingsGroupYaml(opts: RatingsGroupOptions = {}): string {
  const lines = (labels: Readonly<Record<string, string>>) =>
    Object.entries(labels).map(([k, v]) => `      ${k}: ${v}\n`).join("");
  const template = opts.templateLabels === undefined ? "" : `    labels:\n${lines(opts.templateLabels)}`;
  return `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: ratings
  namespace: vms
spec:
  metadata:
    labels:
${lines({ app: "ratings", ...opts.labels })}  template:
    serviceAccount: ratings-sa
    ports:
      http: 9080
${template}${opts.extra ?? ""}`;
}
