/**
 * Reads what `tcpdump -w` wrote (classic pcap, Ethernet link type) into TCP segments over IPv4,
 * so the node proxy's end-to-end test can say what crossed a machine's veth: which ports carried
 * bytes, what the first bytes of each stream were (a TLS record or plain text), and whether a
 * given text ever appeared in clear. Other packets (ARP, IPv6, UDP) are skipped.
 *
 * @module
 */

/** One TCP segment with its payload. */
export interface TcpSegment {
  readonly src: string;
  readonly srcPort: number;
  readonly dst: string;
  readonly dstPort: number;
  /** SYN set and ACK clear: the first segment of a connection. */
  readonly syn: boolean;
  readonly payload: Uint8Array;
}

const PCAP_MAGIC_LE = 0xa1b2c3d4;
const PCAP_MAGIC_NS_LE = 0xa1b23c4d;
const LINKTYPE_ETHERNET = 1;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_VLAN = 0x8100;
const IPPROTO_TCP = 6;

function ipv4(b: Uint8Array, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** The TCP segment in one Ethernet frame, or undefined when the frame holds none. */
export function tcpInFrame(frame: Uint8Array): TcpSegment | undefined {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (frame.length < 14) return undefined;
  let off = 12;
  let type = view.getUint16(off);
  if (type === ETHERTYPE_VLAN && frame.length >= 18) {
    off += 4;
    type = view.getUint16(off);
  }
  off += 2;
  if (type !== ETHERTYPE_IPV4 || frame.length < off + 20) return undefined;
  const ihl = (frame[off]! & 0x0f) * 4;
  const total = view.getUint16(off + 2);
  if (frame[off + 9] !== IPPROTO_TCP || ihl < 20) return undefined;
  const src = ipv4(frame, off + 12);
  const dst = ipv4(frame, off + 16);
  const tcp = off + ihl;
  if (frame.length < tcp + 20) return undefined;
  const dataOff = (frame[tcp + 12]! >> 4) * 4;
  const flags = frame[tcp + 13]!;
  const end = Math.min(frame.length, off + total);
  return {
    src,
    srcPort: view.getUint16(tcp),
    dst,
    dstPort: view.getUint16(tcp + 2),
    syn: (flags & 0x02) !== 0 && (flags & 0x10) === 0,
    payload: frame.subarray(Math.min(end, tcp + dataOff), end),
  };
}

/** Every TCP segment over IPv4 in a pcap file's bytes. Throws on a file that is not pcap. */
export function readPcap(bytes: Uint8Array): TcpSegment[] {
  if (bytes.length < 24) throw new Error(`pcap: ${bytes.length} bytes, shorter than the file header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magicLe = view.getUint32(0, true);
  const magicBe = view.getUint32(0, false);
  const little = magicLe === PCAP_MAGIC_LE || magicLe === PCAP_MAGIC_NS_LE;
  if (!little && magicBe !== PCAP_MAGIC_LE && magicBe !== PCAP_MAGIC_NS_LE) {
    throw new Error(`pcap: bad magic number 0x${magicLe.toString(16)}`);
  }
  const link = view.getUint32(20, little);
  if (link !== LINKTYPE_ETHERNET) throw new Error(`pcap: link type ${link}, want Ethernet (1)`);
  const out: TcpSegment[] = [];
  // A file cut short by tcpdump's exit ends with a partial record: stop there.
  for (let at = 24; at + 16 <= bytes.length;) {
    const caplen = view.getUint32(at + 8, little);
    const start = at + 16;
    if (start + caplen > bytes.length) break;
    const seg = tcpInFrame(bytes.subarray(start, start + caplen));
    if (seg) out.push(seg);
    at = start + caplen;
  }
  return out;
}

/** Whether `needle` occurs in `hay`. */
export function containsBytes(hay: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0) return true;
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** One direction of one TCP connection, its payload bytes concatenated in capture order. */
export interface TcpFlow {
  readonly src: string;
  readonly srcPort: number;
  readonly dst: string;
  readonly dstPort: number;
  readonly bytes: Uint8Array;
}

/**
 * Groups segments into flows (one per direction of a connection), payloads concatenated. A
 * retransmitted segment is counted twice; the test only looks at the first bytes and for text.
 */
export function tcpFlows(segments: readonly TcpSegment[]): TcpFlow[] {
  const flows = new Map<string, { head: Omit<TcpFlow, "bytes">; parts: Uint8Array[] }>();
  for (const s of segments) {
    const key = `${s.src}:${s.srcPort}>${s.dst}:${s.dstPort}`;
    let f = flows.get(key);
    if (!f) {
      f = { head: { src: s.src, srcPort: s.srcPort, dst: s.dst, dstPort: s.dstPort }, parts: [] };
      flows.set(key, f);
    }
    if (s.payload.length > 0) f.parts.push(s.payload);
  }
  return [...flows.values()].map(({ head, parts }) => ({ ...head, bytes: Buffer.concat(parts) }));
}

/**
 * Whether `bytes` are nothing but TLS records from their first byte: each a header (content type
 * 20 to 23, version 3.1 to 3.4, length at most 2^14 + 2048) and as many bytes as it says; the last
 * record may be cut short by the end of the capture. A stream caught in the middle of a record,
 * or plain text, fails.
 */
export function onlyTlsRecords(bytes: Uint8Array): boolean {
  let at = 0;
  while (at < bytes.length) {
    if (at + 5 > bytes.length) return true;
    const [type, major, minor] = [bytes[at]!, bytes[at + 1]!, bytes[at + 2]!];
    const len = (bytes[at + 3]! << 8) | bytes[at + 4]!;
    if (type < 20 || type > 23 || major !== 3 || minor < 1 || minor > 4 || len > 16384 + 2048) return false;
    at += 5 + len;
  }
  return true;
}

/**
 * Whether `bytes` start with a TLS handshake record (content type 22, version 3.x), the first
 * thing a TLS client sends.
 */
export function startsWithTlsHandshake(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0x16 && bytes[1] === 0x03 && bytes[2]! <= 0x04;
}
