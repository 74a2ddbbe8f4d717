/**
 * Which service account an onboarding bundle's token names. Pilot registers a VM into a
 * WorkloadGroup only when the VM's identity has the service account the group's template names,
 * so the bundle takes it from the group (read from the running daemon's config over its admin
 * server) and refuses a different one, instead of handing out a token that gets a certificate
 * and is then left out of the mesh.
 *
 * @module
 */
import { getAdminJson } from "../cli/admin_client.ts";
import { UsageError } from "../shared/errors.ts";

/** The service account Istio gives a workload whose group's template names none. */
const DEFAULT_SERVICE_ACCOUNT = "default";

/** Options for chooseServiceAccount. */
export interface ServiceAccountOptions {
  /** The daemon's admin address (`--admin-addr`). */
  readonly adminAddr: string;
  readonly namespace: string;
  /** The WorkloadGroup's name. */
  readonly group: string;
  /** `--service-account`, when given. */
  readonly explicit?: string;
  /** Receives a warning line (no newline). */
  warn(message: string): void;
}

interface ConfigzResource {
  readonly spec?: {
    readonly metadata?: { readonly labels?: unknown };
    readonly template?: { readonly serviceAccount?: unknown; readonly network?: unknown };
  };
  readonly error?: string;
}

/** What the bundle takes from the WorkloadGroup: the identity, and what the VM's agent sends as its own. */
export interface GroupChoice {
  readonly serviceAccount: string;
  /** The group's `metadata.labels` (the labels its workloads carry), when it was read. */
  readonly labels?: Readonly<Record<string, string>>;
  /** The template's network, when it names one. */
  readonly network?: string;
}

/** The string-valued entries of `value`, or undefined when it is not an object or has none. */
function stringMap(value: unknown): Record<string, string> | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const out = Object.fromEntries(
    Object.entries(value).filter((e): e is [string, string] => typeof e[1] === "string"),
  );
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * The service account for the bundle: `--service-account` when given and the group's template
 * names the same one or none; otherwise the template's (or `default` when it names none). With
 * it, the group's labels and the template's network, which the VM's agent then sends as its own.
 * Throws a UsageError, naming the flags, when the given one differs from the template's, when
 * the daemon's config has no such group, or when the daemon cannot be asked and no
 * `--service-account` was given; with one given it only warns then.
 */
export async function chooseServiceAccount(opts: ServiceAccountOptions): Promise<GroupChoice> {
  const ref = `${opts.namespace}/${opts.group}`;
  const key = `networking.istio.io/WorkloadGroup/${ref}`;
  let answer;
  try {
    answer = await getAdminJson<ConfigzResource>(
      opts.adminAddr,
      `/debug/configz?key=${encodeURIComponent(key)}`,
    );
  } catch (err) {
    const why = `cannot read WorkloadGroup ${ref} (--admin-addr): ${(err as Error).message}`;
    if (opts.explicit !== undefined) {
      opts.warn(
        `${why}; --service-account ${opts.explicit} is not checked against the group's template, and the ` +
          "group's labels and network are not written into cluster.env",
      );
      return { serviceAccount: opts.explicit };
    }
    throw new UsageError(
      `meshd vm bundle: ${why}; run this where meshd serve runs, point --admin-addr at its admin address, ` +
        "or give --service-account",
    );
  }
  if (answer.status === 404) {
    throw new UsageError(
      `meshd vm bundle: --workload-group ${ref}: the config of meshd at ${opts.adminAddr} has no accepted ` +
        `WorkloadGroup ${ref} (meshd config-status --admin-addr ${opts.adminAddr} lists what it has)`,
    );
  }
  if (answer.status !== 200) {
    throw new UsageError(
      `meshd vm bundle: cannot read WorkloadGroup ${ref} from meshd at ${opts.adminAddr} (--admin-addr): ` +
        `HTTP ${answer.status}${answer.body.error ? `: ${answer.body.error}` : ""}`,
    );
  }
  const named = answer.body.spec?.template?.serviceAccount;
  const template = typeof named === "string" && named !== "" ? named : undefined;
  if (opts.explicit !== undefined && template !== undefined && opts.explicit !== template) {
    throw new UsageError(
      `meshd vm bundle: --service-account ${opts.explicit} does not match WorkloadGroup ${ref}, whose ` +
        `template.serviceAccount is ${template}; pilot would not register the VM (leave --service-account out to use ${template})`,
    );
  }
  const labels = stringMap(answer.body.spec?.metadata?.labels);
  const network = answer.body.spec?.template?.network;
  return {
    serviceAccount: opts.explicit ?? template ?? DEFAULT_SERVICE_ACCOUNT,
    ...(labels ? { labels } : {}),
    ...(typeof network === "string" && network !== "" ? { network } : {}),
  };
}
