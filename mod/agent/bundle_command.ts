/**
 * `meshd vm bundle`: everything a VM needs to join a WorkloadGroup, made on the control plane
 * (with the daemon's --data-dir, which holds the token signing key and the CA's roots):
 * cluster.env, a single-use bootstrap token, root-cert.pem, the meshd-agent.service unit, the
 * meshd binary and a README, as a directory or a .tar.gz. Onboarding is then: copy the bundle,
 * install the binary, `systemctl enable --now meshd-agent`.
 *
 * What would make the VM fail later is refused now: an address the CA's TLS certificate does
 * not name (the names come from the certificate the daemon recorded in its --data-dir), and a
 * service account other than the one the WorkloadGroup's template names.
 *
 * @module
 */
import { chmodSync, copyFileSync, existsSync, readFileSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import type { Command } from "../cli/command.ts";
import { splitAddrList, splitHostPort } from "../cli/setting.ts";
import type { ServerNames } from "../citadel/mod.ts";
import { UsageError } from "../shared/errors.ts";
import { compiledExecutable } from "../shared/executable.ts";
import { chooseServiceAccount } from "./bundle_account.ts";
import { splitPem } from "./certs.ts";
import { ensureDir, writeFileAtomic } from "./files.ts";
import { defaultInstanceIp } from "./settings.ts";
import { type TarEntry, tarGz } from "./tar.ts";

/** Where the bundle's files go on the VM, unless --install-dir says otherwise. */
export const DEFAULT_INSTALL_DIR = "/etc/meshd";

/**
 * The systemd unit for the agent (config/systemd/meshd-agent.service is this text for
 * /etc/meshd; a test keeps the two equal).
 */
export function agentUnit(installDir = DEFAULT_INSTALL_DIR): string {
  return `# meshd node agent: keeps this machine's workload identity (certificate and key) fresh, serves
# SDS to the local Envoy, writes bootstraps and registers the workload with its WorkloadGroup.
# Settings come from ${installDir}/cluster.env (written by meshd vm bundle); flags here win.
[Unit]
Description=meshd node agent
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
ExecStart=/usr/local/bin/meshd agent --cluster-env=${installDir}/cluster.env --data-dir=\${STATE_DIRECTORY} --output-dir=\${RUNTIME_DIRECTORY}/certs --log-format=json
Restart=always
RestartSec=2s
# Exit 1 is a setting that cannot work (its one log line names it) and 2 a usage error:
# restarting would not fix either, so the unit stays failed with the reason in the journal.
RestartPreventExitStatus=1 2
# The key and certificate are also kept on persistent storage, so a reboot does not need a new
# token (certificates renew over mTLS with the current certificate).
StateDirectory=meshd-agent
StateDirectoryMode=0700
RuntimeDirectory=meshd-agent
RuntimeDirectoryMode=0750
RuntimeDirectoryPreserve=yes
ConfigurationDirectory=meshd
# Hardening
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
CapabilityBoundingSet=
UMask=0077

[Install]
WantedBy=multi-user.target
`;
}

/** What goes into cluster.env. */
export interface BundleValues {
  readonly namespace: string;
  readonly group: string;
  readonly serviceAccount: string;
  /** The group's labels, which the agent sends as its own (Istio's ISTIO_METAJSON_LABELS). */
  readonly labels?: Readonly<Record<string, string>>;
  /** The template's network (ISTIO_META_NETWORK). */
  readonly network?: string;
  readonly trustDomain: string;
  readonly caTlsAddr: string;
  readonly caAddr?: string;
  readonly discoveryAddr: string;
  readonly controlPlaneAuth: string;
  readonly installDir: string;
}

/** The cluster.env text (Istio's names; see mod/agent/settings.ts). */
export function clusterEnv(v: BundleValues, madeAt: Date): string {
  return [
    `# meshd onboarding for WorkloadGroup ${v.namespace}/${v.group}, made by meshd vm bundle at ${madeAt.toISOString()}`,
    `CA_ADDR=${v.caTlsAddr}`,
    ...(v.caAddr ? [`MESHD_CA_ADDR=${v.caAddr}`] : []),
    `PILOT_ADDRESS=${v.discoveryAddr}`,
    `CONTROL_PLANE_AUTH_POLICY=${v.controlPlaneAuth}`,
    `POD_NAMESPACE=${v.namespace}`,
    `SERVICE_ACCOUNT=${v.serviceAccount}`,
    `ISTIO_META_WORKLOAD_GROUP=${v.group}`,
    ...(v.labels ? [`ISTIO_METAJSON_LABELS='${JSON.stringify(v.labels)}'`] : []),
    ...(v.network ? [`ISTIO_META_NETWORK=${v.network}`] : []),
    `TRUST_DOMAIN=${v.trustDomain}`,
    `TOKEN_FILE=${v.installDir}/token`,
    `CA_ROOT_CA=${v.installDir}/root-cert.pem`,
    "",
  ].join("\n");
}

/** The name of the binary inside a bundle. */
const BINARY_NAME = "meshd";

function readme(v: BundleValues, tokenUntil: Date, withBinary: boolean): string {
  const binaryRow = withBinary
    ? "| meshd | /usr/local/bin/meshd (mode 0755) | the meshd binary (the agent is `meshd agent`) |\n"
    : "";
  const binaryNote = withBinary ? "" : `
This bundle holds no meshd binary. Build it from meshd's source tree with \`npm ci && npm run build\`
(it writes \`dist/meshd\`, one self-contained file), copy that file here as \`meshd\`, then follow the steps.
`;
  return `# Onboarding a VM into ${v.namespace}/${v.group}

This bundle makes the machine a workload of WorkloadGroup \`${v.namespace}/${v.group}\` with the identity
\`spiffe://${v.trustDomain}/ns/${v.namespace}/sa/${v.serviceAccount}\`.

| file | goes to | what |
| --- | --- | --- |
| cluster.env | ${v.installDir}/cluster.env | the agent's settings (CA ${v.caTlsAddr}, pilot ${v.discoveryAddr}) |
| token | ${v.installDir}/token (mode 0600) | single-use bootstrap token, valid until ${tokenUntil.toISOString()} |
| root-cert.pem | ${v.installDir}/root-cert.pem | the mesh's roots, to verify the CA before the first certificate |
| meshd-agent.service | /etc/systemd/system/meshd-agent.service | the systemd unit |
${binaryRow}${binaryNote}
On the VM, as root, in this directory:

\`\`\`sh
install -m 0755 meshd /usr/local/bin/meshd
install -d -m 0755 ${v.installDir}
install -m 0644 cluster.env root-cert.pem ${v.installDir}/
install -m 0600 token ${v.installDir}/token
install -m 0644 meshd-agent.service /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now meshd-agent
curl -s 127.0.0.1:15020/healthz/ready
\`\`\`

The agent redeems the token once for the first certificate and from then on renews over mutual TLS
with its current certificate (kept in /var/lib/meshd-agent, so reboots need no token). Envoy reads
\`/run/meshd-agent/certs/envoy-bootstrap.json\`; proxyless gRPC applications set
\`GRPC_XDS_BOOTSTRAP=/run/meshd-agent/certs/grpc-bootstrap.json\`.
`;
}

type Citadel = typeof import("../citadel/mod.ts");

/**
 * Throws a UsageError, naming the flag and the `meshd serve` setting that fixes it, when the
 * certificate of the CA's TLS port does not name the host of one of `addrs` (flag, HOST:PORT).
 * The names are those of the certificate the daemon recorded in its data dir, or, when it has
 * recorded none, those a daemon with default settings would put in it on this host.
 */
function checkCertificateNames(
  citadel: Citadel,
  dataDir: string,
  addrs: ReadonlyArray<readonly [string, string]>,
): void {
  let served: ServerNames | undefined;
  try {
    served = citadel.readServedNames(dataDir);
  } catch (err) {
    throw new UsageError(`meshd vm bundle: --data-dir: ${(err as Error).message}`);
  }
  const names = served ??
    citadel.serverNamesOf(citadel.serverCertNames({ dnsNames: citadel.DEFAULT_SERVER_DNS_NAMES, ips: [] }));
  const file = join(dataDir, citadel.SERVER_CERT_FILE);
  for (const [flag, addr] of addrs) {
    const host = splitHostPort(addr)?.host ?? "";
    if (citadel.namesCover(names, host)) continue;
    const what = served
      ? `the certificate meshd serve presents on its TLS port (${file})`
      : `the certificate meshd serve would present with default settings (it has not recorded one in ${file} yet)`;
    const fix = isIP(host) !== 0 ? `--ca-server-ips ${host}` : `--ca-server-dns-names ${host}`;
    throw new UsageError(
      `meshd vm bundle: ${flag} ${addr}: ${what} does not name ${host}; it names ${
        [...names.dns, ...names.ips].join(", ")
      }. Add ${fix} to meshd serve's settings and restart it, or give ${flag} an address the certificate names`,
    );
  }
}

/**
 * The meshd binary to put in the bundle: `--binary`, else this executable when it is the
 * compiled meshd. Throws when `--binary` is not a file; warns when there is no binary.
 */
function bundleBinary(explicit: string | undefined, warn: (message: string) => void): string | undefined {
  const binary = explicit ?? compiledExecutable();
  if (binary === undefined) {
    warn(
      "the bundle holds no meshd binary (this is not the compiled meshd): build it with " +
        "`npm run build` and give --binary dist/meshd; the bundle's README says the same",
    );
    return undefined;
  }
  let isFile = false;
  try {
    isFile = statSync(binary).isFile();
  } catch {
    // reported below
  }
  if (!isFile) throw new UsageError(`meshd vm bundle: --binary: ${binary} is not a file`);
  return binary;
}

/** `meshd vm`. */
export const vmCommand: Command = {
  name: "vm",
  summary: "make an onboarding bundle for a VM joining a WorkloadGroup (run on the control plane)",
  usage:
    "meshd vm bundle --workload-group NS/NAME --out DIR|FILE.tar.gz [--discovery-addr HOST:15012] [flags]",
  description: [
    "Writes cluster.env, a single-use bootstrap token, root-cert.pem, meshd-agent.service, the meshd binary and a README.",
    "Run it where meshd serve runs: it needs the daemon's --data-dir (token signing key; the roots under",
    "ca/root-cert.pem, or --ca-dir / --root-cert; the TLS certificate it serves) and reads the WorkloadGroup from",
    "the daemon's config over --admin-addr. The TLS addresses must be named by the daemon's certificate",
    "(meshd serve --ca-server-ips / --ca-server-dns-names), and the service account is the group template's.",
  ].join("\n"),
  settings: () => [
    {
      name: "workload-group",
      kind: { type: "string" },
      help: "the WorkloadGroup as NAMESPACE/NAME (required)",
    },
    {
      name: "out",
      kind: { type: "path" },
      help: "output directory, or a file ending in .tar.gz or .tgz (required)",
    },
    {
      name: "service-account",
      kind: { type: "string" },
      help:
        "the workload's service account (default: the WorkloadGroup template's serviceAccount, or default when it names none); another one is refused",
    },
    {
      name: "admin-addr",
      kind: { type: "addr" },
      default: "127.0.0.1:15014",
      help: "admin address of the running meshd serve, whose config holds the WorkloadGroup",
    },
    {
      name: "binary",
      kind: { type: "path" },
      help:
        "the meshd binary to put in the bundle (default: this executable when it is the compiled meshd; npm run build makes dist/meshd)",
    },
    {
      name: "discovery-addr",
      kind: { type: "addrs" },
      help:
        "pilot's address as the VM reaches it, or a comma list of replicas (default: this host's first non-loopback IPv4, port 15012)",
    },
    {
      name: "ca-tls-addr",
      kind: { type: "addrs" },
      help: "the CA's TLS address as the VM reaches it (default: --discovery-addr)",
    },
    {
      name: "ca-addr",
      kind: { type: "addrs" },
      help:
        "the CA's plaintext address (15010), or a comma list of replicas, if the VM may bootstrap over it",
    },
    {
      name: "control-plane-auth",
      kind: { type: "enum", values: ["MUTUAL_TLS", "NONE"] },
      default: "MUTUAL_TLS",
      help: "xDS security the VM uses (NONE for the plaintext port)",
    },
    {
      name: "token-ttl",
      kind: { type: "duration", min: 60_000 },
      default: 24 * 3_600_000,
      help: "how long the bootstrap token stays valid",
    },
    {
      name: "data-dir",
      kind: { type: "path" },
      default: "/var/lib/meshd",
      help:
        "the daemon's data directory (token signing key, ca/root-cert.pem, trust-domain, ca-server-cert.pem)",
    },
    {
      name: "ca-dir",
      kind: { type: "path" },
      help: "the daemon's --ca-dir, when it runs a bring-your-own CA",
    },
    {
      name: "root-cert",
      kind: { type: "path" },
      help: "PEM roots to ship (default: from --ca-dir or --data-dir)",
    },
    {
      name: "trust-domain",
      kind: { type: "string" },
      help: "trust domain (default: what the daemon recorded)",
    },
    {
      name: "install-dir",
      kind: { type: "path" },
      default: DEFAULT_INSTALL_DIR,
      help: "where the bundle's files go on the VM",
    },
  ],
  args: { min: 1, max: 1, name: "bundle" },
  async run(inv) {
    if (inv.args[0] !== "bundle") {
      throw new UsageError(`meshd vm: unknown subcommand ${inv.args[0]}; usage: ${this.usage}`);
    }
    const s = inv.settings;
    const ref = s.optionalString("workload-group");
    const out = s.optionalString("out");
    if (!ref || !out) throw new UsageError("meshd vm bundle: --workload-group and --out are required");
    const slash = ref.indexOf("/");
    if (slash <= 0 || slash === ref.length - 1 || ref.indexOf("/", slash + 1) >= 0) {
      throw new UsageError(
        `meshd vm bundle: --workload-group: want NAMESPACE/NAME, got ${JSON.stringify(ref)}`,
      );
    }
    const namespace = ref.slice(0, slash);
    const group = ref.slice(slash + 1);
    const dataDir = s.string("data-dir");
    const citadel = await import("../citadel/mod.ts");
    const { createToken, loadOrCreateTokenKey, TRUST_DOMAIN_FILE } = citadel;
    const refProblem = citadel.namespaceProblem(namespace) ??
      citadel.dnsSubdomainProblem("workload group", group);
    if (refProblem) throw new UsageError(`meshd vm bundle: --workload-group: ${refProblem}`);

    const explicitRoot = s.optionalString("root-cert");
    const caDir = s.optionalString("ca-dir");
    const [rootWhat, rootFile] = explicitRoot
      ? ["--root-cert", explicitRoot]
      : caDir
      ? ["--ca-dir", join(caDir, "root-cert.pem")]
      : ["--data-dir", join(dataDir, "ca", "root-cert.pem")];
    if (!existsSync(rootFile)) {
      throw new UsageError(
        `meshd vm bundle: ${rootWhat}: ${rootFile} does not exist; run this with the daemon's --data-dir ` +
          "(after it started once), or give --ca-dir or --root-cert",
      );
    }
    let rootPem: string;
    try {
      rootPem = readFileSync(rootFile, "utf8");
    } catch (err) {
      throw new UsageError(
        `meshd vm bundle: ${rootWhat}: cannot read ${rootFile}: ${(err as Error).message}`,
      );
    }
    if (splitPem(rootPem).length === 0) {
      throw new UsageError(`meshd vm bundle: ${rootWhat}: ${rootFile} holds no PEM certificate`);
    }

    const keyFile = join(dataDir, "token-signing-key.pem");
    if (!existsSync(keyFile)) {
      throw new UsageError(
        `meshd vm bundle: ${keyFile} does not exist; run this with the daemon's --data-dir, so the daemon accepts the token`,
      );
    }
    const recorded = join(dataDir, TRUST_DOMAIN_FILE);
    const trustDomain = s.optionalString("trust-domain") ??
      (existsSync(recorded) ? readFileSync(recorded, "utf8").trim() : undefined) ?? "cluster.local";
    const discoveryAddr = s.optionalString("discovery-addr") ?? `${defaultInstanceIp()}:15012`;
    const auth = s.string("control-plane-auth");
    const caTlsAddr = s.optionalString("ca-tls-addr") ?? (auth === "MUTUAL_TLS" ? discoveryAddr : undefined);
    if (caTlsAddr === undefined) {
      throw new UsageError(
        "meshd vm bundle: with --control-plane-auth NONE, give --ca-tls-addr (the CA's TLS port)",
      );
    }
    const items = (flag: string, list: string) => splitAddrList(list).map((a) => [flag, a] as const);
    const caAddr = s.optionalString("ca-addr");
    for (
      const [flag, a] of [
        ...items("--discovery-addr", discoveryAddr),
        ...items("--ca-tls-addr", caTlsAddr),
        ...(caAddr === undefined ? [] : items("--ca-addr", caAddr)),
      ]
    ) {
      const host = splitHostPort(a)?.host ?? "";
      if (host === "" || host === "0.0.0.0" || host === "127.0.0.1" || host === "::") {
        inv.err(`warning: ${flag} ${a} is not an address another machine can reach\n`);
      }
    }
    // The VM checks the CA's (and, with MUTUAL_TLS, pilot's) certificate against the address
    // it dials: refuse an address that certificate does not name now, not on the VM.
    checkCertificateNames(citadel, dataDir, [
      ...(auth === "MUTUAL_TLS" ? items("--discovery-addr", discoveryAddr) : []),
      ...items("--ca-tls-addr", caTlsAddr),
    ]);
    const warn = (m: string) => inv.err(`warning: ${m}\n`);
    const choice = await chooseServiceAccount({
      adminAddr: s.string("admin-addr"),
      namespace,
      group,
      explicit: s.optionalString("service-account"),
      warn,
    });
    const serviceAccount = choice.serviceAccount;
    const binary = bundleBinary(s.optionalString("binary"), warn);
    const now = Date.now();
    const ttl = s.number("token-ttl");
    let token: string;
    try {
      token = createToken(loadOrCreateTokenKey(dataDir, warn), {
        trustDomain,
        namespace,
        serviceAccount,
        workloadGroup: group,
        ttlMs: ttl,
        singleUse: true,
        now,
      });
    } catch (err) {
      throw new UsageError(`meshd vm bundle: ${(err as Error).message}`);
    }
    const values: BundleValues = {
      namespace,
      group,
      serviceAccount,
      ...(choice.labels ? { labels: choice.labels } : {}),
      ...(choice.network ? { network: choice.network } : {}),
      trustDomain,
      caTlsAddr,
      caAddr,
      discoveryAddr,
      controlPlaneAuth: auth,
      installDir: s.string("install-dir"),
    };
    const tokenUntil = new Date(now + ttl);
    const files: Array<{ name: string; data: string; mode: number }> = [
      { name: "cluster.env", data: clusterEnv(values, new Date(now)), mode: 0o644 },
      { name: "token", data: token + "\n", mode: 0o600 },
      { name: "root-cert.pem", data: rootPem, mode: 0o644 },
      { name: "meshd-agent.service", data: agentUnit(values.installDir), mode: 0o644 },
      { name: "README.md", data: readme(values, tokenUntil, binary !== undefined), mode: 0o644 },
    ];
    if (/\.(tar\.gz|tgz)$/.test(out)) {
      const top = `meshd-vm-${namespace}-${group}/`;
      const entries: TarEntry[] = [
        { name: top, mode: 0o700 },
        ...files.map((f) => ({ name: top + f.name, data: f.data, mode: f.mode })),
      ];
      if (binary !== undefined) {
        entries.push({ name: top + BINARY_NAME, data: readFileSync(binary), mode: 0o755 });
      }
      writeFileAtomic(out, tarGz(entries, now), 0o600);
    } else {
      ensureDir(out, 0o700, "--out");
      for (const f of files) writeFileAtomic(join(out, f.name), f.data, f.mode);
      if (binary !== undefined) {
        copyFileSync(binary, join(out, BINARY_NAME));
        chmodSync(join(out, BINARY_NAME), 0o755);
      }
    }
    inv.err(
      `bundle for ${namespace}/${group} (spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}) written to ${out}; ` +
        `the token is single-use and valid until ${tokenUntil.toISOString()}\n`,
    );
    return 0;
  },
};
