/**
 * Header manipulation: a VirtualService's `headers` (on a route or on one destination) as
 * Envoy's headers to add and remove, plus the authority rewrite a `:authority`/`host` set asks for.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type HeaderValueOption,
  HeaderValueOption_HeaderAppendAction,
  HeaderValueOptionSchema,
} from "#gen/envoy/config/core/v3/base_pb.ts";
import type { HeaderOperations, Headers } from "../../api/kinds/networking.ts";
import { byString } from "./conversion.ts";

/** Headers to add and remove in both directions, and the authority to rewrite to ("" for none). */
export interface HeaderChanges {
  readonly requestHeadersToAdd: HeaderValueOption[];
  readonly requestHeadersToRemove: string[];
  readonly responseHeadersToAdd: HeaderValueOption[];
  readonly responseHeadersToRemove: string[];
  readonly authority: string;
}

const isAuthority = (k: string) => k.toLowerCase() === ":authority" || k.toLowerCase() === "host";
const isInternal = (k: string) => k.startsWith(":") || k.toLowerCase() === "host";

function options(values: Readonly<Record<string, string>> | undefined, append: boolean): HeaderValueOption[] {
  return Object.keys(values ?? {})
    .filter((k) => !isInternal(k))
    .sort(byString)
    .map((key) =>
      create(HeaderValueOptionSchema, {
        header: { key, value: values![key]! },
        appendAction: append
          ? HeaderValueOption_HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD
          : HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
      })
    );
}

function authorityOf(op: HeaderOperations | undefined): string {
  const fromSet = Object.entries(op?.set ?? {}).find(([k]) => isAuthority(k))?.[1];
  const fromAdd = Object.entries(op?.add ?? {}).find(([k]) => isAuthority(k))?.[1];
  return fromSet ?? fromAdd ?? "";
}

/**
 * Translates header operations: `set` overwrites, `add` appends (each sorted by name),
 * `remove` removes; pseudo-headers and `host` cannot be changed this way, except that setting
 * `:authority` or `host` on requests becomes the returned `authority`.
 */
export function headerChanges(headers: Headers | undefined): HeaderChanges {
  const req = headers?.request;
  const res = headers?.response;
  return {
    requestHeadersToAdd: [...options(req?.set, false), ...options(req?.add, true)],
    requestHeadersToRemove: (req?.remove ?? []).filter((k) => !isInternal(k)),
    responseHeadersToAdd: [...options(res?.set, false), ...options(res?.add, true)],
    responseHeadersToRemove: (res?.remove ?? []).filter((k) => !isInternal(k)),
    authority: authorityOf(req),
  };
}
