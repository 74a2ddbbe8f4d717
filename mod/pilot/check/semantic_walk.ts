/**
 * A walk over every message inside a generated resource, through the `Any`s translation packs
 * (filters' typed_config, transport sockets, extension options), with the field path of each
 * message in proto field names. The semantic checks use it for rules that apply wherever a
 * message type appears: regexes, SDS secret references, certificate provider instances.
 *
 * @module
 */
import type { DescMessage, Message } from "@bufbuild/protobuf";
import { type Any, anyUnpack } from "@bufbuild/protobuf/wkt";
import { TRANSLATE_REGISTRY } from "../translate/type_registry.ts";

/** Called for every message met; `path` is empty for the resource itself. */
export type MessageVisitor = (typeName: string, msg: Message, path: string) => void;

function join(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}

function visitValue(sub: DescMessage, value: Message, path: string, visit: MessageVisitor): void {
  if (sub.typeName === "google.protobuf.Any") {
    const any = value as unknown as Any;
    const unpacked = anyUnpack(any, TRANSLATE_REGISTRY);
    const desc = unpacked && TRANSLATE_REGISTRY.getMessage(unpacked.$typeName);
    if (unpacked && desc) walkMessages(desc, unpacked, visit, path);
    return;
  }
  // Well-known types (Struct, Duration, wrappers) hold nothing the checks look for.
  if (!sub.typeName.startsWith("google.protobuf.")) walkMessages(sub, value, visit, path);
}

/**
 * Calls `visit` for `msg` and every message inside it, depth first. Anys are unpacked with the
 * translation's type registry; an Any of a type outside it is not entered (the field rules
 * report those).
 */
export function walkMessages(schema: DescMessage, msg: Message, visit: MessageVisitor, path = ""): void {
  visit(schema.typeName, msg, path);
  const fields = msg as unknown as Record<string, unknown>;
  for (const field of schema.fields) {
    let value = fields[field.localName];
    if (field.oneof) {
      const oneof = fields[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
      value = oneof?.case === field.localName ? oneof.value : undefined;
    }
    if (value === undefined) continue;
    const at = join(path, field.name);
    if (field.fieldKind === "message") {
      visitValue(field.message, value as Message, at, visit);
    } else if (field.fieldKind === "list" && field.listKind === "message") {
      (value as Message[]).forEach((m, i) => visitValue(field.message, m, `${at}[${i}]`, visit));
    } else if (field.fieldKind === "map" && field.mapKind === "message") {
      for (const [k, m] of Object.entries(value as Record<string, Message>)) {
        visitValue(field.message, m, `${at}[${k}]`, visit);
      }
    }
  }
}
