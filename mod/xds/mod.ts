/**
 * xDS serving: the ADS stream server that pilot and galley's MCP distribution plug providers
 * into.
 */
import { linkKey } from "../runtime/links.ts";
import type { AdsServer } from "./server.ts";

export { createAdsServer } from "./server.ts";
export type { AdsServer, AdsServerOptions, StreamStatus, TypeStatus } from "./server.ts";
export type { ResourceProvider, XdsClient, XdsObserver, XdsResource } from "./provider.ts";
export { contentVersion, setVersion } from "../shared/content_version.ts";

/** The daemon's shared ADS server, offered to every module. */
export const ADS_SERVER = linkKey<AdsServer>("xds.ads-server");
