/**
 * Envoy's external authorization API (`envoy.service.auth.v3.Authorization/Check`): the request's
 * attributes go through mixer's check rules; an allowed request gets the rules' header changes,
 * a denied one the status, mapped to HTTP (PERMISSION_DENIED is 403, UNAUTHENTICATED 401,
 * RESOURCE_EXHAUSTED 429), with the reason as body.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type HeaderValueOption,
  HeaderValueOption_HeaderAppendAction,
  HeaderValueOptionSchema,
} from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  Authorization,
  type CheckResponse,
  CheckResponseSchema,
} from "#gen/envoy/service/auth/v3/external_auth_pb.ts";
import type { StatusCode } from "#gen/envoy/type/v3/http_status_pb.ts";
import { bagFromExtAuthz, checkBagLimits } from "./attributes.ts";
import { BadBagError } from "./client/wire.ts";
import type { MixerCore } from "./core.ts";
import type { HeaderChange } from "./dispatch.ts";
import { httpStatusOf } from "./status.ts";

function headerOptions(changes: readonly HeaderChange[]): HeaderValueOption[] {
  return changes.filter((c) => c.operation !== "REMOVE").map((c) =>
    create(HeaderValueOptionSchema, {
      header: { key: c.name, value: c.value },
      append: c.operation === "APPEND",
      appendAction: c.operation === "APPEND"
        ? HeaderValueOption_HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD
        : HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
    })
  );
}

/** The Authorization service over `core`. */
export function authorizationService(core: MixerCore): Partial<ServiceImpl<typeof Authorization>> {
  return {
    async check(req): Promise<CheckResponse> {
      const bag = bagFromExtAuthz(req);
      try {
        checkBagLimits(bag);
      } catch (err) {
        if (!(err instanceof BadBagError)) throw err;
        core.refuse("ext_authz", err.message);
        throw new ConnectError(err.message, Code.InvalidArgument);
      }
      const d = await core.check("ext_authz", bag);
      if (d.status.code === 0) {
        return create(CheckResponseSchema, {
          status: { code: 0, message: "" },
          httpResponse: {
            case: "okResponse",
            value: {
              headers: headerOptions(d.requestHeaders),
              headersToRemove: d.requestHeaders.filter((c) => c.operation === "REMOVE").map((c) => c.name),
              responseHeadersToAdd: headerOptions(d.responseHeaders),
            },
          },
        });
      }
      return create(CheckResponseSchema, {
        status: { code: d.status.code, message: d.status.message },
        httpResponse: {
          case: "deniedResponse",
          value: {
            status: { code: httpStatusOf(d.status.code) as StatusCode },
            body: d.status.message,
            headers: [
              create(HeaderValueOptionSchema, {
                header: { key: "content-type", value: "text/plain; charset=utf-8" },
              }),
            ],
          },
        },
      });
    },
  };
}
