import { describe, expect, test } from "bun:test";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { nodeMetadata } from "../../mod/agent/node.ts";
import {
  AGENT_SETTINGS,
  defaultInstanceIp,
  parseClusterEnv,
  resolveAgentConfig,
} from "../../mod/agent/settings.ts";

const CLUSTER_ENV = `# written by meshd vm bundle
CA_ADDR=meshd.example:15012
PILOT_ADDRESS="meshd.example:15012"
POD_NAMESPACE=vms
SERVICE_ACCOUNT='ratings'
ISTIO_META_WORKLOAD_GROUP=ratings
TRUST_DOMAIN=example.org
export TOKEN_FILE=/etc/meshd/token
ISTIO_METAJSON_LABELS={"app":"ratings","version":"v2"}
OUTPUT_CERTS=/run/meshd/certs
SECRET_TTL=12h
INSTANCE_IP=10.9.8.7
MESHD_DATA_DIR=/var/lib/agent-data

UNRELATED=ignored
`;

function resolve(argv: string[], env: Record<string, string> = {}, files: Record<string, string> = {}) {
  const parsed = parseCommandLine(AGENT_SETTINGS, argv, {
    command: "meshd agent",
    env,
    readFile: (p) => {
      if (!(p in files)) throw new Error(`ENOENT: ${p}`);
      return files[p]!;
    },
  });
  return resolveAgentConfig(parsed.settings, {
    readFile: (p) => {
      if (!(p in files)) throw new Error(`ENOENT: no such file ${p}`);
      return files[p]!;
    },
    hostname: "vm-host",
    instanceIp: () => "192.0.2.10",
  });
}

