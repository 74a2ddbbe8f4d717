/** Push requests: what a push carries about why it happens, and what the provider reads from it. */
import { describe, expect, test } from "bun:test";
import {
  fullPushRequest,
  isRoutingOnly,
  mergePushRequests,
  type PushRequest,
  summarizePushRequest,
} from "../../../mod/pilot/xds/push_request.ts";

const VS = "networking.istio.io/VirtualService";
const DR = "networking.istio.io/DestinationRule";
const config = (...entries: Array<[string, string]>): PushRequest => ({
  configs: new Map(entries),
  full: false,
  reasons: ["config"],
});

describe("isRoutingOnly()", () => {
  test("only VirtualServices changed: routing-only", () => {
    expect(isRoutingOnly(config([`${VS}/a/x`, VS], [`${VS}/b/y`, VS]))).toBe(true);
  });

  test("any other kind, a full request, an unclassified key or no config at all: not routing-only", () => {
    expect(isRoutingOnly(config([`${VS}/a/x`, VS], [`${DR}/a/x`, DR]))).toBe(false);
    expect(
      isRoutingOnly(config(["config.meshd.io/MeshConfig/istio-system/mesh", "config.meshd.io/MeshConfig"])),
    )
      .toBe(false);
    expect(isRoutingOnly(mergePushRequests([config([`${VS}/a/x`, VS]), fullPushRequest("registry:vms")])))
      .toBe(false);
    expect(isRoutingOnly(config([`${VS}/a/x`, ""]))).toBe(false);
    expect(isRoutingOnly(config())).toBe(false);
  });
});

describe("mergePushRequests()", () => {
  test("unions keys, keeps reasons once in order, and is full if any part is", () => {
    const merged = mergePushRequests([
      config([`${VS}/a/x`, VS]),
      fullPushRequest("registry:vms"),
      config([`${DR}/a/x`, DR], [`${VS}/a/x`, VS]),
    ]);
    expect(merged).toEqual({
      configs: new Map([[`${VS}/a/x`, VS], [`${DR}/a/x`, DR]]),
      full: true,
      reasons: ["config", "registry:vms"],
    });
  });
});

describe("summarizePushRequest()", () => {
  test("counts changes by kind and names the first keys, sorted", () => {
    const r = config([`${VS}/b/y`, VS], [`${VS}/a/x`, VS], [`${DR}/a/x`, DR]);
    expect(summarizePushRequest(r, 2)).toEqual({
      full: false,
      routingOnly: false,
      reasons: ["config"],
      configs: 3,
      kinds: { [VS]: 2, [DR]: 1 },
      keys: [`${DR}/a/x`, `${VS}/a/x`],
    });
  });
});
