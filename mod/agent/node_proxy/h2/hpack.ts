/**
 * HPACK (RFC 7541) for the HTTP/2 connection: a typed wrapper of the npm package `hpack.js`.
 * Encoding never adds to the dynamic table (the few header fields of a CONNECT tunnel gain
 * nothing from it, and it spares following the peer's SETTINGS_HEADER_TABLE_SIZE); decoding
 * accepts everything a peer may send (Huffman coding, dynamic table, size updates) and throws on
 * a malformed block.
 *
 * @module
 */
import hpack from "hpack.js";

/** Header fields in order, as name and value pairs (names in lower case). */
export type HeaderList = Array<[string, string]>;

/** The default SETTINGS_HEADER_TABLE_SIZE, bytes. */
export const DEFAULT_HEADER_TABLE_SIZE = 4096;

/** Encodes header lists into header blocks. */
export interface HeaderEncoder {
  encode(fields: HeaderList): Buffer;
}

/** Decodes header blocks; keeps the dynamic table across blocks, as HPACK requires. */
export interface HeaderDecoder {
  /** The fields of one complete header block; throws when the block is malformed. */
  decode(block: Buffer): HeaderList;
}

/** A new encoder (one per connection). */
export function createHeaderEncoder(): HeaderEncoder {
  const c = hpack.compressor.create({ table: { maxSize: DEFAULT_HEADER_TABLE_SIZE } });
  return {
    encode(fields) {
      c.write(fields.map(([name, value]) => ({ name, value, incremental: false })));
      const parts: Buffer[] = [];
      for (let b = c.read(); b !== null; b = c.read()) parts.push(b);
      return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    },
  };
}

/** A new decoder (one per connection). */
export function createHeaderDecoder(): HeaderDecoder {
  const d = hpack.decompressor.create({ table: { maxSize: DEFAULT_HEADER_TABLE_SIZE } });
  const state: { failure?: Error } = {};
  d.on("error", (err) => (state.failure = err));
  return {
    decode(block) {
      state.failure = undefined;
      d.write(block);
      d.execute();
      const out: HeaderList = [];
      for (let f = d.read(); f !== null; f = d.read()) out.push([f.name, f.value]);
      const failure = state.failure as Error | undefined; // Set by execute(), synchronously.
      if (failure) throw new Error(`HPACK: ${failure.message}`);
      return out;
    },
  };
}
