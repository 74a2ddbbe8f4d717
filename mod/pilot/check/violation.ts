/**
 * The shape of one Envoy acceptance failure: a rule that a generated
 * resource breaks and that would make Envoy (or a gRPC client) NACK the whole
 * response carrying it. Field rules and semantic checks both report these.
 *
 * @module
 */

/** One rule broken by one resource of a generated xDS set. */
export interface Violation {
  /** Stable id of the rule, e.g. "pgv.string.min_len", "route.unique_domains". */
  readonly rule: string;
  /** Type URL of the top-level resource. */
  readonly typeUrl: string;
  /** Name of the top-level resource. */
  readonly resource: string;
  /** Field path inside it, e.g. "filter_chains[0].filters[1].typed_config.http_filters[2].name". */
  readonly path: string;
  /** What Envoy would say, in words. */
  readonly message: string;
}
