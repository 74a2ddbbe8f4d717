import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { MetadataMatcherSchema } from "#gen/envoy/type/matcher/v3/metadata_pb.ts";
import { ValueMatcherSchema } from "#gen/envoy/type/matcher/v3/value_pb.ts";
import { metadataMatches, valueMatches } from "../../../mod/pilot/simulate/match.ts";
import { simulate } from "../../../mod/pilot/simulate/simulate.ts";
import { claimsFrom } from "../../../mod/pilot/simulate/command.ts";
import { readCase } from "../translate/_golden.ts";

const JWT = "envoy.filters.http.jwt_authn";
const ISS_A = "https://issuer-a.example.com";
const ISS_B = "https://issuer-b.example.com";

const matcher = (
  path: string[],
  value: Parameters<typeof create<typeof MetadataMatcherSchema>>[1],
  invert = false,
) =>
  create(MetadataMatcherSchema, {
    filter: JWT,
    path: path.map((key) => ({ segment: { case: "key" as const, value: key } })),
    ...value,
    invert,
  });

describe("metadataMatches()", () => {
  const req = (payload: Record<string, unknown>) => ({
    headers: {},
    dynamicMetadata: { [JWT]: { [ISS_A]: payload as never } },
  });

  test("reads the value at the path and matches strings and list elements", () => {
    const m = matcher([ISS_A, "groups"], {
      value: {
        matchPattern: {
          case: "listMatch",
          value: {
            matchPattern: {
              case: "oneOf",
              value: {
                matchPattern: {
                  case: "stringMatch",
                  value: { matchPattern: { case: "exact", value: "admin" } },
                },
              },
            },
          },
        },
      },
    });
    expect(metadataMatches(m, req({ groups: ["dev", "admin"] }))).toBe(true);
    expect(metadataMatches(m, req({ groups: ["dev"] }))).toBe(false);
    expect(metadataMatches(m, req({ groups: "admin" }))).toBe(false);
  });

  test("an absent value matches only present_match false; invert flips the result", () => {
    const present = matcher([ISS_A, "tier"], {
      value: { matchPattern: { case: "presentMatch", value: true } },
    });
    expect(metadataMatches(present, req({ tier: "gold" }))).toBe(true);
    expect(metadataMatches(present, req({}))).toBe(false);
    expect(metadataMatches(present, { headers: {} })).toBe(false);
    const notGuest = matcher([ISS_A, "tier"], {
      value: {
        matchPattern: { case: "stringMatch", value: { matchPattern: { case: "exact", value: "guest" } } },
      },
    }, true);
    expect(metadataMatches(notGuest, req({ tier: "guest" }))).toBe(false);
    expect(metadataMatches(notGuest, req({}))).toBe(true);
  });

  test("valueMatches() follows nested objects only through keys and compares kinds", () => {
    const yes = create(ValueMatcherSchema, { matchPattern: { case: "boolMatch", value: true } });
    expect(valueMatches(yes, true)).toBe(true);
    expect(valueMatches(yes, "true")).toBe(false);
    expect(metadataMatches(
      matcher([ISS_A, "realm", "role"], {
        value: {
          matchPattern: { case: "stringMatch", value: { matchPattern: { case: "prefix", value: "ops-" } } },
        },
      }),
      req({ realm: { role: "ops-lead" } }),
    )).toBe(true);
    expect(metadataMatches(
      matcher([ISS_A, "n"], {
        value: {
          matchPattern: { case: "doubleMatch", value: { matchPattern: { case: "exact", value: 3 } } },
        },
      }),
      req({ n: "3" }),
    )).toBe(false);
  });
});

describe("simulate() with a verified JWT", () => {
  const { push, proxy } = readCase("gateway_jwt_claims");
  const base = { host: "api.example.com", port: 80 };

  test("without claims a route needing one is not taken; with them it is", () => {
    expect(simulate(push, proxy, { ...base, path: "/admin", headers: { "x-debug": "1" } }).route)
      .toBe("everyone");
    const r = simulate(push, proxy, {
      ...base,
      path: "/admin",
      headers: { "x-debug": "1" },
      jwt: { issuer: ISS_A, claims: { groups: ["admin", "dev"] } },
    });
    expect(r.route).toBe("admins.group");
    expect(r.cluster).toBe("outbound|8080||api-v2.edge.svc.cluster.local");
  });

  test("nested claims, exclusions and the issuer all count", () => {
    const nested = { ...base, jwt: { claims: { iss: ISS_B, realm: { role: "ops-lead" } } } };
    expect(simulate(push, proxy, nested).route).toBe("admins.nested");
    const guest = { ...base, jwt: { issuer: ISS_A, claims: { sub: "u1", tier: "guest" } } };
    expect(simulate(push, proxy, guest).route).toBe("everyone");
    const member = { ...base, jwt: { issuer: ISS_A, claims: { sub: "u1", tier: "gold" } } };
    expect(simulate(push, proxy, member).route).toBe("not-guests");
    // A token from an issuer the gateway does not verify gives the routes nothing to read.
    const stranger = { ...base, jwt: { issuer: "https://elsewhere.example.com", claims: { sub: "u1" } } };
    expect(simulate(push, proxy, stranger).route).toBe("everyone");
  });

  test("claimsFrom() nests dotted names and makes repeated names lists", () => {
    expect(claimsFrom(["sub=u1", "groups=a", "groups=b", "realm.role=ops"])).toEqual({
      sub: "u1",
      groups: ["a", "b"],
      realm: { role: "ops" },
    });
    expect(() => claimsFrom(["novalue"])).toThrow(/claim "novalue": want name=value/);
  });
});

describe("jwtMetadata()", () => {
  test("stores the payload as Envoy does: the provider's space-delimited claims split into words", async () => {
    const { anyPack } = await import("@bufbuild/protobuf/wkt");
    const { JwtAuthenticationSchema } = await import(
      "#gen/envoy/extensions/filters/http/jwt_authn/v3/config_pb.ts"
    );
    const { HttpConnectionManagerSchema } = await import(
      "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts"
    );
    const { jwtMetadata } = await import("../../../mod/pilot/simulate/simulate.ts");
    const config = create(JwtAuthenticationSchema, {
      providers: {
        a: {
          issuer: ISS_A,
          payloadInMetadata: ISS_A,
          normalizePayloadInMetadata: { spaceDelimitedClaims: ["scope"] },
        },
      },
    });
    const hcm = create(HttpConnectionManagerSchema, {
      httpFilters: [{
        name: JWT,
        configType: { case: "typedConfig", value: anyPack(JwtAuthenticationSchema, config) },
      }],
    });
    const md = jwtMetadata(hcm, { issuer: ISS_A, claims: { scope: "read write", sub: "a b" } });
    expect(md).toEqual({ [JWT]: { [ISS_A]: { scope: ["read", "write"], sub: "a b" } } });
  });
});
