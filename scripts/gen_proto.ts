/**
 * Generates protobuf-es TypeScript for meshd.
 *
 * Takes the import closure of the Envoy API files meshd needs out of the `@grpc/grpc-js-xds`
 * package into `proto/third_party/` (git-ignored), adds `validate.StringRules.ignore_empty`
 * (the package's validate.proto predates its Envoy API), takes etcd's v3 API from the `etcd3`
 * package (its `proto/` only; meshd calls etcd through Connect), then runs `buf generate` into `gen/`.
 * Runs on `npm ci` (postinstall) and by hand with `npm run gen`.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { spawnSync } from "node:child_process";

const root = resolve(import.meta.dir, "..");
const deps = join(root, "node_modules/@grpc/grpc-js-xds/deps");
const includeDirs = ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => join(deps, d));
const outDir = join(root, "proto/third_party");
const etcdProtos = join(root, "node_modules/etcd3/proto");

/**
 * etcd's v3 API files as the `etcd3` package ships them, and where each goes: etcd's own layout,
 * so that the imports (`./kv.proto` in the package) can be rewritten to full paths.
 */
export const ETCD_FILES: Readonly<Record<string, string>> = {
  "rpc.proto": "etcd/api/etcdserverpb/rpc.proto",
  "kv.proto": "etcd/api/mvccpb/kv.proto",
  "auth.proto": "etcd/api/authpb/auth.proto",
};

/** The Envoy API files meshd speaks; everything they import follows. */
export const ROOTS = [
  "envoy/service/discovery/v3/ads.proto",
  "envoy/service/secret/v3/sds.proto",
  "envoy/service/status/v3/csds.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/config/core/v3/health_check.proto",
  "envoy/config/bootstrap/v3/bootstrap.proto",
  "envoy/admin/v3/config_dump.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
  "envoy/extensions/filters/network/rbac/v3/rbac.proto",
  "envoy/extensions/filters/network/ext_authz/v3/ext_authz.proto",
  "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
  "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
  "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
  "envoy/extensions/filters/udp/dns_filter/v3/dns_filter.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/filters/http/rbac/v3/rbac.proto",
  "envoy/extensions/filters/http/fault/v3/fault.proto",
  "envoy/extensions/filters/http/cors/v3/cors.proto",
  "envoy/extensions/filters/http/jwt_authn/v3/config.proto",
  "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
  "envoy/extensions/filters/http/ratelimit/v3/rate_limit.proto",
  "envoy/service/auth/v3/external_auth.proto",
  "envoy/service/ratelimit/v3/rls.proto",
  "envoy/service/accesslog/v3/als.proto",
  "envoy/extensions/access_loggers/grpc/v3/als.proto",
  "envoy/extensions/access_loggers/file/v3/file.proto",
  "envoy/extensions/transport_sockets/tls/v3/tls.proto",
  "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
  "envoy/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol.proto",
  "envoy/extensions/load_balancing_policies/ring_hash/v3/ring_hash.proto",
  "envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto",
  "envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto",
  "envoy/extensions/load_balancing_policies/wrr_locality/v3/wrr_locality.proto",
  "envoy/extensions/clusters/aggregate/v3/cluster.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
  "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
  "envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto",
  "envoy/config/trace/v3/zipkin.proto",
  "envoy/config/trace/v3/http_tracer.proto",
];

function locate(file: string): string | undefined {
  if (file.startsWith("google/protobuf/")) return undefined; // well-known types ship with buf
  for (const dir of includeDirs) {
    const p = join(dir, file);
    if (existsSync(p)) return p;
  }
  throw new Error(`gen_proto: ${file} is imported but not found under ${deps}`);
}

/** Returns every file reachable from `roots` through `import` statements. */
export function closure(roots: readonly string[]): Map<string, string> {
  const found = new Map<string, string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (found.has(file)) continue;
    const path = locate(file);
    if (path === undefined) continue;
    found.set(file, path);
    for (const m of readFileSync(path, "utf8").matchAll(/^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)";/gm)) {
      queue.push(m[1]!);
    }
  }
  return found;
}

function patchValidate(): void {
  const p = join(outDir, "validate/validate.proto");
  const text = readFileSync(p, "utf8");
  if (text.includes("ignore_empty")) return;
  const anchor = "optional bool strict = 25 [default = true];";
  if (!text.includes(anchor)) throw new Error(`gen_proto: cannot find StringRules.strict in ${p}`);
  writeFileSync(
    p,
    text.replace(
      anchor,
      `${anchor}\n\n  // Added by meshd's generate step: newer Envoy APIs use it.\n  optional bool ignore_empty = 26;`,
    ),
  );
}

/**
 * Copies etcd's API files into place with full import paths. The package's rpc.proto uses the
 * `google.api.http` option without importing its definition; the import is added (googleapis
 * comes with the Envoy closure's sources). Returns the files the copies import from elsewhere.
 */
function copyEtcd(): string[] {
  if (!existsSync(etcdProtos)) throw new Error(`gen_proto: ${etcdProtos} is missing; run npm ci`);
  for (const [name, dest] of Object.entries(ETCD_FILES)) {
    let text = readFileSync(join(etcdProtos, name), "utf8");
    text = text.replace(/^import "\.\/([a-z]+\.proto)";/gm, (_line, file: string) => {
      const target = ETCD_FILES[file];
      if (target === undefined) throw new Error(`gen_proto: ${name} imports unknown ${file}`);
      return `import "${target}";`;
    });
    if (text.includes("(google.api.http)") && !text.includes("google/api/annotations.proto")) {
      text = text.replace(/^(package [a-z.]+;)$/m, '$1\nimport "google/api/annotations.proto";');
    }
    mkdirSync(dirname(join(outDir, dest)), { recursive: true });
    writeFileSync(join(outDir, dest), text);
  }
  return ["google/api/annotations.proto"];
}

function main(): void {
  if (!existsSync(deps)) throw new Error(`gen_proto: ${deps} is missing; run npm ci`);
  rmSync(outDir, { recursive: true, force: true });
  const etcdImports = copyEtcd();
  const files = closure([...ROOTS, ...etcdImports]);
  for (const [file, path] of files) {
    const dest = join(outDir, file);
    mkdirSync(dirname(dest), { recursive: true });
    cpSync(path, dest);
  }
  patchValidate();
  rmSync(join(root, "gen"), { recursive: true, force: true });
  const buf = join(root, "node_modules/.bin/buf");
  const res = spawnSync(buf, ["generate"], { cwd: join(root, "proto"), stdio: "inherit" });
  if (res.status !== 0) throw new Error(`gen_proto: buf generate failed with status ${res.status}`);
  console.log(
    `gen_proto: ${files.size + Object.keys(ETCD_FILES).length} third-party files, generated into gen/`,
  );
}

if (import.meta.main) main();
