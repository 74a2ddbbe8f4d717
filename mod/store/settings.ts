/**
 * The settings that point meshd at its store (`--store` and the `--etcd-*` flags), shared by
 * `meshd serve` and the `meshd config` commands.
 *
 * @module
 */
import type { Settings } from "../cli/flags.ts";
import type { SettingSpec } from "../cli/setting.ts";

/** `--store` and how to reach and authenticate to etcd. */
export const STORE_SETTINGS: readonly SettingSpec[] = [
  {
    name: "store",
    kind: { type: "string" },
    help: "etcd://HOST:PORT[,HOST:PORT...][/PREFIX]: keep config in etcd under PREFIX (default /meshd); " +
      "unset, everything stays local",
  },
  {
    name: "etcd-ca",
    kind: { type: "path" },
    help:
      "PEM CA certificates of the etcd members' serving certificates; setting it (or --etcd-cert) speaks TLS",
  },
  { name: "etcd-cert", kind: { type: "path" }, help: "PEM client certificate for etcd, with --etcd-key" },
  { name: "etcd-key", kind: { type: "path" }, help: "PEM private key of --etcd-cert" },
  {
    name: "etcd-user",
    kind: { type: "string" },
    help: "etcd user name; the password is read from --etcd-password-file",
  },
  { name: "etcd-password-file", kind: { type: "path" }, help: "file holding the password of --etcd-user" },
  {
    name: "etcd-timeout",
    kind: { type: "duration", min: 100 },
    default: 5_000,
    help: "deadline of each etcd request; a member that does not answer in time counts as unavailable",
  },
];

/**
 * True when any store flag is given, so the store must be opened (or the flags refused): a
 * daemon without them does not load the etcd client at all.
 */
export function storeRequested(settings: Settings): boolean {
  return STORE_SETTINGS.some((s) => s.default === undefined && settings.optionalString(s.name) !== undefined);
}

/** `meshd serve` only: how often the elected housekeeping replica compacts etcd's history. */
export const STORE_COMPACT_INTERVAL_SETTING: SettingSpec = {
  name: "store-compact-interval",
  kind: { type: "duration" },
  default: 300_000,
  help: "with --store: how often the housekeeping leader compacts etcd's history to the revision it read " +
    "one interval earlier (0: never; then etcd's own --auto-compaction-retention must do it)",
};
