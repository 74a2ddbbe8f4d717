/**
 * Envoy RBAC messages as Istio's AuthorizationPolicy translation writes them for L4 rules:
 * namespaces as a principal-name regex, principals exact, ipBlocks as direct_remote_ip, ports as
 * destination_port.
 */
import { create } from "@bufbuild/protobuf";
import {
  type Permission,
  PermissionSchema,
  type Principal,
  PrincipalSchema,
  type RBAC,
  RBAC_Action,
  RBACSchema,
} from "#gen/envoy/config/rbac/v3/rbac_pb.ts";

/** A principal matching peers of `namespace`. */
export function fromNamespace(namespace: string): Principal {
  return create(PrincipalSchema, {
    identifier: {
      case: "authenticated",
      value: {
        principalName: { matchPattern: { case: "safeRegex", value: { regex: `.*/ns/${namespace}/.*` } } },
      },
    },
  });
}

/** A principal matching exactly `spiffe` (Istio strips the scheme; Envoy matches the URI SAN). */
export function fromPrincipal(spiffe: string): Principal {
  return create(PrincipalSchema, {
    identifier: {
      case: "authenticated",
      value: { principalName: { matchPattern: { case: "exact", value: spiffe } } },
    },
  });
}

/** A principal matching a source CIDR. */
export function fromIpBlock(prefix: string, len: number): Principal {
  return create(PrincipalSchema, {
    identifier: { case: "directRemoteIp", value: { addressPrefix: prefix, prefixLen: len } },
  });
}

/** Any principal. */
export const ANY_PRINCIPAL: Principal = create(PrincipalSchema, { identifier: { case: "any", value: true } });

/** A permission for destination port `port`. */
export function toPort(port: number): Permission {
  return create(PermissionSchema, { rule: { case: "destinationPort", value: port } });
}

/** Any permission. */
export const ANY_PERMISSION: Permission = create(PermissionSchema, { rule: { case: "any", value: true } });

/** One RBAC config with one policy. */
export function rbac(
  action: "ALLOW" | "DENY" | "LOG",
  name: string,
  principals: Principal[],
  permissions: Permission[] = [ANY_PERMISSION],
): RBAC {
  return create(RBACSchema, {
    action: RBAC_Action[action],
    policies: { [name]: { principals, permissions } },
  });
}