describe("agent settings", () => {
  test("the machine's network (--network, or ISTIO_META_NETWORK in cluster.env) goes into node metadata as NETWORK", () => {
    const env = `${CLUSTER_ENV}\nISTIO_META_NETWORK=net2\n`;
    const { config } = resolve(["--cluster-env=/c.env"], {}, { "/c.env": env });
    expect(config.workload.network).toBe("net2");
    expect(nodeMetadata(config.workload).NETWORK).toBe("net2");
    const flag = resolve(["--cluster-env=/c.env", "--network=net3"], {}, { "/c.env": env });
    expect(nodeMetadata(flag.config.workload).NETWORK).toBe("net3");
    const none = resolve(["--cluster-env=/c.env"], {}, { "/c.env": CLUSTER_ENV });
    expect(nodeMetadata(none.config.workload).NETWORK).toBeUndefined();
  });

  test("cluster.env supplies Istio-named values", () => {
    const { config, merged } = resolve(["--cluster-env=/etc/meshd/cluster.env"], {}, {
      "/etc/meshd/cluster.env": CLUSTER_ENV,
    });
    expect(config).toMatchObject({
      caTlsAddr: "meshd.example:15012",
      discoveryAddr: "meshd.example:15012",
      tokenFile: "/etc/meshd/token",
      outputDir: "/run/meshd/certs",
      dataDir: "/var/lib/agent-data",
      sdsSocket: "/run/meshd/certs/sds.sock",
      certTtlMs: 12 * 3_600_000,
      controlPlaneAuth: "MUTUAL_TLS",
      workload: {
        ip: "10.9.8.7",
        name: "vm-host",
        namespace: "vms",
        serviceAccount: "ratings",
        trustDomain: "example.org",
        labels: { app: "ratings", version: "v2" },
        workloadGroup: "ratings",
      },
    });
    expect(merged.find((m) => m.name === "namespace")).toEqual({
      name: "namespace",
      value: "vms",
      source: "cluster-env POD_NAMESPACE",
    });
    expect(merged.find((m) => m.name === "admin-addr")!.source).toBe("default");
  });

  test("flags win over MESHD_* variables, which win over the --config file, which wins over cluster.env", () => {
    const files = {
      "/c.env": CLUSTER_ENV,
      "/agent.yaml": "namespace: from-yaml\nserviceAccount: sa-yaml\ntrustDomain: yaml.org\n",
    };
    const env = { MESHD_NAMESPACE: "from-env", MESHD_SERVICE_ACCOUNT: "sa-env" };
    const { config, merged } = resolve(
      ["--cluster-env", "/c.env", "--config", "/agent.yaml", "--namespace", "from-flag"],
      env,
      files,
    );
    expect(config.workload.namespace).toBe("from-flag");
    expect(config.workload.serviceAccount).toBe("sa-env");
    expect(config.workload.trustDomain).toBe("yaml.org");
    expect(config.workload.workloadGroup).toBe("ratings");
    expect(Object.fromEntries(merged.map((m) => [m.name, m.source]))).toMatchObject({
      namespace: "flag",
      "service-account": "env",
      "trust-domain": "file",
      "workload-group": "cluster-env ISTIO_META_WORKLOAD_GROUP",
    });
  });

  test("cluster.env accepts MESHD_<FLAG> names too, and prefers the first Istio name listed", () => {
    const { config } = resolve(["--cluster-env=/c.env"], {}, {
      "/c.env": "NAMESPACE=second\nPOD_NAMESPACE=first\nSERVICE_ACCOUNT=sa\nMESHD_CA_ADDR=10.0.0.1:15010\n" +
        "MESHD_CA_TLS_ADDR=10.0.0.1:15012\nMESHD_LABELS=a=b,c=d\n",
    });
    expect(config.workload.namespace).toBe("first");
    expect(config.caAddr).toBe("10.0.0.1:15010");
    expect(config.workload.labels).toEqual({ a: "b", c: "d" });
  });

  test("defaults: host name, first non-loopback IPv4, directories, TTL, admin address", () => {
    const { config } = resolve(["--namespace=ns", "--service-account=sa", "--ca-tls-addr=10.0.0.1:15012"]);
    expect(config).toMatchObject({
      outputDir: "/var/run/meshd-agent",
      dataDir: "/var/lib/meshd-agent",
      sdsSocket: "/var/run/meshd-agent/sds.sock",
      certTtlMs: 86_400_000,
      adminAddr: "127.0.0.1:15020",
      workload: { ip: "192.0.2.10", name: "vm-host", trustDomain: "cluster.local", labels: {} },
    });
    expect(config.discoveryAddr).toBeUndefined();
    expect(defaultInstanceIp({
      lo: [{ family: "IPv4", internal: true, address: "127.0.0.1" } as never],
      eth0: [
        { family: "IPv6", internal: false, address: "fe80::1" } as never,
        { family: "IPv4", internal: false, address: "10.2.3.4" } as never,
      ],
    })).toBe("10.2.3.4");
  });

  test("errors name the setting, the cluster.env key and its line", () => {
    expect(() => resolve(["--service-account=sa", "--ca-tls-addr=h:1"])).toThrow(
      "meshd agent: --namespace is required (or POD_NAMESPACE in --cluster-env)",
    );
    expect(() =>
      resolve(["--cluster-env=/c.env"], {}, {
        "/c.env": "POD_NAMESPACE=a\nSERVICE_ACCOUNT=b\nCA_ADDR=nope\n",
      })
    )
      .toThrow('meshd agent: /c.env:3: CA_ADDR (--ca-tls-addr): want HOST:PORT (port 0-65535), got "nope"');
    expect(() => resolve(["--cluster-env=/c.env"], {}, { "/c.env": "POD_NAMESPACE=a\njust words\n" }))
      .toThrow(
        '/c.env:2: want KEY=VALUE, got "just words"',
      );
    expect(() => resolve(["--cluster-env=/missing.env"])).toThrow(/--cluster-env: cannot read \/missing.env/);
    expect(() => resolve(["--namespace=a", "--service-account=b", "--workload-group=g", "--ca-tls-addr=h:1"]))
      .toThrow(
        "--workload-group needs --discovery-addr",
      );
    expect(() => resolve(["--namespace=a", "--service-account=b", "--ca-addr=h:15010"])).toThrow(
      /no CA address for renewals/,
    );
    expect(() => resolve(["--namespace=a", "--service-account=b", "--ca-tls-addr=h:1", "--labels=novalue"]))
      .toThrow(
        '--labels: want KEY=VALUE, got "novalue"',
      );
    expect(() => resolve(["--namespace=a", "--service-account=b", "--ca-tls-addr=h:1", "--instance-ip=vm1"]))
      .toThrow(
        "--instance-ip: want an IP address",
      );
    expect(() => resolve(["--cluster-env=/c.env"], {}, { "/c.env": "ISTIO_METAJSON_LABELS=[1]\n" })).toThrow(
      "/c.env:1: ISTIO_METAJSON_LABELS (--labels): want a JSON object of labels",
    );
  });

  test("--discovery-addr stands in for the CA's TLS address only with mutual TLS", () => {
    const base = ["--namespace=a", "--service-account=b", "--discovery-addr=10.0.0.1:15012"];
    expect(resolve(base).config.caTlsAddr).toBe("10.0.0.1:15012");
    expect(() => resolve([...base, "--control-plane-auth=NONE"])).toThrow(/no CA address for renewals/);
    expect(resolve([...base, "--control-plane-auth=NONE", "--ca-tls-addr=10.0.0.1:15013"]).config.caTlsAddr)
      .toBe(
        "10.0.0.1:15013",
      );
  });

  test("parseClusterEnv() skips comments and blank lines and strips export and quotes", () => {
    const m = parseClusterEnv("# c\n\nexport A=1\nB=\"two words\"\nC='x'\nD=\n", "f");
    expect([...m].map(([k, v]) => [k, v.value, v.line])).toEqual([["A", "1", 3], ["B", "two words", 4], [
      "C",
      "x",
      5,
    ], ["D", "", 6]]);
  });
});
