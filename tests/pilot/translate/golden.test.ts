/**
 * Golden tests: every `tests/pilot/golden/<case>.input.yaml` is translated and compared with
 * `<case>.golden.json`. Refresh the golden files with
 * `UPDATE_GOLDEN=1 bun test tests/pilot/translate/golden.test.ts` and review the diff.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type DescMessage, equals, fromBinary, type Message, toBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import {
  buildClusters,
  buildEndpoints,
  buildListeners,
  buildRoutes,
} from "../../../mod/pilot/translate/mod.ts";
import { TRANSLATE_REGISTRY } from "../../../mod/pilot/translate/type_registry.ts";
import {
  buildGrpcClusters,
  buildGrpcEndpoints,
  buildGrpcListeners,
  buildGrpcRoutes,
} from "../../../mod/pilot/translate/grpc/mod.ts";
import { checkEnvoySet, configuredSecretNames, proxyKindOf } from "../../../mod/pilot/check/mod.ts";
import { caseNames, firstDifference, GOLDEN_DIR, readCase, renderGolden } from "./_golden.ts";

const UPDATE = process.env.UPDATE_GOLDEN === "1";

/** Every Any inside `msg` (recursively, through unpacked Anys too), unpacked with the registry. */
function checkAnys(schema: DescMessage, msg: Message, path: string, problems: string[]): void {
  for (const field of schema.fields) {
    const value = (msg as unknown as Record<string, unknown>)[field.localName];
    const visit = (m: Message, sub: DescMessage, at: string) => {
      if (sub.typeName === "google.protobuf.Any") {
        const any = m as unknown as Parameters<typeof anyUnpack>[0];
        const unpacked = anyUnpack(any, TRANSLATE_REGISTRY);
        if (!unpacked) {
          problems.push(`${at}: cannot unpack ${any.typeUrl}`);
          return;
        }
        const desc = TRANSLATE_REGISTRY.getMessage(unpacked.$typeName)!;
        checkAnys(desc, unpacked, `${at}<${unpacked.$typeName}>`, problems);
        return;
      }
      // Well-known types (Struct, Duration, wrappers) hold no Any and have JSON-like shapes.
      if (!sub.typeName.startsWith("google.protobuf.")) checkAnys(sub, m, at, problems);
    };
    if (field.fieldKind === "message" && value !== undefined) {
      visit(value as Message, field.message, `${path}.${field.name}`);
    } else if (field.fieldKind === "list" && field.listKind === "message") {
      (value as Message[]).forEach((m, i) => visit(m, field.message, `${path}.${field.name}[${i}]`));
    } else if (field.fieldKind === "map" && field.mapKind === "message") {
      for (const [k, m] of Object.entries(value as Record<string, Message>)) {
        visit(m, field.message, `${path}.${field.name}[${k}]`);
      }
    } else if (field.oneof && value === undefined) {
      const oneof =
        (msg as unknown as Record<string, { case?: string; value?: unknown }>)[field.oneof.localName];
      if (oneof?.case === field.localName && field.fieldKind === "message") {
        visit(oneof.value as Message, field.message, `${path}.${field.name}`);
      }
    }
  }
}

function roundTrip<D extends DescMessage>(schema: D, list: readonly Message[]): string[] {
  const problems: string[] = [];
  for (const m of list) {
    const name = (m as unknown as { name?: string; clusterName?: string }).name ??
      (m as unknown as { clusterName: string }).clusterName;
    const back = fromBinary(schema, toBinary(schema, m as never));
    if (!equals(schema, back, m as never)) {
      problems.push(`${schema.typeName} ${name}: changed by toBinary/fromBinary`);
    }
    checkAnys(schema, m, `${schema.typeName.split(".").pop()}(${name})`, problems);
  }
  return problems;
}

describe("golden", () => {
  const names = caseNames();

  test("there are golden cases to check", () => {
    expect(names.length).toBeGreaterThanOrEqual(12);
  });

  for (const name of names) {
    test(`${name}: translation matches ${name}.golden.json`, () => {
      const c = readCase(name);
      const got = renderGolden(c.push, c.proxy);
      const file = join(GOLDEN_DIR, `${name}.golden.json`);
      const text = JSON.stringify(got, null, 2) + "\n";
      if (UPDATE) {
        writeFileSync(file, text);
        return;
      }
      if (!existsSync(file)) {
        throw new Error(`${file} is missing; run UPDATE_GOLDEN=1 bun test ${import.meta.path}`);
      }
      const want = JSON.parse(readFileSync(file, "utf8"));
      const diff = firstDifference(want, JSON.parse(text));
      if (diff) {
        throw new Error(
          `${name}: output differs from ${name}.golden.json at ${diff.path}\n` +
            `  golden: ${JSON.stringify(diff.want)}\n  got:    ${JSON.stringify(diff.got)}\n` +
            "If the change is intended, run UPDATE_GOLDEN=1 bun test tests/pilot/translate/golden.test.ts",
        );
      }
    });

    test(`${name}: every message survives toBinary/fromBinary and every Any unpacks`, () => {
      const { push, proxy } = readCase(name);
      const problems = [
        ...roundTrip(ClusterSchema, buildClusters(push, proxy)),
        ...roundTrip(ListenerSchema, buildListeners(push, proxy)),
        ...roundTrip(RouteConfigurationSchema, buildRoutes(push, proxy)),
        ...roundTrip(ClusterLoadAssignmentSchema, buildEndpoints(push, proxy)),
      ];
      expect(problems).toEqual([]);
    });

    test(`${name}: Envoy accepts the output (field rules and semantic checks)`, () => {
      const { push, proxy } = readCase(name);
      const set = {
        clusters: buildClusters(push, proxy),
        endpoints: buildEndpoints(push, proxy),
        listeners: buildListeners(push, proxy),
        routes: buildRoutes(push, proxy),
      };
      const opts = { proxyKind: proxyKindOf(proxy), secretNames: configuredSecretNames(push.config) };
      expect(checkEnvoySet(set, opts)).toEqual([]);
    });

    test(`${name}: gRPC clients accept the proxyless rendering of the same input`, () => {
      const { push, proxy } = readCase(name);
      const set = {
        clusters: buildGrpcClusters(push, proxy),
        endpoints: buildGrpcEndpoints(push, proxy, "*"),
        listeners: buildGrpcListeners(push, proxy, "*"),
        routes: buildGrpcRoutes(push, proxy, "*"),
      };
      expect(checkEnvoySet(set, { proxyKind: "proxyless" })).toEqual([]);
    });

    test(`${name}: translation is deterministic`, () => {
      const a = readCase(name);
      const b = readCase(name);
      expect(JSON.stringify(renderGolden(b.push, b.proxy))).toBe(
        JSON.stringify(renderGolden(a.push, a.proxy)),
      );
    });
  }
});
