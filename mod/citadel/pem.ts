/**
 * PEM armour (RFC 7468): decoding blocks of a given label strictly, encoding with 64-column
 * lines.
 *
 * @module
 */

/** One decoded PEM block. */
export interface PemBlock {
  /** The label, e.g. "CERTIFICATE". */
  readonly label: string;
  readonly der: Uint8Array;
}

const BASE64_BODY = /^[A-Za-z0-9+/=\r\n\t ]*$/;
const LABEL = /^[A-Z0-9 ]{1,40}$/;

/**
 * Decodes every PEM block in `text`. Throws an Error saying what is wrong when a block has no
 * END line or its body is not base64. Text between blocks is ignored (as OpenSSL does), so
 * explanatory comments in PEM files are fine. Runs in time linear in the input.
 */
export function pemDecodeAll(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  let pos = 0;
  for (;;) {
    const begin = text.indexOf("-----BEGIN ", pos);
    if (begin < 0) return out;
    const labelStart = begin + 11;
    const labelEnd = text.indexOf("-----", labelStart);
    if (labelEnd < 0 || labelEnd - labelStart > 40) throw new Error("PEM BEGIN line is not terminated");
    const label = text.slice(labelStart, labelEnd);
    if (!LABEL.test(label)) throw new Error(`PEM label ${JSON.stringify(label)} is malformed`);
    const endMarker = `-----END ${label}-----`;
    const bodyStart = labelEnd + 5;
    const end = text.indexOf(endMarker, bodyStart);
    if (end < 0) throw new Error(`PEM block ${label} has no END ${label} line`);
    const body = text.slice(bodyStart, end);
    // One character class, so the test is linear; Buffer's decoder skips the whitespace.
    if (!BASE64_BODY.test(body)) throw new Error(`PEM block ${label} is not base64`);
    const buf = Buffer.from(body, "base64");
    if (buf.length === 0) throw new Error(`PEM block ${label} is empty`);
    if (significantLength(body) % 4 !== 0) throw new Error(`PEM block ${label} has a truncated base64 body`);
    out.push({ label, der: buf });
    pos = end + endMarker.length;
  }
}

function significantLength(body: string): number {
  let n = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    if (c !== 10 && c !== 13 && c !== 32 && c !== 9) n++;
  }
  return n;
}

/**
 * Decodes exactly one PEM block whose label is one of `labels`; throws when there is none,
 * more than one, or one of another label.
 */
export function pemDecodeOne(text: string, labels: readonly string[]): Uint8Array {
  const blocks = pemDecodeAll(text);
  if (blocks.length === 0) throw new Error(`no PEM block found (want ${labels.join(" or ")})`);
  if (blocks.length > 1) throw new Error(`${blocks.length} PEM blocks found, want one`);
  const b = blocks[0]!;
  if (!labels.includes(b.label)) throw new Error(`PEM block is ${b.label}, want ${labels.join(" or ")}`);
  return b.der;
}

/** Encodes DER as a PEM block with 64-column lines and a final newline. */
export function pemEncode(label: string, der: Uint8Array): string {
  const b64 = (Buffer.isBuffer(der) ? der : Buffer.from(der)).toString("base64");
  let body = "";
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + "\n";
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}
