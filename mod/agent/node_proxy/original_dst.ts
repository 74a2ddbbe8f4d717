/**
 * The original destination of a TCP connection that the capture rules redirected to the node
 * proxy: `getsockopt(SOL_IP, SO_ORIGINAL_DST)` (or `SOL_IPV6, IP6T_SO_ORIGINAL_DST`) on the
 * accepted socket's descriptor, called through `bun:ffi`. The kernel answers from conntrack's
 * NAT record; a connection that was not redirected has none.
 *
 * @module
 */
import type { Socket } from "node:net";

/** An address and port. */
export interface SocketAddress {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

const AF_INET = 2;
const AF_INET6 = 10;
const SOL_IP = 0;
const SOL_IPV6 = 41;
/** SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST share the number (linux/netfilter_ipv4.h, ip6_tables.h). */
const SO_ORIGINAL_DST = 80;
const SOCKADDR_BUFFER = 28;

/**
 * Reads a `struct sockaddr_in` or `sockaddr_in6` as the kernel fills it (family in host order,
 * little-endian on the machines meshd runs on; port in network order). Returns undefined for
 * another family or a buffer too short for its family.
 */
export function parseSockaddr(buf: Uint8Array, length = buf.length): SocketAddress | undefined {
  if (length < 2) return undefined;
  const view = new DataView(buf.buffer, buf.byteOffset, Math.min(length, buf.length));
  const family = view.getUint16(0, true);
  if (family === AF_INET && view.byteLength >= 8) {
    return {
      address: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`,
      port: view.getUint16(2, false),
      family: 4,
    };
  }
  if (family === AF_INET6 && view.byteLength >= 24) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(view.getUint16(8 + i * 2, false).toString(16));
    return { address: compressIpv6(groups), port: view.getUint16(2, false), family: 6 };
  }
  return undefined;
}

/** The text form of eight hex groups, with the longest run of two or more zero groups as `::`. */
export function compressIpv6(groups: readonly string[]): string {
  if (groups.slice(0, 5).every((g) => g === "0") && groups[5] === "ffff") {
    const hi = parseInt(groups[6]!, 16);
    const lo = parseInt(groups[7]!, 16);
    return `::ffff:${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

type GetSockOpt = (fd: number, level: number, name: number, val: Uint8Array, len: Uint32Array) => number;

let getsockopt: GetSockOpt | null | undefined;

/** libc's getsockopt through bun:ffi, or null where it cannot be loaded. */
async function loadGetsockopt(): Promise<GetSockOpt | null> {
  if (getsockopt !== undefined) return getsockopt;
  try {
    const { dlopen, FFIType } = await import("bun:ffi");
    const lib = dlopen("libc.so.6", {
      getsockopt: {
        args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr],
        returns: FFIType.i32,
      },
    });
    getsockopt = (fd, level, name, val, len) => lib.symbols.getsockopt(fd, level, name, val, len) as number;
  } catch {
    getsockopt = null;
  }
  return getsockopt;
}

/** The descriptor of a node:net socket accepted by a node:net server under Bun. */
export function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

/** Asks the kernel for one family's original destination of `fd`. */
function query(fn: GetSockOpt, fd: number, level: number): SocketAddress | undefined {
  const buf = new Uint8Array(SOCKADDR_BUFFER);
  const len = new Uint32Array([SOCKADDR_BUFFER]);
  if (fn(fd, level, SO_ORIGINAL_DST, buf, len) !== 0) return undefined;
  return parseSockaddr(buf, len[0]);
}

/**
 * The original destination of an accepted, redirected connection; undefined when it was not
 * redirected (no NAT record), the descriptor is not available, or FFI cannot load libc.
 */
export async function originalDestination(socket: Socket): Promise<SocketAddress | undefined> {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  const fn = await loadGetsockopt();
  if (!fn) return undefined;
  const v6 = socket.localAddress?.includes(":") === true && !socket.localAddress.startsWith("::ffff:");
  return v6 ? query(fn, fd, SOL_IPV6) : query(fn, fd, SOL_IP) ?? query(fn, fd, SOL_IPV6);
}
