/**
 * Networks of a multi-network mesh, as Istio models them: which network each endpoint is in,
 * and the gateways through which proxies of other networks reach it.
 *
 * An endpoint's network is its WorkloadEntry `network`, else its `topology.istio.io/network`
 * label, else the network of MeshNetworks whose `fromCidr` holds its address. Network gateways
 * come from MeshNetworks (`address`, or `registryServiceName`: the service's endpoints on that
 * port, else its IP addresses) and from ServiceEntries labelled `topology.istio.io/network` (the
 * gateway service of that network, as Istio reads a labelled Kubernetes Service): their
 * endpoints, else their IP `addresses`, on port `networking.istio.io/gatewayPort` (label),
 * 15443 by default.
 *
 * @module
 */
import { BlockList, isIP } from "node:net";
import type { ServiceEntrySpec } from "../../api/kinds/networking.ts";
import type { MeshConfig } from "../../api/kinds/mesh_config.ts";
import { resolveHost } from "../../api/mod.ts";
import type { ConfigSnapshot } from "../../galley/mod.ts";
import type { Endpoint, Service } from "./service.ts";

/** The label naming a workload's (or a gateway service's) network. */
export const NETWORK_LABEL = "topology.istio.io/network";

/** The label of a gateway service naming its gateway port when not 15443. */
export const GATEWAY_PORT_LABEL = "networking.istio.io/gatewayPort";

/** Istio's port for cross-network mTLS traffic (AUTO_PASSTHROUGH gateway servers). */
export const DEFAULT_NETWORK_GATEWAY_PORT = 15443;

/** One address at which a network's endpoints can be reached from other networks. */
export interface NetworkGateway {
  readonly network: string;
  /** An IP address. */
  readonly address: string;
  readonly port: number;
}

/** A function telling the network of an address by MeshNetworks' `fromCidr` ranges. */
export type CidrNetworks = (address: string) => string | undefined;

/** The `fromCidr` ranges of MeshNetworks as a lookup; the first network (by name) that holds the address wins. */
export function cidrNetworks(mesh: MeshConfig): CidrNetworks {
  const ranges: { network: string; list: BlockList }[] = [];
  for (const name of Object.keys(mesh.meshNetworks.networks).sort()) {
    const list = new BlockList();
    let any = false;
    for (const e of mesh.meshNetworks.networks[name]!.endpoints ?? []) {
      if (!e.fromCidr) continue;
      const [ip, bits] = e.fromCidr.split("/") as [string, string | undefined];
      const family = isIP(ip);
      if (family === 0) continue;
      const type = family === 4 ? "ipv4" : "ipv6";
      list.addSubnet(ip, bits === undefined ? (family === 4 ? 32 : 128) : Number(bits), type);
      any = true;
    }
    if (any) ranges.push({ network: name, list });
  }
  return (address) => {
    const family = isIP(address);
    if (family === 0) return undefined;
    const type = family === 4 ? "ipv4" : "ipv6";
    return ranges.find((r) => r.list.check(address, type))?.network;
  };
}

/**
 * The network of an endpoint: its own (WorkloadEntry `network`), its `topology.istio.io/network`
 * label, or its address's `fromCidr` network; undefined when none says.
 */
export function endpointNetwork(e: Endpoint, byCidr: CidrNetworks): string | undefined {
  return e.network || e.labels[NETWORK_LABEL] || byCidr(e.address);
}

/** Endpoints with their network filled in ({@link endpointNetwork}); the others unchanged. */
export function withNetworks(endpoints: readonly Endpoint[], mesh: MeshConfig): Endpoint[] {
  const byCidr = cidrNetworks(mesh);
  return endpoints.map((e) => {
    if (e.network) return e;
    const network = endpointNetwork(e, byCidr);
    return network ? { ...e, network } : e;
  });
}

/** What the gateway lookup reads of the registries. */
export interface GatewaySources {
  readonly mesh: MeshConfig;
  readonly config: ConfigSnapshot;
  /** Services by host name. */
  readonly services: (hostname: string) => readonly Service[];
  /** Every endpoint of one port of one service. */
  readonly endpoints: (service: Service, port: number) => readonly Endpoint[];
}

/**
 * The addresses of a gateway service on `port`: its healthy IP endpoints on that port (at the
 * port they listen on), else its IP `addresses` (a load balancer's, as Istio reads a gateway
 * Service's external addresses).
 */
function serviceGatewayAddresses(
  services: readonly Service[],
  port: number,
  src: GatewaySources,
): { address: string; port: number }[] {
  const out: { address: string; port: number }[] = [];
  for (const s of services) {
    const direct = src.endpoints(s, port).filter((e) => e.healthy && isIP(e.address) !== 0);
    if (direct.length > 0) {
      out.push(...direct.map((e) => ({ address: e.address, port: e.port })));
      continue;
    }
    const ips = s.addresses.filter((a) => isIP(a) !== 0);
    out.push(...ips.map((address) => ({ address, port })));
  }
  return out;
}

function gatewayPortOf(labels: Readonly<Record<string, string>> | undefined): number {
  const written = labels?.[GATEWAY_PORT_LABEL];
  const n = written === undefined ? NaN : Number(written);
  return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : DEFAULT_NETWORK_GATEWAY_PORT;
}

/**
 * Every network gateway, from MeshNetworks and from labelled gateway ServiceEntries (see the
 * module notes), without duplicates, sorted by network, address and port.
 */
export function networkGateways(src: GatewaySources): NetworkGateway[] {
  const found = new Map<string, NetworkGateway>();
  const add = (network: string, address: string, port: number) => {
    found.set(`${network}|${address}|${port}`, { network, address, port });
  };
  for (const [network, spec] of Object.entries(src.mesh.meshNetworks.networks)) {
    for (const gw of spec.gateways ?? []) {
      if (gw.address) add(network, gw.address, gw.port);
      else if (gw.registryServiceName) {
        const host = resolveHost(gw.registryServiceName, src.mesh.rootNamespace);
        for (const a of serviceGatewayAddresses(src.services(host), gw.port, src)) {
          add(network, a.address, a.port);
        }
      }
    }
  }
  for (const r of src.config.list<ServiceEntrySpec>("networking.istio.io", "ServiceEntry")) {
    const network = r.metadata.labels?.[NETWORK_LABEL];
    if (!network) continue;
    const port = gatewayPortOf(r.metadata.labels);
    for (const written of r.spec.hosts) {
      const host = resolveHost(written, r.metadata.namespace);
      const services = src.services(host).filter((s) => s.namespace === r.metadata.namespace);
      for (const a of serviceGatewayAddresses(services, port, src)) add(network, a.address, a.port);
    }
  }
  return [...found.values()].sort((a, b) =>
    a.network < b.network
      ? -1
      : a.network > b.network
      ? 1
      : a.address < b.address
      ? -1
      : a.address > b.address
      ? 1
      : a.port - b.port
  );
}
